"""Strategies: predictions to signals, with hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib

from trademl.backtest.strategies import (
    PRESETS,
    direction_signals,
    maxmin_signals,
    signals_from_arrays,
    strategy_signals,
)
from trademl.errors import ConfigError


def _candles(n: int = 40, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, n))
    index = pd.date_range("2024-01-01", periods=n, freq="h")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index
    )


def _flat(n: int = 10) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=n, freq="h")
    return pd.DataFrame(
        {"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1.0}, index=index
    )


def _logs(candles: pd.DataFrame, bar: int, up: float, down: float) -> tuple[pd.Series, pd.Series]:
    """Predictions only at ``bar``: high up ``up`` %, low down ``down`` %."""
    at = candles.index[[bar]]
    return (
        pd.Series([math.log(1 + up / 100)], index=at),
        pd.Series([math.log(1 - down / 100)], index=at),
    )


def test_long_when_reward_risk_reached() -> None:
    candles = _flat()
    high, low = _logs(candles, 3, up=4.0, down=2.0)  # upside / downside = 2
    signals = maxmin_signals(candles, high, low, reward_risk=1.5, max_bars=5)
    assert signals.side.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert signals.stop[3] == pytest.approx(98.0)
    assert signals.target[3] == pytest.approx(104.0)
    assert np.isnan(signals.stop[[0, 1, 2, 4]]).all()
    assert signals.max_bars[3] == 5
    assert signals.size[3] == 1.0
    assert maxmin_signals(candles, high, low, reward_risk=2.5).count == 0


def test_short_mirror() -> None:
    candles = _flat()
    high, low = _logs(candles, 6, up=2.0, down=4.0)  # downside / upside = 2
    signals = maxmin_signals(candles, high, low, reward_risk=1.5)
    assert signals.side[6] == -1
    assert signals.count == 1
    assert signals.stop[6] == pytest.approx(102.0)
    assert signals.target[6] == pytest.approx(96.0)
    assert maxmin_signals(candles, high, low, reward_risk=2.5).count == 0
    assert maxmin_signals(candles, high, low, reward_risk=1.5, allow_short=False).count == 0


def test_confidence_and_direction_filter() -> None:
    candles = _flat()
    high, low = _logs(candles, 3, up=4.0, down=2.0)
    at = candles.index[[3]]
    p_sure = pd.Series([0.7], index=at)  # confidence 0.4
    assert maxmin_signals(candles, high, low, p_sure, min_confidence=0.3).side[3] == 1
    assert maxmin_signals(candles, high, low, p_sure, min_confidence=0.5).count == 0
    p_down = pd.Series([0.3], index=at)  # confident, but down: no long
    assert maxmin_signals(candles, high, low, p_down).count == 0
    p_nan = pd.Series([np.nan], index=at)
    assert maxmin_signals(candles, high, low, p_nan).count == 0


def test_nan_predictions_give_no_signal() -> None:
    candles = _flat()
    high = pd.Series(math.log(1.04), index=candles.index)
    low = pd.Series(math.log(0.98), index=candles.index)
    high.iloc[2] = np.nan
    low.iloc[5] = np.nan
    signals = maxmin_signals(candles, high, low)
    assert signals.side[2] == 0 and signals.side[5] == 0
    assert signals.count == len(candles) - 2
    # A predicted low above the close (no downside) is no trade either.
    assert maxmin_signals(candles, high, pd.Series(0.01, index=candles.index)).count == 0


def test_misaligned_index_is_refused() -> None:
    candles = _flat()
    foreign = pd.DatetimeIndex([candles.index[2] + pd.Timedelta(minutes=30)])
    high = pd.Series([0.04], index=foreign)
    with pytest.raises(ConfigError, match="not candle bars"):
        maxmin_signals(candles, high, -high)
    with pytest.raises(ConfigError, match="not candle bars"):
        direction_signals(candles, pd.Series([0.9], index=foreign))
    with pytest.raises(ConfigError, match="shape"):
        maxmin_signals(candles, np.zeros(3), np.zeros(3))


def test_direction_thresholds_and_atr_stops() -> None:
    candles = _candles()
    values = np.full(len(candles), 0.5)
    values[[20, 25]] = [0.56, 0.55]
    values[[22, 30]] = [0.45, 0.46]
    values[5] = 0.9  # inside the ATR warm-up: no signal
    p = pd.Series(values, index=candles.index)
    signals = direction_signals(candles, p, stop_atr=1.5, target_atr=2.0, max_bars=7)
    assert np.flatnonzero(signals.side).tolist() == [20, 22, 25]
    assert signals.side[[20, 22, 25]].tolist() == [1, -1, 1]
    atr = talib.ATR(
        candles["high"].to_numpy(), candles["low"].to_numpy(), candles["close"].to_numpy(), 14
    )
    close = candles["close"].to_numpy()
    for bar in (20, 25):
        assert signals.stop[bar] == close[bar] - 1.5 * atr[bar]
        assert signals.target[bar] == close[bar] + 2.0 * atr[bar]
    assert signals.stop[22] == close[22] + 1.5 * atr[22]
    assert signals.target[22] == close[22] - 2.0 * atr[22]
    assert signals.max_bars[20] == 7
    # Causal: the ATR of bar 20 ignores later bars.
    changed = candles.copy()
    high = candles["high"].to_numpy().copy()
    high[21:] *= 1.5
    changed["high"] = high
    assert direction_signals(changed, p).stop[20] == signals.stop[20]
    assert direction_signals(candles, p, allow_short=False).side[22] == 0
    no_target = direction_signals(candles, p, target_atr=None)
    assert np.isnan(no_target.target[20]) and np.isfinite(no_target.stop[20])
    with pytest.raises(ConfigError, match="thresholds"):
        direction_signals(candles, p, long_threshold=0.4, short_threshold=0.6)


def test_presets_exist_and_differ() -> None:
    assert set(PRESETS) >= {"conservative", "aggressive"}
    for strategy in ("maxmin", "direction"):
        conservative = PRESETS["conservative"][strategy]
        aggressive = PRESETS["aggressive"][strategy]
        assert conservative != aggressive
    assert (
        PRESETS["conservative"]["maxmin"]["reward_risk"]
        > (PRESETS["aggressive"]["maxmin"]["reward_risk"])
    )
    assert (
        PRESETS["conservative"]["direction"]["long_threshold"]
        > (PRESETS["aggressive"]["direction"]["long_threshold"])
    )


def _predictions(candles: pd.DataFrame) -> pd.DataFrame:
    n = len(candles)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "fold": 0,
            "lgbm__direction_12": rng.uniform(0.3, 0.7, n),
            "lgbm__max_high_12": rng.uniform(0.001, 0.03, n),
            "lgbm__min_low_12": -rng.uniform(0.001, 0.03, n),
            "lgbm__max_high_12__lo": 0.0,
            "target__direction_12": 1.0,
            "naive_mean__max_high_12": 0.01,
            "naive_mean__min_low_12": -0.01,
        },
        index=candles.index.rename("timestamp"),
    )
    return frame.iloc[16:]  # predictions start after a warm-up


def test_strategy_signals_reads_workflow_columns() -> None:
    candles = _candles()
    predictions = _predictions(candles)
    got = strategy_signals("maxmin", candles, predictions, preset="conservative")
    expected = maxmin_signals(
        candles,
        predictions["lgbm__max_high_12"],
        predictions["lgbm__min_low_12"],
        predictions["lgbm__direction_12"],
        **PRESETS["conservative"]["maxmin"],
    )
    np.testing.assert_array_equal(got.side, expected.side)
    np.testing.assert_array_equal(got.stop, expected.stop)
    assert got.side[:16].tolist() == [0] * 16
    loose = strategy_signals("maxmin", candles, predictions, reward_risk=1.0)
    assert loose.count >= got.count
    direction = strategy_signals(
        "direction", candles, predictions, preset="aggressive", horizon=12, model="lgbm"
    )
    np.testing.assert_array_equal(
        direction.side,
        direction_signals(
            candles, predictions["lgbm__direction_12"], **PRESETS["aggressive"]["direction"]
        ).side,
    )
    # A model without a direction column: no P(up) filter.
    baseline = strategy_signals("maxmin", candles, predictions, model="naive_mean", reward_risk=1.0)
    assert baseline.count == len(predictions)
    assert (baseline.side[16:] == 1).all()
    with pytest.raises(ConfigError, match="no columns"):
        strategy_signals("maxmin", candles, predictions, horizon=24)
    with pytest.raises(ConfigError, match="unknown strategy"):
        strategy_signals("magic", candles, predictions)
    with pytest.raises(ConfigError, match="unknown preset"):
        strategy_signals("maxmin", candles, predictions, preset="yolo")
    with pytest.raises(ConfigError, match="no parameter"):
        strategy_signals("maxmin", candles, predictions, long_threshold=0.6)


def test_signals_from_arrays_validates() -> None:
    index = pd.date_range("2024-01-01", periods=4, freq="D")
    signals = signals_from_arrays(
        index,
        [1, 0, -1, 0],
        stop=[95.0, np.nan, 105.0, np.nan],
        target=[110.0, 1.0, 90.0, 1.0],
        max_bars=3,
    )
    assert signals.side.dtype == np.int8
    assert signals.side.tolist() == [1, 0, -1, 0]
    assert signals.max_bars.tolist() == [3, 3, 3, 3]
    with pytest.raises(ConfigError, match="-1, 0 and 1"):
        signals_from_arrays(index, [2, 0, 0, 0])
    with pytest.raises(ConfigError, match="shape"):
        signals_from_arrays(index, [1, 0, 0])
    with pytest.raises(ConfigError, match="wrong sides"):
        signals_from_arrays(index, [1, 0, 0, 0], stop=110.0, target=100.0)
    with pytest.raises(ConfigError, match="size"):
        signals_from_arrays(index, [1, 0, 0, 0], size=0.0)
    with pytest.raises(ConfigError, match="max_bars"):
        signals_from_arrays(index, [1, 0, 0, 0], max_bars=-1)
