"""Strategies: predictions turned into :class:`~trademl.backtest.signals.Signals`.

Two rules are built in, and a plain array API serves user rules:

* :func:`maxmin_signals` trades the max/min predictor: from the close of bar t, the predicted
  high and low give an upside and a downside; a long is taken when the upside is at least
  ``reward_risk`` times the downside (stop at the predicted low, target at the predicted high),
  a short in the mirror case.
* :func:`direction_signals` trades a calibrated P(up) against thresholds, with stops and targets
  at multiples of the ATR.
* :func:`signals_from_arrays` validates arrays that a user rule computed itself.

:func:`strategy_signals` reads the prediction columns of a workflow ``predictions.parquet``
frame and applies a strategy named in :data:`STRATEGIES` (these two, or a third-party one from
the ``trademl.strategies`` entry points) with an optional preset of :data:`PRESETS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import talib

from trademl.backtest.signals import Signals
from trademl.backtest.strategy_table import (
    STRATEGIES,
    Strategy,
    register_strategy,
    strategy_signals,
)
from trademl.errors import ConfigError

__all__ = [
    "PRESETS",
    "STRATEGIES",
    "Strategy",
    "direction_signals",
    "maxmin_signals",
    "signals_from_arrays",
    "strategy_signals",
]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "conservative": {
        "maxmin": {"reward_risk": 2.0, "min_confidence": 0.2},
        "direction": {
            "long_threshold": 0.6,
            "short_threshold": 0.4,
            "stop_atr": 1.5,
            "target_atr": 3.0,
        },
    },
    "aggressive": {
        "maxmin": {"reward_risk": 1.2, "min_confidence": 0.0},
        "direction": {
            "long_threshold": 0.52,
            "short_threshold": 0.48,
            "stop_atr": 1.0,
            "target_atr": 1.5,
        },
    },
}
"""Parameter sets by preset name, then strategy name: ``PRESETS[preset][strategy]``.

