from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trademl.data.timeframes import Timeframe
from trademl.errors import UnknownTimeframeError


@pytest.mark.parametrize(
    ("text", "name", "seconds"),
    [
        ("1m", "1m", 60),
        ("60m", "1h", 3600),
        ("15min", "15m", 900),
        ("4H", "4h", 14400),
        ("1d", "1d", 86400),
        ("7d", "1w", 604800),
        ("1w", "1w", 604800),
        ("30s", "30s", 30),
    ],
)
def test_parse_canonical_names(text: str, name: str, seconds: int) -> None:
    tf = Timeframe.parse(text)
    assert (tf.name, tf.seconds) == (name, seconds)


@pytest.mark.parametrize("text", ["", "h1", "0m", "5x", "1M", "1 month", "10d"])
def test_bad_timeframes_are_refused(text: str) -> None:
    with pytest.raises(UnknownTimeframeError, match="timeframe"):
        Timeframe.parse(text)


def test_weeks_start_on_monday_utc() -> None:
    stamps = pd.DatetimeIndex(
        ["2024-01-03 15:00", "2024-01-07 23:59", "2024-01-08 00:00"], tz="UTC"
    )
    floors = Timeframe.parse("1w").floor(stamps)
    assert list(floors.day_name()) == ["Monday"] * 3
    assert list(floors.strftime("%Y-%m-%d")) == ["2024-01-01", "2024-01-01", "2024-01-08"]


def test_four_hour_bars_align_on_utc_midnight() -> None:
    stamps = pd.DatetimeIndex(
        ["2024-01-01 03:59", "2024-01-01 04:00", "2024-01-01 23:00"], tz="UTC"
    )
    assert list(Timeframe.parse("4h").floor(stamps).hour) == [0, 4, 20]


def test_ordering_and_divisibility() -> None:
    one, five, hour = (Timeframe.parse(x) for x in ("1m", "5m", "1h"))
    assert one < five < hour
    assert five.divides(hour) and not Timeframe.parse("7m").divides(hour)
    assert np.array_equal(hour.floor_ns(np.array([3_600 * 10**9 + 5])), np.array([3_600 * 10**9]))
