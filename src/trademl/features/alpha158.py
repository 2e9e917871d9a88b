"""Alpha158: the 158 features of Microsoft Qlib's ``Alpha158`` handler as trademl indicators.

Three indicators of the ``alpha158`` family hold the published feature list:

``alpha158_kbar``
    The nine candle-shape features (``kmid``, ``klen``, ``kmid2``, ``kup``, ``kup2``,
    ``klow``, ``klow2``, ``ksft``, ``ksft2``), each of the current bar only.
``alpha158_price``
    ``open0``, ``high0``, ``low0`` and ``vwap0``: the bar's prices divided by its close.
    Candles carry no VWAP, so ``vwap0`` uses the typical price ``(high + low + close) / 3``
    in its place.
``alpha158_rolling``
    The 29 rolling features over ``window`` bars (Qlib uses 5, 10, 20, 30 and 60; any
    integer >= 2 is accepted). Outputs are Qlib's names in lower case without the window,
    which is already in the column name: ``alpha158_rolling_20_roc`` is Qlib's ``ROC20``.

The formulas are Qlib's (``Ref(x, d)`` is ``x`` of ``d`` bars ago). Where Qlib's operators
differ from a plain reading of the formula, Qlib's operators are followed:

- ``Std`` is the sample standard deviation (``ddof=1``).
- ``Slope``, ``Rsquare`` and ``Resi`` regress the window on the times ``1..d``; ``Resi`` is
  the residual of the newest bar.
- ``IdxMax`` / ``IdxMin`` are the 1-based position of the first maximum / minimum in the
  window counted from its oldest bar (``d`` when it is the current bar), so ``imax`` is 1
  when the current high is the window's highest and ``d - IdxMax`` is the number of bars
  since the maximum.
- ``Rank`` is the percentile of the current close in the window, ties taking their
  average rank (``pandas`` ``rank(pct=True)``, the same as SciPy's ``percentileofscore``).
- ``Quantile`` interpolates linearly.

Three deliberate departures from Qlib, which computes every rolling operator with
``min_periods=1`` and guards degenerate windows with an absolute tolerance:

- A value needs complete inputs: an output is NaN until its window is full and wherever a
  NaN (or infinite) input falls in its window. The warm-up (index of the first value) is
  ``window - 1`` for the outputs of one window of raw bars and ``window`` for ``roc`` and
  for those built on the change from the previous bar (``cord``, ``cntp``, ``cntn``,
  ``cntd``, ``sump``, ``sumn``, ``sumd``, ``wvma``, ``vsump``, ``vsumn``, ``vsumd``); see
  :func:`rolling_output_warmup`. The indicator's warm-up is the largest, ``window``.
- ``rsqr``, ``corr`` and ``cord`` are NaN where an input is constant over the window (zero
  variance). Qlib blanks windows whose standard deviation is below 2e-5 in absolute
  terms, a threshold that depends on the price scale; it is not applied here.
- Sums, means, variances, correlations and regressions are computed window by window
  (exact window sums and two-pass variances), not by running sums, so no rounding error
  is carried from one window to the next and a constant window gives exactly zero spread.

Every value at bar t uses bars up to and including t only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from trademl.features.indicators import Bars, Indicator, Param, register

FloatArray = npt.NDArray[np.float64]

FAMILY = "alpha158"
# Qlib's guard against a zero denominator.
EPS = 1e-12
# Rows of windows handled at once by the window-by-window reductions (memory: rows * window).
_CHUNK = 1 << 14

KBAR_OUTPUTS = ("kmid", "klen", "kmid2", "kup", "kup2", "klow", "klow2", "ksft", "ksft2")
PRICE_OUTPUTS = ("open0", "high0", "low0", "vwap0")
ROLLING_OUTPUTS = (
    "roc", "ma", "std", "beta", "rsqr", "resi", "max", "min", "qtlu", "qtld", "rank", "rsv",
    "imax", "imin", "imxd", "corr", "cord", "cntp", "cntn", "cntd", "sump", "sumn", "sumd",
    "vma", "vstd", "wvma", "vsump", "vsumn", "vsumd",
)  # fmt: skip
# Outputs whose first value comes one bar later than a plain window's: ``roc`` looks back
# ``window`` bars, the others read the change from the previous bar.
_LAGGED_OUTPUTS = frozenset(
    {
        "roc",
        "cord",
        "cntp",
        "cntn",
        "cntd",
        "sump",
        "sumn",
        "sumd",
        "wvma",
        "vsump",
        "vsumn",
        "vsumd",
    }
)
ROLLING_WINDOWS = (5, 10, 20, 30, 60)


def rolling_output_warmup(output: str, window: int) -> int:
    """Index of the first value of one ``alpha158_rolling`` output (on inputs without NaN).

    Parameters
    ----------
    output : str
        One of ``ROLLING_OUTPUTS``.
    window : int
        The rolling window in bars.

    Returns
    -------
    int
        ``window`` for ``roc`` and the outputs built on bar-to-bar changes, else
        ``window - 1``.

    Examples
    --------
    >>> rolling_output_warmup("ma", 20), rolling_output_warmup("sump", 20)
    (19, 20)
    """
    if output not in ROLLING_OUTPUTS:
        raise ValueError(f"unknown alpha158_rolling output {output!r}")
    return window if output in _LAGGED_OUTPUTS else window - 1


# -- array helpers -----------------------------------------------------------------------------


def _finite(values: FloatArray) -> FloatArray:
    """``values`` with infinities replaced by NaN (so they blank their windows)."""
    return np.where(np.isfinite(values), values, np.nan)


def _lag(values: FloatArray, periods: int) -> FloatArray:
    """``values`` of ``periods`` bars ago (Qlib's ``Ref``); NaN where there is none."""
    out = np.full_like(values, np.nan)
    if periods < len(values):
        out[periods:] = values[: len(values) - periods]
    return out


def _pad(valid: FloatArray, n: int) -> FloatArray:
    """One value per bar from the values of the complete windows (NaN before them)."""
    out = np.full(n, np.nan)
    if len(valid):
        out[n - len(valid) :] = valid
    return out


def _window_dot(values: FloatArray, weights: FloatArray) -> FloatArray:
    """Per bar, the weighted sum of the last ``len(weights)`` values (oldest weight first)."""
    n, window = len(values), len(weights)
    if n < window:
        return np.full(n, np.nan)
    # Each output is its own dot product over its window: NaN stays inside its windows.
    return _pad(np.correlate(values, weights, mode="valid"), n)


def _window_sum(values: FloatArray, window: int) -> FloatArray:
    """Per bar, the exact sum of the last ``window`` values (NaN before the window fills)."""
    return _window_dot(values, np.ones(window))


def _window_blocks(values: FloatArray, window: int) -> Iterator[tuple[slice, FloatArray]]:
    """The complete windows of ``values`` as contiguous ``(rows, window)`` blocks.

    Yields the slice of output bars each block answers for and the block itself.
    """
    windows = sliding_window_view(values, window)
    for start in range(0, len(windows), _CHUNK):
        block = np.ascontiguousarray(windows[start : start + _CHUNK])
        stop = start + len(block)
        yield slice(start + window - 1, stop + window - 1), block


def _window_moments(
    left: FloatArray, right: FloatArray | None, window: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per bar, the centred sums of squares of ``left`` and ``right`` and of their products.

    Two-pass within each window (means first), so values far from zero lose no precision.
    Without ``right`` the second and third arrays are NaN.
    """
    n = len(left)
    sxx, syy, sxy = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    if n < window:
        return sxx, syy, sxy
    if right is None:
        for rows, block in _window_blocks(left, window):
            centred = block - block.mean(axis=1, keepdims=True)
            sxx[rows] = np.einsum("ij,ij->i", centred, centred)
        return sxx, syy, sxy
    right_blocks = _window_blocks(right, window)
    for (rows, block), (_, other) in zip(_window_blocks(left, window), right_blocks, strict=True):
        a = block - block.mean(axis=1, keepdims=True)
        b = other - other.mean(axis=1, keepdims=True)
        sxx[rows] = np.einsum("ij,ij->i", a, a)
        syy[rows] = np.einsum("ij,ij->i", b, b)
        sxy[rows] = np.einsum("ij,ij->i", a, b)
    return sxx, syy, sxy


def _window_std(values: FloatArray, window: int) -> FloatArray:
    """Per bar, the sample standard deviation (``ddof=1``) of the last ``window`` values."""
    sxx, _, _ = _window_moments(values, None, window)
    return np.sqrt(sxx / (window - 1))


def _window_corr(left: FloatArray, right: FloatArray, window: int) -> FloatArray:
    """Per bar, Pearson's correlation of the last ``window`` pairs; NaN if either is constant."""
    sxx, syy, sxy = _window_moments(left, right, window)
    degenerate = (sxx == 0) | (syy == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = sxy / np.sqrt(sxx * syy)
    return np.where(degenerate, np.nan, np.clip(corr, -1.0, 1.0))


def _window_argext(values: FloatArray, window: int, *, largest: bool) -> FloatArray:
    """Per bar, the 1-based position (from the oldest) of the window's first max (or min)."""
    n = len(values)
    out = np.full(n, np.nan)
    if n < window:
        return out
    for rows, block in _window_blocks(values, window):
        position = block.argmax(axis=1) if largest else block.argmin(axis=1)
        out[rows] = position + 1.0
    # argmax/argmin point at a NaN when there is one: such windows have no value.
    return np.where(np.isnan(_window_sum(values, window)), np.nan, out)


def _rolling(values: FloatArray, window: int) -> Any:
    """A pandas rolling view that needs the whole window (``min_periods=window``)."""
    return pd.Series(values, copy=False).rolling(window, min_periods=window)


def _as_floats(values: Any) -> FloatArray:
    array: FloatArray = np.asarray(values, dtype=np.float64)
    return array


# -- the three indicators ----------------------------------------------------------------------


def kbar(bars: Bars, params: Mapping[str, Any]) -> dict[str, FloatArray]:
    """The nine k-bar (candle shape) features of Alpha158.

    Parameters
    ----------
    bars : Bars
        The OHLCV arrays.
    params : Mapping[str, Any]
        Unused (the indicator has no parameters).

    Returns
    -------
    dict[str, numpy.ndarray]
        ``kmid`` = (c - o) / o, ``klen`` = (h - l) / o, ``kmid2`` = (c - o) / (h - l + 1e-12),
        ``kup`` = (h - max(o, c)) / o, ``kup2`` = (h - max(o, c)) / (h - l + 1e-12),
        ``klow`` = (min(o, c) - l) / o, ``klow2`` = (min(o, c) - l) / (h - l + 1e-12),
        ``ksft`` = (2c - h - l) / o, ``ksft2`` = (2c - h - l) / (h - l + 1e-12).
    """
    o, h, low, c = bars.open, bars.high, bars.low, bars.close
    span = h - low + EPS
    upper = h - np.maximum(o, c)
    lower = np.minimum(o, c) - low
    shift = 2.0 * c - h - low
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "kmid": (c - o) / o,
            "klen": (h - low) / o,
            "kmid2": (c - o) / span,
            "kup": upper / o,
            "kup2": upper / span,
            "klow": lower / o,
            "klow2": lower / span,
            "ksft": shift / o,
            "ksft2": shift / span,
        }


def price(bars: Bars, params: Mapping[str, Any]) -> dict[str, FloatArray]:
    """Alpha158's price features: the bar's open, high, low and VWAP over its close.

    Parameters
    ----------
    bars : Bars
        The OHLCV arrays.
    params : Mapping[str, Any]
        Unused (the indicator has no parameters).

    Returns
    -------
    dict[str, numpy.ndarray]
        ``open0``, ``high0``, ``low0`` and ``vwap0``; the VWAP is approximated by the
        typical price (h + l + c) / 3 since candles carry no traded value.
    """
    c = bars.close
    typical = (bars.high + bars.low + c) / 3.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "open0": bars.open / c,
            "high0": bars.high / c,
            "low0": bars.low / c,
            "vwap0": typical / c,
        }


def _regression(
    close: FloatArray, window: int, close_ss: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Slope, R² and newest residual of the close regressed on times ``1..window``.

    With centred times ``u = k - (window + 1) / 2`` the slope is ``Σ u·y / Σ u²`` (the
    numerator is a fixed-weight window sum, free of the price level), the fit at the newest
    bar is ``mean + slope·(window - 1) / 2`` and R² is ``(Σ u·y)² / (Σ u² · Σ (y - ȳ)²)``.
    """
    times = np.arange(1, window + 1, dtype=np.float64) - (window + 1) / 2.0
    time_ss = float(times @ times)
    cross = _window_dot(close, times)
    slope = cross / time_ss
    mean = _window_sum(close, window) / window
    residual = close - (mean + slope * (window - 1) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsquare = np.where(close_ss == 0, np.nan, cross * cross / (time_ss * close_ss))
    return slope, np.minimum(rsquare, 1.0), residual


def rolling(bars: Bars, params: Mapping[str, Any]) -> dict[str, FloatArray]:
    """Alpha158's 29 rolling features over ``params["window"]`` bars.

    Parameters
    ----------
    bars : Bars
        The OHLCV arrays.
    params : Mapping[str, Any]
        ``window``: the number of bars in each window (>= 2).

    Returns
    -------
    dict[str, numpy.ndarray]
        One array per name of ``ROLLING_OUTPUTS``, NaN until its window is complete (see the
        module notes for the formulas and warm-ups).
    """
    d = int(params["window"])
    c, h, low, v = (_finite(x) for x in (bars.close, bars.high, bars.low, bars.volume))

    prev_c = _lag(c, 1)
    prev_v = _lag(v, 1)
    c_change = c - prev_c
    v_change = v - prev_v
    with np.errstate(divide="ignore", invalid="ignore"):
        c_ratio = _finite(c / prev_c)
        v_log_ratio = _finite(np.log(v / prev_v + 1.0))
        log_volume = _finite(np.log(v + 1.0))

    def ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            result: FloatArray = numerator / denominator
        return result

    close_ss, _, _ = _window_moments(c, None, d)
    slope, rsquare, residual = _regression(c, d, close_ss)
    high_max = _as_floats(_rolling(h, d).max())
    low_min = _as_floats(_rolling(low, d).min())
    idx_max = _window_argext(h, d, largest=True)
    idx_min = _window_argext(low, d, largest=False)

    up = np.where(np.isnan(c_change), np.nan, (c_change > 0).astype(np.float64))
    down = np.where(np.isnan(c_change), np.nan, (c_change < 0).astype(np.float64))
    count_up = _window_sum(up, d) / d
    count_down = _window_sum(down, d) / d
    gains = _window_sum(np.maximum(c_change, 0.0), d)
    losses = _window_sum(np.maximum(-c_change, 0.0), d)
    moves = _window_sum(np.abs(c_change), d) + EPS
    v_gains = _window_sum(np.maximum(v_change, 0.0), d)
    v_losses = _window_sum(np.maximum(-v_change, 0.0), d)
    v_moves = _window_sum(np.abs(v_change), d) + EPS
    weighted = _finite(np.abs(c_ratio - 1.0) * v)

    out: dict[str, FloatArray] = {
        "roc": ratio(_lag(c, d), c),
        "ma": ratio(_window_sum(c, d) / d, c),
        "std": ratio(np.sqrt(close_ss / (d - 1)), c),
        "beta": ratio(slope, c),
        "rsqr": rsquare,
        "resi": ratio(residual, c),
        "max": ratio(high_max, c),
        "min": ratio(low_min, c),
        "qtlu": ratio(_as_floats(_rolling(c, d).quantile(0.8, interpolation="linear")), c),
        "qtld": ratio(_as_floats(_rolling(c, d).quantile(0.2, interpolation="linear")), c),
        "rank": _as_floats(_rolling(c, d).rank(method="average", pct=True)),
        "rsv": ratio(c - low_min, high_max - low_min + EPS),
        "imax": idx_max / d,
        "imin": idx_min / d,
        "imxd": (idx_max - idx_min) / d,
        "corr": _window_corr(c, log_volume, d),
        "cord": _window_corr(c_ratio, v_log_ratio, d),
        "cntp": count_up,
        "cntn": count_down,
        "cntd": count_up - count_down,
        "sump": gains / moves,
        "sumn": losses / moves,
        "sumd": (gains - losses) / moves,
        "vma": ratio(_window_sum(v, d) / d, v + EPS),
        "vstd": ratio(_window_std(v, d), v + EPS),
        "wvma": ratio(_window_std(weighted, d), _window_sum(weighted, d) / d + EPS),
        "vsump": v_gains / v_moves,
        "vsumn": v_losses / v_moves,
        "vsumd": (v_gains - v_losses) / v_moves,
    }
    return out


def _rolling_warmup(params: Mapping[str, Any]) -> int:
    return max(rolling_output_warmup(output, int(params["window"])) for output in ROLLING_OUTPUTS)


def _no_warmup(params: Mapping[str, Any]) -> int:
    return 0


def _make(
    name: str,
    compute: Callable[[Bars, Mapping[str, Any]], Mapping[str, FloatArray]],
    warmup: Callable[[Mapping[str, Any]], int],
    outputs: tuple[str, ...],
    description: str,
    params: tuple[Param, ...] = (),
) -> Indicator:
    return Indicator(
        name=name,
        family=FAMILY,
        compute=compute,
        warmup=warmup,
        params=params,
        outputs=outputs,
        description=description,
        source="Qlib Alpha158",
    )


ALPHA158_KBAR = register(
    _make("alpha158_kbar", kbar, _no_warmup, KBAR_OUTPUTS, "Alpha158 k-bar (candle shape) features")
)
ALPHA158_PRICE = register(
    _make(
        "alpha158_price",
        price,
        _no_warmup,
        PRICE_OUTPUTS,
        "Alpha158 prices over the close (vwap0 uses the typical price)",
    )
)
ALPHA158_ROLLING = register(
    _make(
        "alpha158_rolling",
        rolling,
        _rolling_warmup,
        ROLLING_OUTPUTS,
        "Alpha158 rolling features over a window of bars",
        params=(Param("window", 5, low=2),),
    )
)
