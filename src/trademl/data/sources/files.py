"""Candles from CSV and Parquet files.

Common header spellings are mapped (``Date``/``Datetime``/``time`` → ``timestamp``,
``Open``/``o`` → ``open``, ``Volume``/``vol`` → ``volume``...); ``Adj Close`` is ignored unless
``adjusted=True`` asks to scale OHLC by it. Timestamps may be epoch seconds, milliseconds,
microseconds or nanoseconds, or date/time strings; naive ones are read in ``tz`` (UTC by
default). Files named ``SYMBOL_TIMEFRAME.csv[.gz]`` or ``.parquet`` carry their symbol and
timeframe in the name.

Errors name the file, the 1-based data row (header not counted) and the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from trademl.data.candles import (
    COLUMNS,
    INDEX_NAME,
    PRICE_COLUMNS,
    candle_index,
    validate_candles,
    with_meta,
)
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError

SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
_NAME_PATTERN = re.compile(r"^(?P<symbol>.+)_(?P<timeframe>\d+[A-Za-z]+)$")

_HEADER_SPELLINGS: dict[str, tuple[str, ...]] = {
    "timestamp": (
        "timestamp",
        "date",
        "datetime",
        "time",
        "open_time",
        "opentime",
        "date_time",
        "ts",
        "gmt_time",
    ),
    "open": ("open", "o", "open_price", "opening_price"),
    "high": ("high", "h", "high_price", "max"),
    "low": ("low", "l", "low_price", "min"),
    "close": ("close", "c", "close_price", "closing_price", "last", "price"),
    "adj_close": ("adj_close", "adjclose", "adjusted_close", "adj_close_price"),
    "volume": ("volume", "vol", "v", "volume_traded", "base_volume", "qty", "tick_volume"),
}


@dataclass(frozen=True)
class FileName:
    """Symbol and timeframe inferred from ``SYMBOL_TIMEFRAME.ext``."""

    symbol: str
    timeframe: str


def is_candle_file(path: Path) -> bool:
    """Whether ``path`` has a suffix the file source reads."""
    return path.name.lower().endswith(SUFFIXES)


def infer_name(path: Path) -> FileName | None:
    """``BTCUSDT_1h.csv.gz`` → ``FileName("BTCUSDT", "1h")``; None when the name does not fit."""
    name = path.name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    match = _NAME_PATTERN.match(name)
    if not match:
        return None
    try:
        timeframe = Timeframe.parse(match.group("timeframe")).name
    except ConfigError:
        return None
    return FileName(match.group("symbol"), timeframe)


def _normalise_header(name: object) -> str:
    return re.sub(r"[\s\-./]+", "_", str(name).strip().lower()).strip("_")


def _map_columns(columns: list[str], source: str) -> dict[str, str]:
    """Original column → contract column, for the columns we recognise."""
    normalised = {_normalise_header(c): c for c in columns}
    mapping: dict[str, str] = {}
    for target, spellings in _HEADER_SPELLINGS.items():
        for spelling in spellings:
            if spelling in normalised:
                mapping[normalised[spelling]] = target
                break
    missing = [c for c in ("timestamp", *COLUMNS) if c not in mapping.values()]
    if missing:
        raise DataValidationError(
            f"missing column(s) {', '.join(missing)}; found {', '.join(map(str, columns))} "
            f"(expected timestamp,open,high,low,close,volume or a common spelling of them)",
            source=source,
            rule="missing_column",
        )
    return mapping


def _read_raw(path: Path) -> pd.DataFrame:
    source = str(path)
    lower = path.name.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
            if isinstance(frame.index, pd.DatetimeIndex):
                frame = frame.reset_index()
            return frame
        try:
            return pd.read_csv(path, engine="pyarrow")
        except (ValueError, TypeError):
            # pyarrow refuses ragged or oddly quoted files; the C parser names the bad line.
            return pd.read_csv(path, engine="c", low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataValidationError("the file is empty", source=source, rule="empty") from None
    except FileNotFoundError:
        raise DataValidationError("no such file", source=source, rule="not_found") from None
    except (pd.errors.ParserError, OSError, ValueError) as error:
        raise DataValidationError(
            f"cannot parse: {error}", source=source, rule="unreadable"
        ) from None


def _parse_timestamps(values: pd.Series, tz: str, source: str) -> pd.DatetimeIndex:
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.DatetimeIndex(values)
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
        if np.isnan(numbers).any():
            row = int(np.flatnonzero(np.isnan(numbers))[0]) + 1
            raise DataValidationError(
                "missing timestamp", source=source, row=row, rule="bad_timestamp"
            )
        magnitude = np.nanmax(np.abs(numbers)) if len(numbers) else 0.0
        # Epoch unit by magnitude: seconds reach 1e11 only in the year 5138.
        unit: Literal["s", "ms", "us", "ns"] = (
            "s"
            if magnitude < 1e11
            else "ms"
            if magnitude < 1e14
            else "us"
            if magnitude < 1e17
            else "ns"
        )
        # Integers stay integers: float64 cannot hold epoch nanoseconds exactly.
        exact = values if pd.api.types.is_integer_dtype(values) else pd.Series(numbers)
        return pd.DatetimeIndex(pd.to_datetime(exact, unit=unit, utc=True))
    else:
        text = values.astype("string")
        stamps = pd.DatetimeIndex(
            pd.to_datetime(text, errors="coerce", format="ISO8601", utc=False)
        )
        bad = np.asarray(stamps.isna())
        if bad.any():
            # Mixed offsets or non-ISO spellings: let pandas try harder before refusing.
            stamps = pd.DatetimeIndex(
                pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
            )
            bad = np.asarray(stamps.isna())
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataValidationError(
                f"timestamp {text.iloc[row]!r} is not a date/time or epoch number",
                source=source,
                row=row + 1,
                rule="bad_timestamp",
            )
    if stamps.tz is None:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"--tz {tz!r} is not a known time zone (e.g. UTC, America/New_York)"
            ) from None
        try:
            stamps = stamps.tz_localize(zone, ambiguous="raise", nonexistent="raise")
        except (ValueError, TypeError) as error:
            raise DataValidationError(
                f"naive timestamps cannot be read in zone {tz}: {error}",
                source=source,
                rule="bad_timestamp",
            ) from None
    return stamps.tz_convert("UTC")


def _to_float(values: pd.Series, column: str, source: str) -> np.ndarray:
    if pd.api.types.is_float_dtype(values) or pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.asarray(numbers.isna() & values.notna())
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"column {column!r} has non-numeric value {values.iloc[row]!r}",
            source=source,
            row=row + 1,
            rule="not_numeric",
        )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def read_candle_file(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    tz: str = "UTC",
    adjusted: bool = False,
) -> pd.DataFrame:
    """Read a CSV or Parquet file into validated Candles.

    Parameters
    ----------
    path:
        The file (``.csv``, ``.csv.gz``, ``.parquet``).
    symbol, timeframe:
        Stored in ``attrs``; inferred from a ``SYMBOL_TIMEFRAME.ext`` name when omitted.
    tz:
        Zone of naive timestamps (IANA name). Zone-aware timestamps are converted to UTC.
    adjusted:
        Scale open, high, low and close by ``Adj Close / Close`` (the file must have one).

    Examples
    --------
    >>> from trademl.data.sources.files import read_candle_file
    >>> candles = read_candle_file("../shared/data/crypto/BTCUSDT_1m.csv")  # doctest: +SKIP
    >>> candles.attrs["symbol"], candles.attrs["timeframe"]  # doctest: +SKIP
    ('BTCUSDT', '1m')
    """
    path = Path(path)
    source = str(path)
    inferred = infer_name(path)
    symbol = symbol or (inferred.symbol if inferred else None)
    timeframe = (
        Timeframe.parse(timeframe).name if timeframe else (inferred.timeframe if inferred else None)
    )
    raw = _read_raw(path)
    if len(raw.columns) and len(raw) == 0:
        raise DataValidationError("the file has a header but no rows", source=source, rule="empty")
    mapping = _map_columns(list(raw.columns), source)
    by_target = {target: original for original, target in mapping.items()}
    index = (
        _parse_timestamps(raw[by_target["timestamp"]], tz, source).as_unit("ns").rename(INDEX_NAME)
    )
    columns = {c: _to_float(raw[by_target[c]], c, source) for c in COLUMNS}
    if adjusted:
        if "adj_close" not in by_target:
            raise DataValidationError(
                "adjusted prices were asked for but the file has no 'Adj Close' column",
                source=source,
                rule="missing_column",
            )
        factor = _to_float(raw[by_target["adj_close"]], "adj_close", source) / columns["close"]
        for price in PRICE_COLUMNS:
            columns[price] = columns[price] * factor
    frame = pd.DataFrame(columns, index=index)
    validate_candles(frame, source=source)
    if timeframe is not None:
        check_on_grid(frame, timeframe, source=source)
    return with_meta(frame, symbol=symbol, timeframe=timeframe)


def check_on_grid(frame: pd.DataFrame, timeframe: str, *, source: str | None = None) -> None:
    """Refuse bars whose start is not on the ``timeframe`` grid (a wrong ``--timeframe``)."""
    tf = Timeframe.parse(timeframe)
    ns = candle_index(frame).as_unit("ns").asi8
    off = tf.floor_ns(ns) != ns
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise DataValidationError(
            f"timestamp {frame.index[row].isoformat()} is not on the {tf.name} grid (bars start "
            f"on UTC multiples of {tf.name}); is the timeframe right?",
            source=source,
            row=row + 1,
            rule="off_grid",
        )
