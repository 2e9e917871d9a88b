r"""Indicators TA-Lib lacks: returns, z-scores, realised volatility, candle geometry, distances
to recent extremes, volume features and cyclical time.

Every indicator here is causal (its value at bar t reads bars up to and including t: rolling
windows end at t) and vectorised (numpy, pandas rolling windows, TA-Lib's ATR). Its warm-up is
exact: on data without gaps or zeros the first valid value sits at index ``warmup(params)``.

Definitions, with :math:`n` the window, :math:`O_t, H_t, L_t, C_t, V_t` the bar's prices and
volume, and sums running over the :math:`n` bars ending at t.

``log_return`` (returns)
    :math:`\ln(x_t / x_{t-k})` with :math:`k` = ``n`` and :math:`x` = ``price`` (close by
    default). Warm-up ``n``.
``zscore`` (statistic)
    :math:`(x_t - \bar x) / s` with :math:`\bar x` the rolling mean and :math:`s` the rolling
    *population* standard deviation (``ddof=0``, as TA-Lib's ``STDDEV`` and Bollinger bands).
    Warm-up ``window - 1``; NaN where the window is flat.
``rv_close`` (volatility)
    Sample standard deviation (``ddof=1``) of the 1-bar log returns
    :math:`r_t = \ln(C_t / C_{t-1})` over the window. Warm-up ``window`` (the first return
    needs a previous close).
``rv_parkinson`` (volatility)
    :math:`\sqrt{\frac{1}{4 n \ln 2} \sum \ln(H/L)^2}`. Warm-up ``window - 1``.
``rv_garman_klass`` (volatility)
    :math:`\sqrt{\frac{1}{n} \sum [\tfrac12 \ln(H/L)^2 - (2\ln 2 - 1) \ln(C/O)^2]}`.
    Warm-up ``window - 1``.
``rv_rogers_satchell`` (volatility)
    :math:`\sqrt{\frac{1}{n} \sum [\ln(H/C)\ln(H/O) + \ln(L/C)\ln(L/O)]}`.
    Warm-up ``window - 1``.
``rv_yang_zhang`` (volatility)
    :math:`\sqrt{\sigma_o^2 + k \sigma_c^2 + (1-k) \sigma_{rs}^2}` with
    :math:`\sigma_o^2` the sample variance of the overnight returns
    :math:`\ln(O_t / C_{t-1})`, :math:`\sigma_c^2` the sample variance of the open-to-close
    returns :math:`\ln(C_t / O_t)`, :math:`\sigma_{rs}^2` the Rogers–Satchell variance and
    :math:`k = 0.34 / (1.34 + (n+1)/(n-1))`. Warm-up ``window``.
``rv_gap`` (volatility)
    :math:`\sqrt{\frac{1}{n} \sum \ln(O_t / C_{t-1})^2}`: the size of the gaps between a
    bar's open and the previous close (overnight and session gaps of stocks; about zero where
    trading never stops). Warm-up ``window``.
``hour_of_week`` (time)
    :math:`24 d + h` with :math:`d` the weekday (Monday 0) and :math:`h` the hour of the bar
    start in UTC: the bucket of the HAR baseline's seasonal profile. Warm-up 0.
``candle`` (geometry)
    ``body`` :math:`(C-O)/ATR`, ``upper_wick`` :math:`(H - \max(O,C))/ATR`, ``lower_wick``
    :math:`(\min(O,C) - L)/ATR`, ``range`` :math:`(H-L)/ATR`, with :math:`ATR` the mean true
    range over ``atr_window`` bars (finite, so start-invariant). Warm-up ``atr_window``.
``dist_high`` / ``dist_low`` (price)
    :math:`C_t / \max H - 1` and :math:`C_t / \min L - 1` over the window (bar t included).
    Warm-up ``window - 1``.
``volume_zscore`` (volume)
    ``zscore`` of :math:`\ln(1 + V_t / \bar V_t)` with :math:`\bar V_t` the mean volume over
    the window ending at t (scale-free: the same in any volume unit). Warm-up
    ``2 * window - 2``.
``vwap_distance`` (volume)
    :math:`C_t / VWAP - 1` with :math:`VWAP = \sum P V / \sum V` and the typical price
    :math:`P = (H + L + C)/3`; NaN where the window traded nothing. Warm-up ``window - 1``.
``obv_flow`` (volume)
    :math:`\sum \operatorname{sign}(C_t - C_{t-1}) V_t / \sum V_t`: the change of on-balance
    volume over the window divided by the volume traded in it, in [-1, 1]; the windowed,
    start-invariant form of OBV (a running total from the first bar). Warm-up ``window``.
``ad_flow`` (volume)
    :math:`\sum \mathrm{CLV}_t V_t / \sum V_t` with the close location value
    :math:`\mathrm{CLV} = ((C - L) - (H - C)) / (H - L)` (0 when :math:`H = L`): the change of
    the accumulation/distribution line over the window per unit of volume, in [-1, 1]; the
    windowed form of A/D. Warm-up ``window - 1``.
``rsi_sma`` (momentum)
    Cutler's RSI, :math:`100 \bar G / (\bar G + \bar L)` with :math:`\bar G, \bar L` the
    plain means of the close's gains and losses over the window: Wilder's RSI with a finite
    window instead of recursive smoothing (start-invariant exactly, and short to warm up on
    higher timeframes). Warm-up ``window``.
``natr_sma`` (volatility)
    :math:`100 \cdot \overline{TR} / C_t`: the mean true range over the window as a percentage
    of the close (a finite-window NATR). Warm-up ``window``.
``time_cyclical`` (time)
    ``hour_sin``, ``hour_cos`` of :math:`2\pi (h + m/60) / 24` and ``dow_sin``, ``dow_cos`` of
    :math:`2\pi d / 7` (Monday = 0), from the bar's start time in UTC. Warm-up 0.

Volatilities are per bar (not annualised): scale by :math:`\sqrt{\text{bars per year}}` to
annualise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import talib
from pandas.api.typing import Rolling

from trademl.data.candles import COLUMNS
from trademl.features.indicators import Bars, Indicator, Param, register

# Windows above this are a typo, not a choice; the bound makes the mistake fail early.
MAX_WINDOW = 100_000
_LN2 = float(np.log(2.0))


# -- rolling building blocks (pandas: O(n), windows end at the current bar) --------------------


def _rolling(values: np.ndarray, window: int) -> Rolling[pd.Series]:
    # min_periods defaults to the window: a partial window is undefined, not a guess.
    return pd.Series(values, copy=False).rolling(window)


def _as_array(result: pd.Series) -> np.ndarray:
    return result.to_numpy(dtype=np.float64)


# Windows up to this length are reduced each on its own values (exact, and bitwise the same
# whatever bar the history starts at); longer ones use pandas' running sums, whose rounding
# drifts with the start by about 1e-12 relative.
EXACT_WINDOW_MAX = 1_024
_BLOCK_VALUES = 4_000_000  # values per block of windows: bounds the temporary memory


def _window_reduce(
    values: np.ndarray, window: int, reduce: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``reduce`` applied to every full window (rows of a strided view), NaN before."""
    out = np.full(len(values), np.nan)
    if window > len(values):
        return out
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(values, np.float64), window)
    step = max(1, _BLOCK_VALUES // window)
    for first in range(0, len(windows), step):
        block = windows[first : first + step]
        out[window - 1 + first : window - 1 + first + len(block)] = reduce(block)
    return out


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the ``window`` values ending at each position (NaN until the window is full)."""
    if window <= EXACT_WINDOW_MAX:
        return _window_reduce(values, window, lambda block: block.mean(axis=1))
    return _as_array(_rolling(values, window).mean())


def rolling_var(values: np.ndarray, window: int, ddof: int) -> np.ndarray:
    """Variance of the ``window`` values ending at each position."""
    if window <= EXACT_WINDOW_MAX:
        if window - ddof <= 0:
            return np.full(len(values), np.nan)
        return _window_reduce(values, window, lambda block: block.var(axis=1, ddof=ddof))
    return _as_array(_rolling(values, window).var(ddof=ddof))


def rolling_std(values: np.ndarray, window: int, ddof: int) -> np.ndarray:
    """Standard deviation of the ``window`` values ending at each position."""
    return _sqrt(rolling_var(values, window, ddof))


def rolling_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum of the ``window`` values ending at each position."""
    if window <= EXACT_WINDOW_MAX:
        return _window_reduce(values, window, lambda block: block.sum(axis=1))
    return _as_array(_rolling(values, window).sum())


def rolling_max(values: np.ndarray, window: int) -> np.ndarray:
    """Maximum of the ``window`` values ending at each position."""
    if len(values) <= 4 * window:
        # A short tail (the server's last bar): numpy without pandas' per-call overhead.
        return _window_reduce(values, window, lambda block: block.max(axis=1))
    return _as_array(_rolling(values, window).max())


def rolling_min(values: np.ndarray, window: int) -> np.ndarray:
    """Minimum of the ``window`` values ending at each position."""
    if len(values) <= 4 * window:
        return _window_reduce(values, window, lambda block: block.min(axis=1))
    return _as_array(_rolling(values, window).min())


def lagged_log_ratio(values: np.ndarray, lag: int) -> np.ndarray:
    r""":math:`\ln(x_t / x_{t-lag})`, NaN for the first ``lag`` positions."""
    out = np.full(len(values), np.nan)
    if lag < len(values):
        with np.errstate(divide="ignore", invalid="ignore"):
            out[lag:] = np.log(values[lag:] / values[:-lag])
    return out


def _log_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.log(numerator / denominator), dtype=np.float64)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # x / 0 becomes inf or NaN here; Indicator.run turns inf into NaN.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator / denominator, dtype=np.float64)


