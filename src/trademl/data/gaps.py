"""Gap reports: how many bars a series should have between its first and last bar, and where
the holes are. The calendar is continuous (24/7), as for crypto; for exchange-traded assets
nights, weekends and holidays show up as gaps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trademl.data.timeframes import Timeframe


@dataclass(frozen=True)
class Gap:
    """A run of missing bars: ``start`` is the first missing bar, ``end`` the last."""

    start: pd.Timestamp
    end: pd.Timestamp
    missing_bars: int


@dataclass(frozen=True)
class GapReport:
    """Expected vs present bars of one series on a continuous calendar."""

    timeframe: str
    expected_bars: int
    present_bars: int
    gaps: list[Gap] = field(default_factory=list)
    misaligned_bars: int = 0

    @property
    def missing_bars(self) -> int:
        """Bars the calendar expects that the series does not have."""
        return self.expected_bars - self.present_bars + self.misaligned_bars

    @property
    def coverage(self) -> float:
        """Fraction of expected bars that are present (1.0 when there are no gaps)."""
        return (
            1.0
            if self.expected_bars == 0
            else (self.present_bars - self.misaligned_bars) / self.expected_bars
        )

    def largest(self, n: int = 5) -> list[Gap]:
        """The ``n`` largest gaps, largest first."""
        return sorted(self.gaps, key=lambda gap: gap.missing_bars, reverse=True)[:n]


def gap_report(index: pd.DatetimeIndex, timeframe: str | Timeframe) -> GapReport:
    """Count expected, present and missing bars of ``index`` at ``timeframe``.

    Bars whose timestamps are not on the timeframe's grid are counted as ``misaligned_bars``.

    Examples
    --------
    >>> idx = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC").delete(2)
    >>> report = gap_report(idx, "1h")
    >>> (report.expected_bars, report.present_bars, report.missing_bars)
    (5, 4, 1)
    """
    tf = Timeframe.parse(timeframe)
    if len(index) == 0:
        return GapReport(tf.name, 0, 0)
    ns = index.as_unit("ns").asi8
    step = tf.nanoseconds
    aligned = tf.floor_ns(ns) == ns
    first, last = tf.floor_ns(ns[:1])[0], tf.floor_ns(ns[-1:])[0]
    expected = int((last - first) // step) + 1
    grid = np.unique(tf.floor_ns(ns[aligned])) if not aligned.all() else ns
    jumps = np.diff(grid) // step
    holes = np.flatnonzero(jumps > 1)
    gaps = [
        Gap(
            start=pd.Timestamp(int(grid[i] + step), tz="UTC"),
            end=pd.Timestamp(int(grid[i + 1] - step), tz="UTC"),
            missing_bars=int(jumps[i] - 1),
        )
        for i in holes
    ]
    misaligned = int((~aligned).sum())
    return GapReport(tf.name, expected, len(ns), gaps, misaligned)
