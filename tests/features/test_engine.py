"""build_features: names, warm-up policy, errors, higher-timeframe alignment, cache, TA-Lib parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from trademl.data.resample import resample_candles
from trademl.data.sources.files import read_candle_file
from trademl.errors import ConfigError, DataValidationError
from trademl.features import engine
from trademl.features.cache import FeatureCache
from trademl.features.engine import build_features, warmup_bars
from trademl.features.indicators import Bars, all_indicators, get_indicator
from trademl.features.sets import FeatureSet, load_feature_set, resolve_timeframe


@pytest.fixture(scope="module")
def btc(data_dir: Path) -> pd.DataFrame:
    return read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-5_000:]


def test_minimal_preset_names_values_and_warmup(btc: pd.DataFrame) -> None:
    features = build_features(btc, "minimal")
    assert features.index.equals(btc.index)
    assert (features.dtypes == np.float64).all()
    assert features.columns.tolist()[:3] == ["sma_20_vs_close", "sma_50_vs_close", "rsi_14"]
    # The warm-up is MACD's: TA-Lib's lookback (33) plus the bars its EMAs need to forget
    # the first bar (measured, with a margin); every column is complete from there on.
    warm = features.attrs["warmup_bars"]
    assert warm == max(get_indicator(n).warmup(get_indicator(n).resolve()) for n in ("macd", "rsi"))
    assert warm > 33
    assert features.iloc[:warm].isna().any(axis=1).all()
    assert not features.iloc[warm:].isna().any().any()
    close = btc["close"].to_numpy()
    rsi_warm = get_indicator("rsi").warmup(get_indicator("rsi").resolve())
    np.testing.assert_array_equal(
        features["rsi_14"].to_numpy()[rsi_warm:], talib.RSI(close, 14)[rsi_warm:]
    )
    assert np.isnan(features["rsi_14"].to_numpy()[:rsi_warm]).all()
    # Price levels come relative to the close: ln(SMA / close).
    sma = talib.SMA(close, 20)
    np.testing.assert_allclose(
        features["sma_20_vs_close"].to_numpy()[warm:], np.log(sma / close)[warm:], rtol=1e-12
    )
    dropped = build_features(btc, "minimal", warmup="drop")
    assert len(dropped) == len(btc) - warm
    pd.testing.assert_frame_equal(dropped, features.iloc[warm:], check_freq=False)


def test_talib_indicators_equal_talib_reference(btc: pd.DataFrame) -> None:
    bars = Bars.from_candles(btc)
    inputs = {c: btc[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    checked = 0
    for indicator in all_indicators():
        if indicator.source != "TA-Lib":
            continue
        params = indicator.resolve()
        ours = indicator.run(bars, params)
        function = talib.abstract.Function(indicator.name.upper())
        function.set_parameters({k: v for k, v in params.items() if k != "price"})
        reference = function(inputs)
        references = reference if isinstance(reference, list) else [reference]
        warm = indicator.warmup(params)
        for column, expected in zip(ours, references, strict=True):
            np.testing.assert_array_equal(
                ours[column][warm:], np.asarray(expected, dtype=float)[warm:], err_msg=column
            )
        checked += 1
    assert checked > 150


def test_too_few_bars_names_how_many_are_needed(btc: pd.DataFrame) -> None:
    needed = warmup_bars("minimal", "1h") + 1
    with pytest.raises(DataValidationError, match=f"needs at least {needed} bars .* got 30"):
        build_features(btc.iloc[:30], "minimal")


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (
            {"name": "x", "version": 1, "features": [{"indicator": "rsy"}]},
            "unknown indicator 'rsy'; did you mean 'rsi'",
        ),
        (
            {
                "name": "x",
                "version": 1,
                "features": [{"indicator": "rsi", "params": {"period": 3}}],
            },
            "unknown parameter.*period; valid: price, timeperiod",
        ),
        (
            {
                "name": "x",
                "version": 1,
                "features": [{"indicator": "rsi", "params": {"timeperiod": 0}}],
            },
            "below its minimum",
        ),
        (
            {
                "name": "x",
                "version": 1,
                "features": [{"indicator": "rsi", "params": {"timeperiod": "x"}}],
            },
            "must be an integer",
        ),
        (
            {"name": "x", "version": 1, "features": [{"indicator": "rsi", "timeframe": "7x"}]},
            "not understood",
        ),
        (
            {"name": "x", "version": 1, "features": [{"indicator": "rsi", "colour": "red"}]},
            "colour: Extra inputs",
        ),
        ({"name": "x", "version": 0, "features": [{"indicator": "rsi"}]}, "version"),
        ({"name": "x", "version": 1, "features": []}, "features"),
        (
            {"name": "x", "version": 1, "features": [{"indicator": "rsi"}, {"indicator": "rsi"}]},
            "duplicate columns: rsi_14",
        ),
    ],
)
def test_bad_feature_sets_fail_clearly(btc: pd.DataFrame, definition: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_feature_set(definition).columns("1h")


def test_yaml_files_and_unknown_presets(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nversion: 2\nfeatures:\n  - indicator: atr\n    params: {timeperiod: 7}\n    timeframe: 4h\n"
    )
    fs = load_feature_set(path)
    assert fs.columns("1h") == ["tf4h_atr_7"]
    with pytest.raises(ConfigError, match="neither a preset"):
        load_feature_set("nonsense")
    path.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_feature_set(path)


@pytest.mark.parametrize(
    ("base", "relative", "expected"),
    [
        ("1m", "x4", "5m"),
        ("1m", "x24", "30m"),
        ("5m", "x4", "15m"),
        ("15m", "x4", "1h"),
        ("15m", "x24", "6h"),
        ("1h", "x4", "4h"),
        ("1h", "x24", "1d"),
        ("1d", "x4", "3d"),
        ("1d", "x24", "1w"),
    ],
)
def test_relative_timeframes(base: str, relative: str, expected: str) -> None:
    resolved = resolve_timeframe(relative, base)
    assert resolved is not None and resolved.name == expected


def test_higher_timeframe_uses_only_closed_bars(btc: pd.DataFrame) -> None:
    fs = FeatureSet(
        name="h",
        version=1,
        features=[{"indicator": "sma", "params": {"timeperiod": 3}, "timeframe": "4h"}],
    )
    features = build_features(btc, fs)["tf4h_sma_3"]
    four = resample_candles(btc, "1h", "4h").candles
    sma = pd.Series(talib.SMA(four["close"].to_numpy(), 3), index=four.index)
    day = btc.index[-100].normalize()
    # The 4h bar 00:00-04:00 closes with the 03:00 hourly bar: usable from 03:00 on, not before.
    assert features[day + pd.Timedelta(hours=3)] == sma[day]
    assert features[day + pd.Timedelta(hours=2)] == sma[day - pd.Timedelta(hours=4)]
    assert features[day + pd.Timedelta(hours=6)] == sma[day]
    assert features[day + pd.Timedelta(hours=7)] == sma[day + pd.Timedelta(hours=4)]


def test_cache_recomputes_only_when_data_or_set_change(
    btc: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = engine._compute
    monkeypatch.setattr(engine, "_compute", lambda *a: calls.append(1) or original(*a))
    cache = FeatureCache(tmp_path / "cache")
    first = build_features(btc, "minimal", cache=cache)
    second = build_features(btc, "minimal", cache=cache)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, second, check_freq=False)
    changed = btc.copy()
    changed.iloc[-1, changed.columns.get_loc("volume")] += 1
    build_features(changed, "minimal", cache=cache)
    assert len(calls) == 2
    bumped = load_feature_set("minimal").model_copy(update={"version": 3})
    build_features(btc, bumped, cache=cache)
    assert len(calls) == 3


def test_indicator_parameters_are_named_in_columns() -> None:
    macd = get_indicator("macd")
    assert macd.columns(macd.resolve({"fastperiod": 5})) == [
        "macd_5_26_9_macd",
        "macd_5_26_9_signal",
        "macd_5_26_9_hist",
    ]
    sma = get_indicator("SMA")
    assert sma.columns(sma.resolve({"price": "volume", "timeperiod": 10})) == ["volume_sma_10"]