def _sqrt(variance: np.ndarray) -> np.ndarray:
    # Rounding can leave a variance a hair below zero; the volatility is then 0, not NaN.
    with np.errstate(invalid="ignore"):
        return np.asarray(np.sqrt(np.maximum(variance, 0.0)), dtype=np.float64)


def zscore_of(values: np.ndarray, window: int) -> np.ndarray:
    """Rolling z-score with the population standard deviation (``ddof=0``)."""
    return _divide(values - rolling_mean(values, window), rolling_std(values, window, ddof=0))


def _window(default: int = 20, low: int = 2) -> Param:
    return Param("window", default, low=low, high=MAX_WINDOW)


def _price(default: str = "close") -> Param:
    return Param("price", default, choices=COLUMNS)


# -- returns and statistics ---------------------------------------------------------------------


def _log_return(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"": lagged_log_ratio(bars.column(params["price"]), params["n"])}


def _zscore(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"": zscore_of(bars.column(params["price"]), params["window"])}


# -- realised volatility (per bar) --------------------------------------------------------------


def rogers_satchell_terms(bars: Bars) -> np.ndarray:
    r"""Per-bar Rogers–Satchell variance :math:`\ln(H/C)\ln(H/O) + \ln(L/C)\ln(L/O)`."""
    upper = _log_ratio(bars.high, bars.close) * _log_ratio(bars.high, bars.open)
    lower = _log_ratio(bars.low, bars.close) * _log_ratio(bars.low, bars.open)
    return np.asarray(upper + lower, dtype=np.float64)