``conservative`` asks for more reward per unit of risk and a more confident model (fewer,
better-qualified trades); ``aggressive`` trades on weaker edges.
"""

FloatArray = npt.NDArray[np.float64]


# -- helpers -----------------------------------------------------------------------------------


def _candle_index(candles: pd.DataFrame) -> pd.DatetimeIndex:
    if not isinstance(candles.index, pd.DatetimeIndex):
        raise ConfigError(f"candles need a DatetimeIndex, got {type(candles.index).__name__}")
    if not candles.index.is_unique:
        raise ConfigError("candles have duplicate timestamps")
    return candles.index


def _column(candles: pd.DataFrame, name: str) -> FloatArray:
    if name not in candles.columns:
        raise ConfigError(f"candles have no {name!r} column")
    return np.asarray(candles[name].to_numpy(dtype=np.float64), dtype=np.float64)


def _aligned(candles: pd.DataFrame, values: pd.Series | npt.ArrayLike, name: str) -> FloatArray:
    """``values`` on the candles' bars: a Series is reindexed (bars it lacks become NaN), an
    array must have one entry per candle."""
    index = _candle_index(candles)
    if isinstance(values, pd.Series):
        if not values.index.is_unique:
            raise ConfigError(f"{name} has duplicate timestamps (one prediction per bar expected)")
        if len(values) and not isinstance(values.index, pd.DatetimeIndex):
            raise ConfigError(f"{name} needs a DatetimeIndex, got {type(values.index).__name__}")
        foreign = values.index.difference(index)
        if len(foreign):
            raise ConfigError(
                f"{name} has {len(foreign)} timestamps that are not candle bars "
                f"(first: {foreign[0]}); predictions must be aligned on the candles"
            )
        return np.asarray(values.reindex(index).to_numpy(dtype=np.float64), dtype=np.float64)
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (len(index),):
        raise ConfigError(
            f"{name} has shape {array.shape}, expected ({len(index)},) like the candles"
        )
    return array


def _filled_int(value: int, n: int, name: str) -> npt.NDArray[np.int64]:
    if int(value) != value or value < 0:
        raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
    return np.full(n, int(value), dtype=np.int64)


def _build(
    index: pd.DatetimeIndex,
    long: npt.NDArray[np.bool_],
    short: npt.NDArray[np.bool_],
    long_stop: FloatArray,
    long_target: FloatArray,
    short_stop: FloatArray,
    short_target: FloatArray,
    max_bars: int,
) -> Signals:
    n = len(index)
    side = np.zeros(n, dtype=np.int8)
    side[long] = 1
    side[short] = -1
    stop = np.where(long, long_stop, np.where(short, short_stop, np.nan))
    target = np.where(long, long_target, np.where(short, short_target, np.nan))
    return Signals(
        index,
        side,
        stop.astype(np.float64),
        target.astype(np.float64),
        _filled_int(max_bars, n, "max_bars"),
        np.ones(n, dtype=np.float64),
    )


# -- built-in rules ----------------------------------------------------------------------------


def maxmin_signals(
    candles: pd.DataFrame,
    high_log: pd.Series | npt.ArrayLike,
    low_log: pd.Series | npt.ArrayLike,
    p_up: pd.Series | npt.ArrayLike | None = None,
    *,
    reward_risk: float = 1.5,
    min_confidence: float = 0.0,
    max_bars: int = 0,
    allow_short: bool = True,
) -> Signals:
    """Signals from predicted future highs and lows (log ratios to the close of the bar).

    With ``close`` the bar's close, ``upside = exp(high_log) · close - close`` and
    ``downside = close - exp(low_log) · close``. A bar is long when both are positive,
    ``upside / downside >= reward_risk`` and the confidence ``|2 p_up - 1|`` is at least
    ``min_confidence`` with ``p_up >= 0.5``; the stop is the predicted low price and the target
    the predicted high price. A bar is short in the mirror case (``downside / upside >=
    reward_risk``, ``p_up <= 0.5``) with the stop at the predicted high and the target at the
    predicted low. Without ``p_up`` the confidence is taken as 1 and the direction is not
    filtered. A bar that qualifies both ways (only possible with ``reward_risk <= 1``) or has a
    NaN prediction gets no signal.

    Parameters
    ----------
    candles:
        OHLC candles with a ``close`` column on a unique DatetimeIndex.
    high_log, low_log:
        Predicted ``log(max future high / close)`` and ``log(min future low / close)``: Series on
        (a subset of) the candles' timestamps, or arrays with one entry per candle.
    p_up:
        Optional calibrated probability of an up move, aligned the same way.
    reward_risk:
        Least ratio of the predicted move in the trade's favour to the move against it (> 0).
    min_confidence:
        Least ``|2 p_up - 1|``, in [0, 1]; ignored (confidence 1) without ``p_up``.
    max_bars:
        Most bars a position is held, 0 for no limit.
    allow_short:
        Whether short signals are produced.

    Returns
    -------
    Signals
        One entry per candle.

    Raises
    ------
    ConfigError
        A prediction Series has timestamps that are not candle bars or duplicates, an array has
        the wrong length, or a parameter is out of range.
    """
    if not (np.isfinite(reward_risk) and reward_risk > 0):
        raise ConfigError(f"reward_risk must be positive, got {reward_risk!r}")
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"min_confidence must lie in [0, 1], got {min_confidence!r}")
    index = _candle_index(candles)
    close = _column(candles, "close")
    high = close * np.exp(_aligned(candles, high_log, "high_log"))
    low = close * np.exp(_aligned(candles, low_log, "low_log"))
    upside, downside = high - close, close - low
    valid = np.isfinite(upside) & np.isfinite(downside) & (upside > 0) & (downside > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        long_ratio = np.where(valid, upside / np.where(valid, downside, 1.0), np.nan)
        short_ratio = np.where(valid, downside / np.where(valid, upside, 1.0), np.nan)
    long = valid & (long_ratio >= reward_risk)
    short = valid & (short_ratio >= reward_risk)
    if p_up is not None:
        p = _aligned(candles, p_up, "p_up")
        confident = np.isfinite(p) & (np.abs(2.0 * p - 1.0) >= min_confidence)
        long &= confident & (p >= 0.5)
        short &= confident & (p <= 0.5)
    if not allow_short:
        short[:] = False
    both = long & short
    long &= ~both
    short &= ~both
    return _build(index, long, short, low, high, high, low, max_bars)


def direction_signals(
    candles: pd.DataFrame,
    p_up: pd.Series | npt.ArrayLike,
    *,
    long_threshold: float = 0.55,
    short_threshold: float = 0.45,
    atr_window: int = 14,
    stop_atr: float | None = 1.5,
    target_atr: float | None = 2.0,
    max_bars: int = 0,
    allow_short: bool = True,
) -> Signals:
    """Signals from a probability of an up move, with ATR stops and targets.

    Long where ``p_up >= long_threshold``, short where ``p_up <= short_threshold``. With
    ``atr = talib.ATR(high, low, close, atr_window)`` at the signal bar (causal: Wilder's ATR of
    bar t uses bars up to t only, and the engine enters at the next open), a long's stop is
    ``close - stop_atr · atr`` and its target ``close + target_atr · atr``; a short mirrors them.
    Bars in the ATR's warm-up (NaN) or with a NaN probability get no signal.

    Parameters
    ----------
    candles:
        OHLC candles with ``high``, ``low`` and ``close`` columns on a unique DatetimeIndex.
    p_up:
        Probability of an up move: a Series on (a subset of) the candles' timestamps, or an
        array with one entry per candle.
    long_threshold, short_threshold:
        Probability cut-offs, ``0 <= short_threshold < long_threshold <= 1``.
    atr_window:
        ATR period in bars (>= 1).
    stop_atr, target_atr:
        Stop and target distances in ATRs (> 0), or None for no stop / no target.
    max_bars:
        Most bars a position is held, 0 for no limit.
    allow_short:
        Whether short signals are produced.

    Returns
    -------
    Signals
        One entry per candle.

    Raises
    ------
    ConfigError
        Misaligned ``p_up`` or a parameter out of range.
    """
    if not 0.0 <= short_threshold < long_threshold <= 1.0:
        raise ConfigError(
            "thresholds must satisfy 0 <= short_threshold < long_threshold <= 1, got "
            f"{short_threshold!r} and {long_threshold!r}"
        )
    if int(atr_window) != atr_window or atr_window < 1:
        raise ConfigError(f"atr_window must be a whole number >= 1, got {atr_window!r}")
    for name, value in (("stop_atr", stop_atr), ("target_atr", target_atr)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be positive or None, got {value!r}")
    index = _candle_index(candles)
    high, low, close = (_column(candles, c) for c in ("high", "low", "close"))
    atr = np.asarray(talib.ATR(high, low, close, timeperiod=int(atr_window)), dtype=np.float64)
    p = _aligned(candles, p_up, "p_up")
    ready = np.isfinite(p) & np.isfinite(atr)
    long = ready & (p >= long_threshold)
    short = ready & (p <= short_threshold) & allow_short
    none = np.full(len(index), np.nan)
    stop_distance = atr * stop_atr if stop_atr is not None else none
    target_distance = atr * target_atr if target_atr is not None else none
    return _build(
        index,
        long,
        short,
        close - stop_distance,
        close + target_distance,
        close + stop_distance,
        close - target_distance,
        max_bars,
    )


# -- user rules ------------------------------------------------------------------------------


def _per_bar(value: float | npt.ArrayLike | None, n: int, name: str, fill: float) -> FloatArray:
    if value is None:
        return np.full(n, fill, dtype=np.float64)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be numeric: {exc}") from exc
    if array.ndim == 0:
        return np.full(n, float(array), dtype=np.float64)
    if array.shape != (n,):
        raise ConfigError(f"{name} has shape {array.shape}, expected ({n},) like the index")
    return array.copy()


def signals_from_arrays(
    index: pd.DatetimeIndex,
    side: npt.ArrayLike,
    stop: float | npt.ArrayLike | None = None,
    target: float | npt.ArrayLike | None = None,
    max_bars: int | npt.ArrayLike = 0,
    size: float | npt.ArrayLike = 1.0,
) -> Signals:
    """Signals from arrays a user rule computed, validated.

    Parameters
    ----------
    index:
        The candles' timestamps (unique DatetimeIndex).
    side:
        Per bar +1 (long), -1 (short) or 0 (none); booleans and whole floats are accepted.
    stop, target:
        Per-bar prices (NaN = none), a scalar for every bar, or None for none at all.
    max_bars:
        Most bars held, per bar or one whole number >= 0 (0 = no limit).
    size:
        Position scale, per bar or one number; finite and > 0 on signal bars.

    Returns
    -------
    Signals
        The validated arrays (copies).

    Raises
    ------
    ConfigError
        Wrong lengths, a side outside {-1, 0, 1}, a negative or fractional ``max_bars``, a
        non-positive size on a signal bar, or a stop / target on the wrong side of each other
        (a long's stop must lie below its target, a short's above).
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise ConfigError(f"index must be a DatetimeIndex, got {type(index).__name__}")
    if not index.is_unique:
        raise ConfigError("index has duplicate timestamps")
    n = len(index)
    sides = _per_bar(side, n, "side", 0.0) if np.ndim(side) else None
    if sides is None:
        raise ConfigError("side must be an array with one entry per bar")
    if not np.all(np.isin(sides, (-1.0, 0.0, 1.0))):
        bad = np.unique(sides[~np.isin(sides, (-1.0, 0.0, 1.0))])[:5]
        raise ConfigError(f"side must hold only -1, 0 and 1, found {bad.tolist()}")
    stops = _per_bar(stop, n, "stop", np.nan)
    targets = _per_bar(target, n, "target", np.nan)
    bars = _per_bar(max_bars, n, "max_bars", 0.0)
    if not np.all(np.isfinite(bars) & (bars >= 0) & (bars == np.floor(bars))):
        raise ConfigError("max_bars must be whole numbers >= 0")
    sizes = _per_bar(size, n, "size", 1.0)
    active = sides != 0
    if not np.all(np.isfinite(sizes[active]) & (sizes[active] > 0)):
        raise ConfigError("size must be finite and positive on every signal bar")
    both = active & np.isfinite(stops) & np.isfinite(targets)
    wrong = both & (((sides > 0) & (stops >= targets)) | ((sides < 0) & (stops <= targets)))
    if wrong.any():
        first = index[int(np.argmax(wrong))]
        raise ConfigError(
            f"stop and target are on the wrong sides at {first} (and {wrong.sum() - 1} more)"
        )
    return Signals(index, sides.astype(np.int8), stops, targets, bars.astype(np.int64), sizes)


# -- the table ---------------------------------------------------------------------------------

register_strategy(
    Strategy(
        "maxmin",
        maxmin_signals,
        needs=("max_high", "min_low"),
        optional=("direction",),
        presets={preset: by_name["maxmin"] for preset, by_name in PRESETS.items()},
    )
)
register_strategy(
    Strategy(
        "direction",
        direction_signals,
        needs=("direction",),
        presets={preset: by_name["direction"] for preset, by_name in PRESETS.items()},
    )
)
