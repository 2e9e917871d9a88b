"""Start invariance, generically: past its declared warm-up, every registered indicator (at its
defaults and at random parameters) and every shipped preset computes the same values whatever
bar the history starts at, on real shared data; running totals are refused by name; and the
check catches what the project shipped before (OBV, A/D, a daily ADX counted in TA-Lib's
lookback only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trademl.data.resample import resample_candles
from trademl.data.sources.files import read_candle_file
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError
from trademl.features.indicators import Bars, Indicator, Param, all_indicators, get_indicator
from trademl.features.sets import FeatureSet, load_feature_set, preset_names
from trademl.testing import StartInvarianceError, check_start_invariant

INDICATORS = all_indicators()
INVARIANT = [i for i in INDICATORS if i.start_invariant]
# Random parameters stay in a range whose warm-ups fit the data (KAMA alone needs ~5,500 bars).
PERIOD_CAP = 60
SERIES = {
    "BTCUSDT_1h": ("crypto/BTCUSDT_1h.csv", "1h"),
    "AAPL_1h": ("equities/AAPL_1h.csv", "1h"),  # overnight and weekend gaps
    "SPY_1d": ("equities/SPY_1d.csv", "1d"),
    "ETHUSDT_15m": ("crypto/ETHUSDT_15m.csv", "15m"),
}


def _load(data_dir: Path, name: str, bars: int) -> pd.DataFrame:
    path, timeframe = SERIES[name]
    candles = read_candle_file(data_dir / path).iloc[-bars:]
    candles.attrs["timeframe"] = timeframe
    return candles


@pytest.fixture(scope="module")
def hourly(data_dir: Path) -> pd.DataFrame:
    return _load(data_dir, "BTCUSDT_1h", 12_000)


@pytest.fixture(scope="module")
def series(data_dir: Path) -> dict[str, pd.DataFrame]:
    return {name: _load(data_dir, name, 6_000) for name in SERIES}


@pytest.mark.parametrize("indicator", INVARIANT, ids=[i.name for i in INVARIANT])
def test_every_indicator_is_start_invariant_at_its_defaults(
    indicator: Indicator, hourly: pd.DataFrame
) -> None:
    warmup = indicator.warmup(indicator.resolve())
    # Two later starts, one early and one that leaves exactly enough bars for a few hundred
    # comparisons past the warm-up.
    for start in (37, max(38, len(hourly) - warmup - 400)):
        assert check_start_invariant(indicator, hourly, start) > 0


def _random_value(param: Param, data: st.DataObject) -> Any:
    if param.choices is not None:
        return data.draw(st.sampled_from(param.choices))
    if isinstance(param.default, bool):
        return data.draw(st.booleans())
    if isinstance(param.default, int):
        low = int(param.low if param.low is not None else 1)
        high = int(min(param.high if param.high is not None else PERIOD_CAP, PERIOD_CAP))
        return data.draw(st.integers(low, max(low, high)))
    if isinstance(param.default, float):
        low = param.low if param.low is not None else 0.5 * param.default
        high = param.high if param.high is not None else 1.5 * param.default + 1e-6
        low, high = sorted((float(low), float(high)))
        return data.draw(st.floats(low, high, allow_nan=False))
    return param.default


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_indicator_is_start_invariant_at_random_parameters(
    hourly: pd.DataFrame, data: st.DataObject
) -> None:
    indicator = data.draw(st.sampled_from(INVARIANT), label="indicator")
    given_params = {p.name: _random_value(p, data) for p in indicator.params}
    try:
        params = indicator.resolve(given_params)
    except ConfigError:
        return  # a combination the indicator refuses (e.g. fast period above slow)
    try:
        warmup = indicator.warmup(params)
        indicator.run(Bars.from_candles(hourly.iloc[:50]), params)
    except Exception:  # TA-Lib rejects some combinations only at call time
        return
    if warmup + 200 >= len(hourly):
        return
    start = data.draw(st.integers(1, len(hourly) - warmup - 100), label="start")
    check_start_invariant(indicator, hourly, start, params=params)


@pytest.mark.parametrize("preset", preset_names())
@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(sorted(SERIES)), fraction=st.floats(0.0, 0.5))
def test_every_preset_is_start_invariant_on_real_series(
    preset: str, series: dict[str, pd.DataFrame], name: str, fraction: float
) -> None:
    candles = series[name]
    start = 1 + int(fraction * 2_000)
    assert check_start_invariant(preset, candles, start) > 1_000


def test_running_totals_are_caught(hourly: pd.DataFrame) -> None:
    # What the standard preset carried before version 2.
    for name in ("obv", "ad"):
        with pytest.raises(StartInvarianceError, match=rf"{name}: column '{name}'"):
            check_start_invariant(get_indicator(name), hourly, 3_000)


def test_a_daily_adx_warmed_up_by_talibs_lookback_alone_is_caught(data_dir: Path) -> None:
    hourly = _load(data_dir, "BTCUSDT_1h", 16_000)
    # What the engine declared before: TA-Lib's lookback (27 daily bars for ADX 14), converted
    # to hourly bars, without the unstable period.
    daily_adx = FeatureSet(
        name="daily_adx",
        version=1,
        features=[{"indicator": "adx", "params": {"timeperiod": 14}, "timeframe": "1d"}],
    )
    lookback = int(talib.abstract.Function("ADX", timeperiod=14).lookback)  # type: ignore[attr-defined]
    old_warmup = (lookback + 2) * 24 - 1
    with pytest.raises(StartInvarianceError, match="tf1d_adx_14"):
        check_start_invariant(daily_adx, hourly, 1_000, warmup=old_warmup)
    # The declared warm-up (in daily bars, converted) holds.
    assert check_start_invariant(daily_adx, hourly, 1_000) > 0


def test_a_rsi_without_its_unstable_period_is_caught(hourly: pd.DataFrame) -> None:
    rsi = get_indicator("rsi")
    with pytest.raises(StartInvarianceError, match="rsi_14"):
        check_start_invariant(rsi, hourly, 2_000, warmup=14)


@pytest.mark.parametrize(
    ("name", "alternative"),
    [("obv", "obv_flow"), ("ad", "ad_flow"), ("sar", "dist_low"), ("vwap", "vwap_distance")],
)
def test_a_feature_set_naming_a_non_invariant_indicator_is_refused(
    name: str, alternative: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{name} is not start-invariant.*use {alternative}"):
        load_feature_set(
            {"name": "bad", "version": 1, "features": [{"indicator": "rsi"}, {"indicator": name}]}
        )


def test_the_windowed_alternatives_are_the_running_totals_changes(hourly: pd.DataFrame) -> None:
    bars = Bars.from_candles(hourly)
    window = 20
    traded = pd.Series(bars.volume).rolling(window).sum().to_numpy()
    obv = np.asarray(talib.OBV(bars.close, bars.volume))
    ad = np.asarray(talib.AD(bars.high, bars.low, bars.close, bars.volume))
    obv_flow = get_indicator("obv_flow").run(bars, {"window": window})["obv_flow_20"]
    ad_flow = get_indicator("ad_flow").run(bars, {"window": window})["ad_flow_20"]
    expected_obv = (obv[window:] - obv[:-window]) / traded[window:]
    expected_ad = (ad[window:] - ad[:-window]) / traded[window:]
    np.testing.assert_allclose(obv_flow[window:], expected_obv, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ad_flow[window:], expected_ad[:], rtol=1e-6, atol=1e-9)


def test_higher_timeframe_warmup_is_counted_in_higher_bars(hourly: pd.DataFrame) -> None:
    rsi = get_indicator("rsi")
    own = rsi.warmup(rsi.resolve())
    fs = FeatureSet(name="daily_rsi", version=1, features=[{"indicator": "rsi", "timeframe": "1d"}])
    from trademl.features.engine import warmup_bars

    assert warmup_bars(fs, "1h") == (own + 2) * 24 - 1
    daily = resample_candles(hourly, Timeframe.parse("1h"), Timeframe.parse("1d")).candles
    assert own > int(talib.abstract.Function("RSI").lookback)  # type: ignore[attr-defined]
    assert len(daily) > own  # the data can hold the warm-up this test checks


@pytest.mark.parametrize("preset", preset_names())
@pytest.mark.parametrize("name", sorted(SERIES))
def test_the_last_bar_from_its_tail_equals_the_full_history(
    preset: str, name: str, series: dict[str, pd.DataFrame]
) -> None:
    from trademl.features.engine import build_features, last_bar_features
    from trademl.features.invariance import start_error

    candles = series[name]
    full = build_features(candles, preset)
    for end in (len(candles), len(candles) - 1, len(candles) - 333):
        history = candles.iloc[:end]
        history.attrs.update(candles.attrs)
        row = last_bar_features(history, preset)
        assert row.index[0] == candles.index[end - 1]
        assert list(row.columns) == list(full.columns)
        expected = full.iloc[end - 1].to_numpy()
        got = row.iloc[0].to_numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        assert np.nanmax(start_error(expected, got)) <= 1e-9


def test_too_few_candles_for_the_last_bar_say_how_many(hourly: pd.DataFrame) -> None:
    from trademl.errors import DataValidationError
    from trademl.features.engine import last_bar_features, warmup_bars

    needed = warmup_bars("minimal", "1h") + 1
    short = hourly.iloc[-(needed - 1) :]
    with pytest.raises(DataValidationError, match=rf"needs at least {needed} candles"):
        last_bar_features(short, "minimal")
    assert len(last_bar_features(hourly.iloc[-needed:], "minimal")) == 1
