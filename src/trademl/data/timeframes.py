"""Timeframes: parsing, canonical names, and bar boundaries on UTC.

A timeframe is a fixed bar length written ``<n><unit>`` with unit ``s``, ``m``, ``h``, ``d`` or
``w`` (``1m``, ``15m``, ``1h``, ``4h``, ``1d``, ``1w``). Bars are left-labelled (a bar's
timestamp is its start) and aligned on UTC boundaries counted from the Unix epoch; weeks start
on Monday 00:00 UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

import numpy as np
import pandas as pd

from trademl.errors import UnknownTimeframeError

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_ALIASES = {
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "t": "m",
    "hour": "h",
    "hours": "h",
    "day": "d",
    "days": "d",
    "week": "w",
    "weeks": "w",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
}
_PATTERN = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")
# 1970-01-01 was a Thursday: Monday-aligned weeks are shifted by four days.
_WEEK_ORIGIN_NS = 4 * 86_400 * 10**9


@total_ordering
@dataclass(frozen=True)
class Timeframe:
    """A fixed bar length.

    Examples
    --------
    >>> Timeframe.parse("60m").name
    '1h'
    >>> Timeframe.parse("4h").seconds
    14400
    """

    seconds: int

    @classmethod
    def parse(cls, value: str | Timeframe) -> Timeframe:
        """Parse ``value`` (``"5m"``, ``"1h"``, ``"1D"``, ``"15min"``...) into a Timeframe."""
        if isinstance(value, Timeframe):
            return value
        match = _PATTERN.match(str(value))
        if not match:
            raise UnknownTimeframeError(
                f"timeframe {value!r} is not understood; expected <n><unit> with unit "
                "s, m, h, d or w, such as '1m', '15m', '1h', '4h', '1d', '1w'"
            )
        count, unit = int(match.group(1)), match.group(2)
        # 'M' is a month elsewhere; months are not fixed-length bars, so refuse them clearly.
        if unit in ("M", "mo", "mon", "month", "months"):
            raise UnknownTimeframeError(
                f"timeframe {value!r}: monthly bars are not supported (not a fixed length); "
                "use '1w' or '1d'"
            )
        unit = _ALIASES.get(unit.lower(), unit.lower())
        if unit not in _UNIT_SECONDS or count <= 0:
            raise UnknownTimeframeError(
                f"timeframe {value!r} is not understood; expected <n><unit> with n > 0 and "
                "unit s, m, h, d or w, such as '1m', '1h', '1d'"
            )
        seconds = count * _UNIT_SECONDS[unit]
        if seconds > _UNIT_SECONDS["w"] and seconds % _UNIT_SECONDS["w"]:
            raise UnknownTimeframeError(
                f"timeframe {value!r}: bars longer than a week must be whole weeks"
            )
        return cls(seconds)

    @property
    def name(self) -> str:
        """Canonical name: the largest unit that divides the length (``3600`` → ``'1h'``)."""
        for unit in ("w", "d", "h", "m", "s"):
            size = _UNIT_SECONDS[unit]
            if self.seconds % size == 0:
                return f"{self.seconds // size}{unit}"
        raise AssertionError("unreachable: seconds is a positive integer")

    @property
    def delta(self) -> pd.Timedelta:
        """The bar length as a Timedelta."""
        return pd.Timedelta(seconds=self.seconds)

    @property
    def nanoseconds(self) -> int:
        """The bar length in nanoseconds."""
        return self.seconds * 10**9

    @property
    def is_weekly(self) -> bool:
        """Whether bars are aligned on Mondays (multiples of a week)."""
        return self.seconds % _UNIT_SECONDS["w"] == 0

    def floor_ns(self, epoch_ns: np.ndarray) -> np.ndarray:
        """Start of the bar containing each epoch-nanosecond instant."""
        step = self.nanoseconds
        origin = _WEEK_ORIGIN_NS if self.is_weekly else 0
        return ((epoch_ns - origin) // step) * step + origin

    def floor(self, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """Start of the bar containing each timestamp (UTC)."""
        ns = index.as_unit("ns").asi8
        return pd.DatetimeIndex(
            self.floor_ns(ns).astype("datetime64[ns]"), name=index.name
        ).tz_localize("UTC")

    def divides(self, other: Timeframe) -> bool:
        """Whether bars of ``other`` are made of whole bars of this timeframe."""
        return other.seconds % self.seconds == 0

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Timeframe):
            return NotImplemented
        return self.seconds < other.seconds

    def __str__(self) -> str:
        return self.name


def parse_timeframe(value: str | Timeframe) -> Timeframe:
    """Shorthand for :meth:`Timeframe.parse`."""
    return Timeframe.parse(value)
