"""The Candles contract and its one validator.

Candles are a pandas DataFrame indexed by a UTC ``DatetimeIndex`` named ``timestamp`` (the bar
start), strictly increasing, with float64 columns ``open, high, low, close, volume``, where
``low <= min(open, close)``, ``high >= max(open, close)``, ``volume >= 0`` and no value is NaN
or infinite. Symbol and timeframe travel in ``frame.attrs``.

Every entry point (sources, stores, resampling, the CLI) calls :func:`validate_candles`, which
names the first offending row (1-based, header not counted) and the rule it breaks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from trademl.data.timeframes import Timeframe
from trademl.errors import DataValidationError

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
INDEX_NAME = "timestamp"


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _when(index: pd.DatetimeIndex, position: int) -> str:
    return index[position].strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_candles(
    frame: pd.DataFrame,
    *,
    source: str | None = None,
    row_numbers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Check that ``frame`` honours the Candles contract and return it unchanged.

    Parameters
    ----------
    frame:
        The candles to check.
    source:
        Where they came from (a file path, ``binance:BTCUSDT``...), used in error messages.
    row_numbers:
        The 1-based row number in the source of each frame row; defaults to position + 1.

    Raises
    ------
    DataValidationError
        On the first broken rule, naming the row and the rule.

    Examples
    --------
    >>> import pandas as pd
    >>> idx = pd.DatetimeIndex(["2024-01-01T00:00Z"], name="timestamp")
    >>> frame = pd.DataFrame({"open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5],
    ...                       "volume": [10.0]}, index=idx)
    >>> validate_candles(frame) is frame
    True
    """

    def fail(message: str, rule: str, position: int | None = None) -> DataValidationError:
        row = None
        if position is not None:
            row = int(row_numbers[position]) if row_numbers is not None else position + 1
        return DataValidationError(message, source=source, row=row, rule=rule)

    if not isinstance(frame, pd.DataFrame):
        raise fail(f"expected a pandas DataFrame, got {type(frame).__name__}", "not_a_frame")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise fail(
            f"missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}",
            "missing_column",
        )
    if len(frame) == 0:
        raise fail("no rows: the data is empty", "empty")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise fail(f"index must be a DatetimeIndex, got {type(index).__name__}", "index_type")
    if index.tz is None:
        raise fail("timestamps are naive; they must be UTC", "timezone")
    if index[0].utcoffset() != pd.Timedelta(0) or str(index.tz) not in (
        "UTC",
        "Etc/UTC",
        "UTC+00:00",
    ):
        raise fail(f"timestamps must be in UTC, got zone {index.tz}", "timezone")
    if index.name != INDEX_NAME:
        raise fail(f"index must be named {INDEX_NAME!r}, got {index.name!r}", "index_name")
    if index.hasnans:
        raise fail("missing timestamp", "nan_timestamp", _first(np.asarray(index.isna())))

    for column in COLUMNS:
        dtype = frame[column].dtype
        if dtype != np.float64:
            raise fail(f"column {column!r} must be float64, got {dtype}", "not_float64")

    values = frame.loc[:, list(COLUMNS)].to_numpy()
    finite = np.isfinite(values)
    if not finite.all():
        position = _first(~finite.all(axis=1))
        column = COLUMNS[_first(~finite[position])]
        raise fail(
            f"column {column!r} is {values[position, COLUMNS.index(column)]} at "
            f"{_when(index, position)}; values must be finite numbers",
            "nan_value",
            position,
        )

    ns = index.as_unit("ns").asi8
    if len(ns) > 1:
        step = np.diff(ns)
        if (step <= 0).any():
            position = _first(step <= 0) + 1
            if step[position - 1] == 0:
                raise fail(
                    f"duplicate timestamp {_when(index, position)}", "duplicate_timestamp", position
                )
            raise fail(
                f"timestamp {_when(index, position)} is earlier than the row before it "
                f"({_when(index, position - 1)}); rows must be in increasing time order",
                "unsorted_timestamp",
                position,
            )

    open_, high, low, close, volume = (values[:, i] for i in range(5))
    bad_low = low > np.minimum(open_, close)
    if bad_low.any():
        p = _first(bad_low)
        raise fail(
            f"low {low[p]} is above min(open {open_[p]}, close {close[p]}) at {_when(index, p)}",
            "ohlc_consistency",
            p,
        )
    bad_high = high < np.maximum(open_, close)
    if bad_high.any():
        p = _first(bad_high)
        raise fail(
            f"high {high[p]} is below max(open {open_[p]}, close {close[p]}) at {_when(index, p)}",
            "ohlc_consistency",
            p,
        )
    negative = volume < 0
    if negative.any():
        p = _first(negative)
        raise fail(f"volume {volume[p]} is negative at {_when(index, p)}", "negative_volume", p)
    return frame


