"""Start invariance: how many bars an indicator needs before its values stop depending on
where the history begins.

A finite-window indicator (a 20-bar mean) is start-invariant from its first full window on,
exactly. A recursive one (an EMA, Wilder's RSI, the Hilbert transform) carries a trace of its
first bar forever, shrinking geometrically: it is start-invariant within a tolerance once that
trace is small enough. A running total from the first bar (OBV, the A/D line) never forgets
its start and is no feature at all.

Error metric, per output column: ``|a - b| / (|a| + scale)`` where ``scale`` is the mean
absolute value of the column over the compared bars. It is relative for values far from zero
and relative to the column's size for values that cross zero (a MACD histogram).

The decay of a recursion is measured here on a fixed, deterministic reference series (a random
walk whose volatility and drift switch between regimes, so that adaptive smoothers meet their
slow regimes too): the indicator is computed from the first bar and from later starts, and the
convergence is the number of bars after a start from which every later value agrees within the
tolerance. The declared warm-up adds a safety margin to that measurement
(:data:`SAFETY_FACTOR`), since real data may decay a little slower than the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_TOLERANCE = 1e-9
# Declared warm-up = SAFETY_FACTOR x measured convergence + SAFETY_BARS. Geometric decay makes
# 1.5x the bars worth a tolerance to the power 1.5: a wide margin over the reference series.
SAFETY_FACTOR = 1.5
SAFETY_BARS = 10
_REFERENCE_SEED = 20_261_203
_MIN_REFERENCE_BARS = 4_096
_MAX_REFERENCE_BARS = 1 << 21

Arrays = Mapping[str, np.ndarray]


def start_error(full: np.ndarray, part: np.ndarray) -> np.ndarray:
    """The error metric of two aligned columns (0 where both are NaN, inf where one is).

    Parameters
    ----------
    full, part : numpy.ndarray
        The same column computed from two starts, aligned on the same bars.

    Returns
    -------
    numpy.ndarray
        ``|full - part| / (|full| + scale)``, ``scale`` the mean ``|full|`` over the bars.
    """
    full = np.asarray(full, dtype=np.float64)
    part = np.asarray(part, dtype=np.float64)
    finite = np.isfinite(full)
    magnitude = np.abs(full[finite])
    scale = float(magnitude.mean()) if magnitude.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.abs(full - part) / (np.abs(full) + scale)
    both_missing = ~finite & ~np.isfinite(part)
    one_missing = finite ^ np.isfinite(part)
    error[both_missing] = 0.0
    error[one_missing] = np.inf
    # 0/0: both exactly zero and the column all zeros.
    error[np.isnan(error)] = 0.0
    return np.asarray(error, dtype=np.float64)


def converged_after(errors: Mapping[str, np.ndarray], tolerance: float) -> int:
    """Bars after the start from which every column's error stays within ``tolerance``."""
    last_bad = -1
    for error in errors.values():
        bad = np.flatnonzero(error > tolerance)
        if bad.size:
            last_bad = max(last_bad, int(bad[-1]))
    return last_bad + 1


def reference_candles(n: int) -> pd.DataFrame:
    """The deterministic reference series: ``n`` hourly bars of a regime-switching walk.

    Parameters
    ----------
    n : int
        Number of bars.

    Returns
    -------
    pandas.DataFrame
        A Candles frame (UTC index from 2020-01-01, float64 OHLCV).
    """
    rng = np.random.default_rng(_REFERENCE_SEED)
    # Regimes of 50..800 bars: quiet or wild, trending up, down or sideways.
    vol = np.empty(n)
    drift = np.empty(n)
    position = 0
    while position < n:
        length = int(rng.integers(50, 800))
        vol[position : position + length] = rng.choice([0.0015, 0.005, 0.02])
        drift[position : position + length] = rng.choice([-0.002, 0.0, 0.0, 0.002]) * 0.25
        position += length
    returns = drift + vol * rng.standard_normal(n)
    close = 100.0 * np.exp(np.cumsum(returns))
    gap = vol * 0.2 * rng.standard_normal(n)
    open_ = np.empty(n)
    open_[0] = 100.0
    open_[1:] = close[:-1] * np.exp(gap[1:])
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = top * np.exp(np.abs(rng.standard_normal(n)) * vol * 0.6)
    low = bottom * np.exp(-np.abs(rng.standard_normal(n)) * vol * 0.6)
    volume = np.exp(rng.normal(6.0, 0.8, n)) * (1.0 + 40.0 * vol)
    index = pd.date_range("2020-01-01", periods=n, freq="1h", tz="UTC", name="timestamp")
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )
    frame.attrs["timeframe"] = "1h"
    return frame


Computation = Callable[[pd.DataFrame], Arrays]


def measure_convergence(compute: Computation, minimum: int, tolerance: float) -> int:
    """Measured bars after a start until ``compute``'s outputs agree with the full history.

    Parameters
    ----------
    compute : callable
        Candles frame → mapping of output arrays (the raw values, no warm-up masking).
    minimum : int
        The indicator's own lookback: the reference is long enough to hold many of them.
    tolerance : float
        The error (:func:`start_error`) below which values agree.

    Returns
    -------
    int
        The largest, over several starts, number of leading bars that disagree.
    """
    length = max(_MIN_REFERENCE_BARS, 16 * (minimum + 1))
    while True:
        candles = reference_candles(length)
        full = compute(candles)
        worst = 0
        horizon_ok = True
        for start in (length // 8, length // 4, length // 2):
            part = compute(candles.iloc[start:])
            errors = {
                name: start_error(np.asarray(values)[start:], np.asarray(part[name]))
                for name, values in full.items()
            }
            bars = converged_after(errors, tolerance)
            worst = max(worst, bars)
            # The last disagreement must sit well inside the compared span, or the series was
            # too short to see the convergence.
            horizon_ok &= bars <= (length - start) // 3
        if horizon_ok or length >= _MAX_REFERENCE_BARS:
            return worst
        length *= 2


def declared_warmup(lookback: int, measured: int) -> int:
    """The warm-up to declare from a lookback and a measured convergence.

    Finite windows (``measured <= lookback``) keep their exact lookback; recursions get the
    measurement with its safety margin.
    """
    if measured <= lookback:
        return lookback
    return max(lookback, math.ceil(SAFETY_FACTOR * measured) + SAFETY_BARS)


def geometric_bars(retention: float, tolerance: float) -> int:
    """Bars for a geometric trace ``retention ** k`` to fall below a tenth of ``tolerance``.

    The analytic bound for adaptive smoothers, whose slowest regime the reference series may
    not reach (KAMA's slowest constant, MAMA's slow limit).
    """
    if not 0.0 < retention < 1.0:
        return 0
    return math.ceil(math.log(tolerance / 10.0) / math.log(retention))


@lru_cache(maxsize=8192)
def _cached(key: tuple[str, tuple[tuple[str, Any], ...], float], compute: Any, minimum: int) -> int:
    return measure_convergence(compute, minimum, key[2])


def cached_convergence(
    name: str,
    params: Mapping[str, Any],
    compute: Computation,
    minimum: int,
    tolerance: float = DEFAULT_TOLERANCE,
) -> int:
    """:func:`measure_convergence`, memoised per indicator name, parameters and tolerance."""
    frozen = tuple(sorted(params.items()))
    return _cached((name, frozen, tolerance), _Keyless(compute), minimum)


class _Keyless:
    """A callable that hashes equal to every other: the cache keys on the name and params."""

    def __init__(self, compute: Computation) -> None:
        self.compute = compute

    def __call__(self, candles: pd.DataFrame) -> Arrays:
        return self.compute(candles)

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Keyless)
