"""Resampling candles to a higher timeframe.

Bars are left-labelled on UTC boundaries: first open, max high, min low, last close, summed
volume. A period with missing base bars (an exchange outage) still yields its bar from the bars
that exist, and is reported; only a last period that the data ends before is dropped as
unfinished.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trademl.data.candles import COLUMNS, candle_index, make_candles, validate_candles
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError


@dataclass(frozen=True)
class ResampleResult:
    """Resampled candles and what was incomplete about them."""

    candles: pd.DataFrame
    expected_per_bar: int
    incomplete: pd.DataFrame  # index: bar start; columns: present, expected
    dropped_unfinished: pd.Timestamp | None

    @property
    def incomplete_bars(self) -> int:
        """Resampled bars built from fewer base bars than the period holds."""
        return len(self.incomplete)


def resample_candles(
    candles: pd.DataFrame, source_timeframe: str | Timeframe, target_timeframe: str | Timeframe
) -> ResampleResult:
    """Aggregate ``candles`` from ``source_timeframe`` to ``target_timeframe``.

    Examples
    --------
    >>> idx = pd.date_range("2024-01-01", periods=8, freq="1h", tz="UTC", name="timestamp")
    >>> one = np.ones(8)
    >>> hourly = make_candles(idx, one, one * 2, one * 0.5, one, one)
    >>> result = resample_candles(hourly, "1h", "4h")
    >>> result.candles["volume"].tolist()
    [4.0, 4.0]
    """
    source = Timeframe.parse(source_timeframe)
    target = Timeframe.parse(target_timeframe)
    if target <= source or not source.divides(target):
        raise ConfigError(
            f"cannot resample {source.name} to {target.name}: the target must be a higher "
            f"timeframe made of whole {source.name} bars"
        )
    validate_candles(candles)
    ns = candle_index(candles).as_unit("ns").asi8
    if (source.floor_ns(ns) != ns).any():
        bad = int(np.flatnonzero(source.floor_ns(ns) != ns)[0])
        raise ConfigError(
            f"bar {candles.index[bad]} is not on the {source.name} grid; is the source "
            f"timeframe really {source.name}?"
        )
    bins = target.floor_ns(ns)
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    counts = np.diff(np.r_[starts, len(bins)])
    ends = np.r_[starts[1:], len(bins)] - 1
    o, h, lo, c, v = (candles[col].to_numpy() for col in COLUMNS)

    bar_start = bins[starts]
    opens, closes = o[starts], c[ends]
    highs = np.maximum.reduceat(h, starts)
    lows = np.minimum.reduceat(lo, starts)
    volumes = np.add.reduceat(v, starts)
    expected = target.seconds // source.seconds

    # The data ends before the last period does: that bar is unfinished, not incomplete.
    keep = np.ones(len(starts), dtype=bool)
    dropped = None
    if ns[-1] + source.nanoseconds < bar_start[-1] + target.nanoseconds:
        keep[-1] = False
        dropped = pd.Timestamp(int(bar_start[-1]), tz="UTC")

    index = pd.DatetimeIndex(bar_start[keep].astype("datetime64[ns]")).tz_localize("UTC")
    result = make_candles(
        index,
        opens[keep],
        highs[keep],
        lows[keep],
        closes[keep],
        volumes[keep],
        symbol=candles.attrs.get("symbol"),
        timeframe=target.name,
    )
    short = counts[keep] < expected
    incomplete = pd.DataFrame(
        {"present": counts[keep][short], "expected": expected}, index=index[short]
    )
    return ResampleResult(validate_candles(result), expected, incomplete, dropped)
