"""Resampling: correct OHLCV aggregation, left labels on UTC boundaries, gaps and unfinished bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.data.candles import make_candles
from trademl.data.resample import resample_candles
from trademl.data.sources.files import read_candle_file
from trademl.errors import ConfigError


def _minutes(n: int, start: str = "2024-01-01") -> pd.DataFrame:
    idx = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    close = 100 + np.arange(n, dtype=float)
    return make_candles(idx, close - 0.5, close + 1, close - 1, close, np.ones(n))


@pytest.mark.parametrize("base", ["5m", "15m"])
def test_real_intraday_bars_add_up_to_the_real_hourly_file(data_dir: Path, base: str) -> None:
    small = read_candle_file(
        data_dir / "crypto" / f"BTCUSDT_{base}.csv{'.gz' if base == '5m' else ''}"
    )
    hourly = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    result = resample_candles(small, base, "1h")
    # Compare only complete hours: an hour whose base bars are partly missing is reported instead.
    complete = result.candles.index.difference(result.incomplete.index)
    shared = complete.intersection(hourly.index)
    assert len(shared) > 10_000
    mine, theirs = result.candles.loc[shared], hourly.loc[shared]
    for column in ("open", "high", "low", "close"):
        assert np.array_equal(mine[column].to_numpy(), theirs[column].to_numpy()), column
    np.testing.assert_allclose(mine["volume"], theirs["volume"], rtol=1e-9)


def test_chained_resampling_equals_direct(data_dir: Path) -> None:
    minutes = read_candle_file(data_dir / "crypto" / "BTCUSDT_1m.csv")
    direct = resample_candles(minutes, "1m", "1h").candles
    chained = minutes
    for source, target in [("1m", "5m"), ("5m", "15m"), ("15m", "1h")]:
        chained = resample_candles(chained, source, target).candles
    pd.testing.assert_frame_equal(direct, chained, check_freq=False, check_exact=False, rtol=1e-12)


def test_aggregation_rules_and_left_labels() -> None:
    result = resample_candles(_minutes(120), "1m", "1h")
    bars = result.candles
    assert list(bars.index.strftime("%H:%M")) == ["00:00", "01:00"]
    first = bars.iloc[0]
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
        99.5,
        160,
        99,
        159,
        60,
    )
    assert result.incomplete_bars == 0 and result.dropped_unfinished is None


def test_outage_bar_is_kept_and_reported() -> None:
    minutes = _minutes(180).drop(
        pd.date_range("2024-01-01 01:10", "2024-01-01 01:49", freq="1min", tz="UTC")
    )
    result = resample_candles(minutes, "1m", "1h")
    assert len(result.candles) == 3
    assert result.candles.loc["2024-01-01 01:00", "volume"] == 20
    assert result.incomplete.loc[pd.Timestamp("2024-01-01 01:00", tz="UTC")].tolist() == [20, 60]


def test_only_a_last_unfinished_period_is_dropped() -> None:
    # Starts mid-hour (kept, reported incomplete) and ends mid-hour (dropped as unfinished).
    result = resample_candles(_minutes(100, start="2024-01-01 00:30"), "1m", "1h")
    assert list(result.candles.index.strftime("%H:%M")) == ["00:00", "01:00"]
    assert result.dropped_unfinished == pd.Timestamp("2024-01-01 02:00", tz="UTC")
    assert list(result.incomplete.index.strftime("%H:%M")) == ["00:00"]


def test_weekly_bars_start_on_monday(data_dir: Path) -> None:
    daily = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    weekly = resample_candles(resample_candles(daily, "1h", "1d").candles, "1d", "1w").candles
    assert set(weekly.index.day_name()) == {"Monday"}
    assert weekly.attrs["timeframe"] == "1w"


@pytest.mark.parametrize(("source", "target"), [("1h", "1m"), ("1h", "1h"), ("1h", "90m")])
def test_refuses_lower_or_non_multiple_targets(source: str, target: str) -> None:
    candles = _minutes(60)
    with pytest.raises(ConfigError, match="cannot resample"):
        resample_candles(candles, source, target)


def test_refuses_bars_off_the_source_grid() -> None:
    with pytest.raises(ConfigError, match="not on the 5m grid"):
        resample_candles(_minutes(30), "5m", "1h")