def _rv_close(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    returns = lagged_log_ratio(bars.close, 1)
    return {"": rolling_std(returns, params["window"], ddof=1)}


def _rv_parkinson(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    squared = _log_ratio(bars.high, bars.low) ** 2
    return {"": _sqrt(rolling_mean(squared, params["window"]) / (4.0 * _LN2))}


def _rv_gap(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    gaps = np.r_[np.nan, _log_ratio(bars.open[1:], bars.close[:-1])]
    return {"": _sqrt(rolling_mean(gaps**2, params["window"]))}


def _rv_garman_klass(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    terms = (
        0.5 * _log_ratio(bars.high, bars.low) ** 2
        - (2.0 * _LN2 - 1.0) * _log_ratio(bars.close, bars.open) ** 2
    )
    return {"": _sqrt(rolling_mean(terms, params["window"]))}


def _rv_rogers_satchell(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"": _sqrt(rolling_mean(rogers_satchell_terms(bars), params["window"]))}


def yang_zhang_k(window: int) -> float:
    r"""Yang and Zhang's weight of the open-to-close variance.

    :math:`k = 0.34 / (1.34 + (n+1)/(n-1))`, the weight that minimises the estimator's variance.
    """
    return 0.34 / (1.34 + (window + 1) / (window - 1))


def _rv_yang_zhang(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    window = params["window"]
    overnight = np.full(len(bars), np.nan)
    overnight[1:] = _log_ratio(bars.open[1:], bars.close[:-1])
    open_to_close = _log_ratio(bars.close, bars.open)
    k = yang_zhang_k(window)
    variance = (
        rolling_var(overnight, window, ddof=1)
        + k * rolling_var(open_to_close, window, ddof=1)
        + (1.0 - k) * rolling_mean(rogers_satchell_terms(bars), window)
    )
    return {"": _sqrt(variance)}


# -- candle geometry and distances --------------------------------------------------------------


def mean_true_range(bars: Bars, window: int) -> np.ndarray:
    """Mean of the true range over ``window`` bars: a finite-window ATR (first at ``window``).

    Wilder's ATR smooths recursively and never quite forgets its first bar; the plain mean is
    start-invariant from its first full window.
    """
    true_range = np.asarray(talib.TRANGE(bars.high, bars.low, bars.close), dtype=np.float64)
    return rolling_mean(true_range, window)


def _candle(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    atr = mean_true_range(bars, params["atr_window"])
    top = np.maximum(bars.open, bars.close)
    bottom = np.minimum(bars.open, bars.close)
    return {
        "body": _divide(bars.close - bars.open, atr),
        "upper_wick": _divide(bars.high - top, atr),
        "lower_wick": _divide(bottom - bars.low, atr),
        "range": _divide(bars.high - bars.low, atr),
    }


def _dist_high(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"": _divide(bars.close, rolling_max(bars.high, params["window"])) - 1.0}


def _dist_low(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"": _divide(bars.close, rolling_min(bars.low, params["window"])) - 1.0}


# -- volume -------------------------------------------------------------------------------------


def _volume_zscore(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    window = params["window"]
    # log(1 + V / mean V) tames volume's heavy right tail, keeps zero volume finite, and is the
    # same whatever unit the volume is counted in (base asset, quote, shares, lots).
    relative = _divide(bars.volume, rolling_mean(bars.volume, window))
    return {"": zscore_of(np.log1p(relative), window)}


def _vwap_distance(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    window = params["window"]
    typical = (bars.high + bars.low + bars.close) / 3.0
    vwap = _divide(rolling_sum(typical * bars.volume, window), rolling_sum(bars.volume, window))
    # Tested on the window's largest volume, not its sum: a sum of zeros after large volumes
    # may round to a tiny non-zero number, a maximum cannot.
    traded = rolling_max(bars.volume, window) > 0
    return {"": np.where(traded, _divide(bars.close, vwap) - 1.0, np.nan)}


def _traded_share(flow: np.ndarray, volume: np.ndarray, window: int) -> np.ndarray:
    traded = rolling_sum(volume, window)
    # A window that traded nothing has no flow to speak of: NaN, not 0/0 noise.
    return np.where(
        rolling_max(volume, window) > 0, _divide(rolling_sum(flow, window), traded), np.nan
    )


def _obv_flow(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    direction = np.full(len(bars), np.nan)
    direction[1:] = np.sign(np.diff(bars.close))
    return {"": _traded_share(direction * bars.volume, bars.volume, params["window"])}


def _ad_flow(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    spread = bars.high - bars.low
    location = np.where(
        spread > 0, _divide((bars.close - bars.low) - (bars.high - bars.close), spread), 0.0
    )
    return {"": _traded_share(location * bars.volume, bars.volume, params["window"])}


def _rsi_sma(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    change = np.full(len(bars), np.nan)
    change[1:] = np.diff(bars.close)
    gains = rolling_mean(np.maximum(change, 0.0), params["window"])
    losses = rolling_mean(np.maximum(-change, 0.0), params["window"])
    # A window with no move at all is neutral, as Wilder's RSI leaves it: 50.
    moved = gains + losses
    rsi = np.where(moved > 0, 100.0 * _divide(gains, moved), 50.0)
    return {"": np.where(np.isnan(moved), np.nan, rsi)}


def _natr_sma(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"": 100.0 * _divide(mean_true_range(bars, params["window"]), bars.close)}


# -- time ---------------------------------------------------------------------------------------


def _hour_of_week(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    index = bars.index.tz_convert("UTC") if bars.index.tz is not None else bars.index
    hour = index.day_of_week.to_numpy(dtype=np.float64) * 24 + index.hour.to_numpy(dtype=np.float64)
    return {"": hour}


def _time_cyclical(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    index = bars.index.tz_convert("UTC") if bars.index.tz is not None else bars.index
    hours = index.hour.to_numpy(dtype=np.float64) + index.minute.to_numpy(dtype=np.float64) / 60
    day = index.day_of_week.to_numpy(dtype=np.float64)
    hour_angle = 2.0 * np.pi * hours / 24.0
    day_angle = 2.0 * np.pi * day / 7.0
    return {
        "hour_sin": np.sin(hour_angle),
        "hour_cos": np.cos(hour_angle),
        "dow_sin": np.sin(day_angle),
        "dow_cos": np.cos(day_angle),
    }


# -- registration -------------------------------------------------------------------------------


def _window_minus_one(params: Mapping[str, Any]) -> int:
    return int(params["window"]) - 1


def _full_window(params: Mapping[str, Any]) -> int:
    return int(params["window"])


_VOLATILITY = (
    ("rv_close", _rv_close, _full_window, "close-to-close volatility (std of log returns)"),
    ("rv_parkinson", _rv_parkinson, _window_minus_one, "Parkinson high-low volatility"),
    ("rv_garman_klass", _rv_garman_klass, _window_minus_one, "Garman–Klass OHLC volatility"),
    ("rv_rogers_satchell", _rv_rogers_satchell, _window_minus_one, "Rogers–Satchell volatility"),
    ("rv_yang_zhang", _rv_yang_zhang, _full_window, "Yang–Zhang volatility"),
    ("rv_gap", _rv_gap, _full_window, "size of the open-to-previous-close (session) gaps"),
)


def _volume_zscore_warmup(params: Mapping[str, Any]) -> int:
    # The mean volume needs a window, then the z-score a window of those ratios.
    return 2 * int(params["window"]) - 2


# One-window indicators: name, family, compute, warm-up, the window parameter, description.
_WINDOWED = (
    ("dist_high", "price", _dist_high, _window_minus_one, _window(low=1),
     "close / rolling max(high) - 1"),
    ("dist_low", "price", _dist_low, _window_minus_one, _window(low=1),
     "close / rolling min(low) - 1"),
    ("volume_zscore", "volume", _volume_zscore, _volume_zscore_warmup, _window(),
     "rolling z-score of log(1 + volume / mean volume)"),
    ("vwap_distance", "volume", _vwap_distance, _window_minus_one, _window(low=1),
     "close / rolling VWAP - 1"),
    ("obv_flow", "volume", _obv_flow, _full_window, _window(low=1),
     "on-balance volume change over the window / volume traded in it"),
    ("ad_flow", "volume", _ad_flow, _window_minus_one, _window(low=1),
     "accumulation/distribution change over the window / volume traded"),
    ("rsi_sma", "momentum", _rsi_sma, _full_window, _window(14, low=1),
     "Cutler's RSI: RSI with plain means over a finite window"),
    ("natr_sma", "volatility", _natr_sma, _full_window, _window(14, low=1),
     "mean true range over the window, % of the close"),
)  # fmt: skip


def _register_all() -> None:
    register(
        Indicator(
            name="log_return",
            family="returns",
            compute=_log_return,
            warmup=lambda p: int(p["n"]),
            params=(_price(), Param("n", 1, low=1, high=MAX_WINDOW)),
            description="log return over n bars: ln(x_t / x_{t-n})",
        )
    )
    register(
        Indicator(
            name="zscore",
            family="statistic",
            compute=_zscore,
            warmup=_window_minus_one,
            params=(_price(), _window()),
            description="rolling z-score (population std)",
        )
    )
    for name, compute, warmup, description in _VOLATILITY:
        register(
            Indicator(
                name=name,
                family="volatility",
                compute=compute,
                warmup=warmup,
                params=(_window(),),
                description=f"{description}, per bar",
            )
        )
    register(
        Indicator(
            name="candle",
            family="geometry",
            compute=_candle,
            warmup=lambda p: int(p["atr_window"]),
            params=(Param("atr_window", 14, low=1, high=MAX_WINDOW),),
            outputs=("body", "upper_wick", "lower_wick", "range"),
            description="candle body, wicks and range in mean true ranges",
        )
    )
    for name, family, compute, warmup, window, description in _WINDOWED:
        register(
            Indicator(
                name=name,
                family=family,
                compute=compute,
                warmup=warmup,
                params=(window,),
                description=description,
            )
        )
    register(
        Indicator(
            name="time_cyclical",
            family="time",
            compute=_time_cyclical,
            warmup=lambda p: 0,
            outputs=("hour_sin", "hour_cos", "dow_sin", "dow_cos"),
            description="hour of day and day of week on the unit circle (UTC bar start)",
        )
    )
    register(
        Indicator(
            name="hour_of_week",
            family="time",
            compute=_hour_of_week,
            warmup=lambda p: 0,
            description="24 x weekday + hour of the bar start (UTC), 0-167: a seasonal bucket",
        )
    )


_register_all()
