from __future__ import annotations

import pandas as pd

from trademl.data.gaps import gap_report
from trademl.data.sources.files import read_candle_file


def test_counts_and_locates_gaps() -> None:
    idx = pd.date_range("2024-01-01", periods=10, freq="1h", tz="UTC").delete([3, 4, 7])
    report = gap_report(idx, "1h")
    assert (report.expected_bars, report.present_bars, report.missing_bars) == (10, 7, 3)
    assert [(g.start.hour, g.end.hour, g.missing_bars) for g in report.gaps] == [
        (3, 4, 2),
        (7, 7, 1),
    ]
    assert report.largest(1)[0].missing_bars == 2


def test_no_gaps_and_empty() -> None:
    idx = pd.date_range("2024-01-01", periods=3, freq="1D", tz="UTC")
    assert gap_report(idx, "1d").missing_bars == 0
    assert gap_report(idx[:0], "1d").expected_bars == 0


def test_misaligned_bars_are_counted() -> None:
    idx = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 00:30", "2024-01-01 01:00"], tz="UTC")
    report = gap_report(idx, "1h")
    assert report.misaligned_bars == 1
    assert report.expected_bars == 2


def test_real_btc_hourly_gaps_match_the_published_counts(data_dir) -> None:
    # ../shared/data/README: BTCUSDT 1h misses 128 bars in 28 gap events; the largest is
    # 33 hours on 8-9 February 2018.
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    report = gap_report(candles.index, "1h")
    assert (report.missing_bars, len(report.gaps)) == (128, 28)
    largest = report.largest(1)[0]
    assert largest.missing_bars == 33
    assert largest.start.strftime("%Y-%m-%d") == "2018-02-08"
