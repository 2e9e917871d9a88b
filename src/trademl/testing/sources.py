"""Conformance checks of a data source: what ``fetch`` returns, whatever the venue.

A source that downloads is checked against a local server answering like its venue (or on
files), so the checks need no network: give :func:`check_source` the source, a symbol and a
range it can serve, and optionally the candles it must return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trademl.data.candles import COLUMNS, validate_candles
from trademl.data.sources.base import Source
from trademl.data.timeframes import Timeframe
from trademl.errors import DataValidationError, TradeMLError
from trademl.testing.data import ConformanceError


@dataclass(frozen=True)
class SourceCase:
    """A source with what it can serve: ``symbol`` at ``timeframe`` over ``[start, end)``.

    ``expected`` are the candles it must return for that range (None: not compared);
    ``empty`` a range without candles, which must raise a trademl error (None: not tried).
    """

    source: Source
    symbol: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    expected: pd.DataFrame | None = None
    empty: tuple[pd.Timestamp, pd.Timestamp] | None = None


SourceCheck = Callable[[SourceCase], None]


def _fetch(case: SourceCase, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    frame = case.source.fetch(case.symbol, Timeframe.parse(case.timeframe), start, end)
    name = getattr(case.source, "name", type(case.source).__name__)
    if not isinstance(frame, pd.DataFrame):
        raise ConformanceError(f"{name}: fetch returned {type(frame).__name__}, not a DataFrame")
    return frame


def check_source_candles(case: SourceCase) -> None:
    """fetch returns validated, non-empty Candles inside ``[start, end)``, on bar boundaries of
    the timeframe, with ``attrs`` naming the symbol and the timeframe (and, when given, the
    expected values exactly)."""
    name = getattr(case.source, "name", type(case.source).__name__)
    frame = _fetch(case, case.start, case.end)
    try:
        validate_candles(frame, source=name)
    except DataValidationError as error:
        raise ConformanceError(f"{name}: fetch broke the Candles contract: {error}") from error
    if list(frame.columns) != list(COLUMNS):
        raise ConformanceError(f"{name}: columns {list(frame.columns)}, expected {list(COLUMNS)}")
    if len(frame) == 0:
        raise ConformanceError(f"{name}: fetch of a served range returned no candles")
    index = pd.DatetimeIndex(frame.index)
    if index.tz is None or str(index.tz) != "UTC":
        raise ConformanceError(f"{name}: the index must be in UTC, got {index.tz}")
    if index[0] < case.start or index[-1] >= case.end:
        raise ConformanceError(
            f"{name}: candles from {index[0]} to {index[-1]} leave [{case.start}, {case.end})"
        )
    timeframe = Timeframe.parse(case.timeframe)
    if not timeframe.is_weekly and (index.asi8 % timeframe.nanoseconds).any():
        raise ConformanceError(f"{name}: timestamps are not {timeframe.name} bar starts")
    wanted = {"symbol": frame.attrs.get("symbol"), "timeframe": frame.attrs.get("timeframe")}
    if not wanted["symbol"] or wanted["timeframe"] != timeframe.name:
        raise ConformanceError(
            f"{name}: attrs {frame.attrs} must name the symbol and timeframe {timeframe.name!r}"
        )
    if case.expected is not None:
        expected = case.expected[
            (case.expected.index >= case.start) & (case.expected.index < case.end)
        ]
        same = frame.index.equals(expected.index) and np.array_equal(
            frame[list(COLUMNS)].to_numpy(), expected[list(COLUMNS)].to_numpy()
        )
        if not same:
            raise ConformanceError(f"{name}: fetched candles differ from the expected ones")


def check_source_clips_to_range(case: SourceCase) -> None:
    """A narrower range returns exactly the matching rows of the full fetch."""
    name = getattr(case.source, "name", type(case.source).__name__)
    full = _fetch(case, case.start, case.end)
    if len(full) < 3:
        raise ConformanceError(f"{name}: the case's range must hold at least 3 candles")
    inner_start = full.index[1] + (full.index[2] - full.index[1]) / 2  # mid-bar: rounds up
    inner_end = full.index[-1]
    inner = _fetch(case, inner_start, inner_end)
    expected = full[(full.index >= inner_start) & (full.index < inner_end)]
    if not (
        inner.index.equals(expected.index) and np.array_equal(inner.to_numpy(), expected.to_numpy())
    ):
        raise ConformanceError(
            f"{name}: fetch({inner_start}, {inner_end}) is not the matching slice of the full "
            f"fetch ({len(inner)} rows, expected {len(expected)})"
        )


def check_source_empty_range(case: SourceCase) -> None:
    """A range without candles raises a trademl error (not an empty frame, not a raw one)."""
    if case.empty is None:
        return
    name = getattr(case.source, "name", type(case.source).__name__)
    try:
        frame = _fetch(case, *case.empty)
    except TradeMLError:
        return
    except Exception as error:
        raise ConformanceError(
            f"{name}: an empty range raised {type(error).__name__}, not a trademl error"
        ) from error
    raise ConformanceError(f"{name}: an empty range returned {len(frame)} rows instead of raising")


def source_checks(case: SourceCase) -> list[SourceCheck]:
    """The checks of a source case (the empty-range one when the case gives a range)."""
    checks: list[SourceCheck] = [check_source_candles, check_source_clips_to_range]
    if case.empty is not None:
        checks.append(check_source_empty_range)
    return checks


def check_source(case: SourceCase) -> None:
    """Run every source check on ``case``.

    Raises
    ------
    ConformanceError
        Naming the source and the broken promise.
    """
    check_source_candles(case)
    check_source_clips_to_range(case)
    check_source_empty_range(case)