def candle_index(frame: pd.DataFrame) -> pd.DatetimeIndex:
    """The ``DatetimeIndex`` of a Candles frame (typed as such)."""
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataValidationError(
            f"index must be a DatetimeIndex, got {type(index).__name__}", rule="index_type"
        )
    return index


def make_candles(
    index: pd.DatetimeIndex | np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
) -> pd.DataFrame:
    """Build a Candles frame from arrays (UTC index, float64 columns) without validating it."""
    ts = pd.DatetimeIndex(index)
    ts = (ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")).as_unit("ns")
    frame = pd.DataFrame(
        {
            "open": np.asarray(open_, dtype=np.float64),
            "high": np.asarray(high, dtype=np.float64),
            "low": np.asarray(low, dtype=np.float64),
            "close": np.asarray(close, dtype=np.float64),
            "volume": np.asarray(volume, dtype=np.float64),
        },
        index=ts.rename(INDEX_NAME),
    )
    return with_meta(frame, symbol=symbol, timeframe=timeframe)


def with_meta(frame: pd.DataFrame, *, symbol: str | None, timeframe: str | None) -> pd.DataFrame:
    """Attach symbol and timeframe to ``frame.attrs`` (in place) and return the frame."""
    if symbol is not None:
        frame.attrs["symbol"] = symbol
    if timeframe is not None:
        frame.attrs["timeframe"] = timeframe
    return frame


def empty_candles() -> pd.DataFrame:
    """A zero-row frame with the Candles columns, dtypes and index (for empty store reads)."""
    return make_candles(pd.DatetimeIndex([], tz="UTC"), *(np.empty(0) for _ in COLUMNS))


def as_candles(
    frame: pd.DataFrame, timeframe: str, *, what: str = "candles", check: bool = True
) -> pd.DataFrame:
    """``frame`` as a Candles frame of ``timeframe``: UTC index, float64 OHLCV, bars spaced by
    the timeframe.

    Parameters
    ----------
    frame : pandas.DataFrame
        ``open, high, low, close, volume`` (other columns are dropped), indexed by time or with
        a ``timestamp`` column; naive timestamps are read as UTC.
    timeframe : str
        The bar length the rows must be spaced by (gaps allowed, never closer).
    what : str
        How error messages name the frame.
    check : bool
        Also check the Candles contract (:func:`validate_candles`).

    Raises
    ------
    DataValidationError
        A missing column (``rule="missing_column"``), bars closer than or not mostly at the
        timeframe (``rule="timeframe"``), or a broken candle.

    Examples
    --------
    >>> frame = pd.DataFrame({"timestamp": ["2024-01-01 00:00", "2024-01-01 01:00"],
    ...     "open": [1, 2], "high": [2, 3], "low": [1, 2], "close": [2, 3], "volume": [5, 6]})
    >>> as_candles(frame, "1h").index.tz
    datetime.timezone.utc
    """
    out = frame.copy()
    if INDEX_NAME in out.columns:
        out = out.set_index(INDEX_NAME)
    missing = [c for c in COLUMNS if c not in out.columns]
    if missing:
        raise DataValidationError(
            f"{what} lack column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)} and a "
            "timestamp (index or column)",
            rule="missing_column",
        )
    index = out.index if isinstance(out.index, pd.DatetimeIndex) else pd.to_datetime(out.index)
    index = pd.DatetimeIndex(index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    out = out[list(COLUMNS)].astype(np.float64)
    out.index = index.rename(INDEX_NAME)
    # The spacing first: candles of another timeframe are wrong however many there are.
    expected = Timeframe.parse(timeframe).delta
    spacing = out.index.to_series().diff().dropna()
    if len(spacing) and (spacing.min() < expected or spacing.median() != expected):
        raise DataValidationError(
            f"{what} are {spacing.median()} apart (median, smallest {spacing.min()}); "
            f"expected {timeframe} bars",
            rule="timeframe",
        )
    if check:
        validate_candles(out, source=what)
    return out
