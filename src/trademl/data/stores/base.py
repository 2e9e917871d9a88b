"""The MarketStore interface: candles keyed by (symbol, timeframe, timestamp).

Writes are upserts in one transaction: re-importing the same candles changes nothing, and a
failed or killed import leaves the store exactly as it was.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pandas as pd
from loguru import logger

from trademl.data.candles import validate_candles
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError
from trademl.plugins import GROUPS, PluginTable, callable_entry
from trademl.progress import Advance

# Rows sent to the database per statement inside the one transaction of a write.
DEFAULT_CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class SeriesInfo:
    """What the store holds for one (symbol, timeframe)."""

    symbol: str
    timeframe: str
    rows: int
    first: pd.Timestamp
    last: pd.Timestamp


@dataclass(frozen=True)
class Batch:
    """Candles to write under one (symbol, timeframe)."""

    candles: pd.DataFrame
    symbol: str
    timeframe: str


@dataclass(frozen=True)
class WriteReport:
    """What a write did to one series."""

    symbol: str
    timeframe: str
    inserted: int
    updated: int
    unchanged: int

    @property
    def changed(self) -> bool:
        """Whether the write changed the store."""
        return bool(self.inserted or self.updated)


class MarketStore(ABC):
    """Where candles live. Use :func:`trademl.data.stores.open_store` to get one."""

    url: str
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def write(self, candles: pd.DataFrame, symbol: str, timeframe: str) -> WriteReport:
        """Upsert ``candles`` under (``symbol``, ``timeframe``) in one transaction."""
        return self.write_many([Batch(candles, symbol, timeframe)])[0]

    def write_many(
        self, batches: Sequence[Batch], *, progress: Advance | None = None
    ) -> list[WriteReport]:
        """Upsert several series in ONE transaction: all of them land, or none.

        Every batch is validated before the transaction opens, so bad input never reaches
        the store. ``progress`` is advanced by the number of rows of each chunk written.
        """
        checked = []
        for batch in batches:
            symbol = _check_symbol(batch.symbol)
            timeframe = Timeframe.parse(batch.timeframe).name
            source = f"{symbol} {timeframe}"
            validate_candles(batch.candles, source=batch.candles.attrs.get("source", source))
            checked.append(Batch(batch.candles, symbol, timeframe))
        if not checked:
            return []
        with self._transaction() as transaction:
            return [self._write_series(transaction, batch, progress) for batch in checked]

    def _write_series(
        self, transaction: Any, batch: Batch, progress: Advance | None
    ) -> WriteReport:
        """Upsert one series chunk by chunk inside the open transaction."""
        total = len(batch.candles)
        chunks = -(-total // self.chunk_rows)
        inserted = updated = 0
        for number, start in enumerate(range(0, total, self.chunk_rows), start=1):
            chunk = batch.candles.iloc[start : start + self.chunk_rows]
            new, changed = self._upsert_chunk(transaction, batch, chunk)
            inserted += new
            updated += changed
            logger.debug("{} {}: chunk {}/{} staged", batch.symbol, batch.timeframe, number, chunks)
            if progress is not None:
                progress(len(chunk))
        return WriteReport(
            batch.symbol, batch.timeframe, inserted, updated, total - inserted - updated
        )

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """Open one transaction: commit when the block ends, roll back when it raises."""

    @abstractmethod
    def _upsert_chunk(self, transaction: Any, batch: Batch, chunk: pd.DataFrame) -> tuple[int, int]:
        """Upsert ``chunk`` of ``batch``; return (rows inserted, rows whose values changed)."""

    @abstractmethod
    def read(
        self,
        symbol: str,
        timeframe: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles with ``start <= timestamp < end``, as a validated Candles frame (maybe empty)."""

    @abstractmethod
    def list_series(self) -> list[SeriesInfo]:
        """Every (symbol, timeframe) held, with row counts and spans, sorted."""

    @abstractmethod
    def delete(self, symbol: str, timeframe: str) -> int:
        """Remove a series; returns the number of rows removed."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def series_info(self, symbol: str, timeframe: str) -> SeriesInfo | None:
        """The :class:`SeriesInfo` of one series, or None when it is not stored."""
        name = Timeframe.parse(timeframe).name
        for info in self.list_series():
            if info.symbol == symbol and info.timeframe == name:
                return info
        return None

    def __enter__(self) -> MarketStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_symbol(symbol: str) -> str:
    cleaned = symbol.strip() if isinstance(symbol, str) else ""
    if not cleaned or len(cleaned) > 64 or any(c.isspace() for c in cleaned):
        raise ConfigError(f"symbol {symbol!r} is not valid: 1-64 characters without spaces")
    return cleaned


StoreFactory = Callable[[str, int | None], MarketStore]
"""Opens a store from its URL and the rows per write statement (None for the default)."""


STORES: PluginTable[StoreFactory] = PluginTable(
    "store scheme",
    group=GROUPS["stores"],
    builtins={
        "duckdb": "trademl.data.stores.duckdb_store",
        "postgresql": "trademl.data.stores.sql_store",
        "postgres": "trademl.data.stores.sql_store",
        "mysql": "trademl.data.stores.sql_store",
        "mariadb": "trademl.data.stores.sql_store",
    },
    check=callable_entry("a store factory (url, chunk_rows) -> MarketStore"),
    hint="a store URL looks like duckdb:///path, postgresql://... or mysql://...",
)
"""Store factories by URL scheme (before any ``+driver``): the built-ins and the
``trademl.stores`` entry points."""
