"""``examplemem://<name>``: candles in process memory, one shared store per name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

from trademl.data.candles import COLUMNS, empty_candles, with_meta
from trademl.data.sources.base import clip_range
from trademl.data.stores.base import Batch, MarketStore, SeriesInfo
from trademl.data.timeframes import Timeframe

Series = dict[tuple[str, str], pd.DataFrame]
_DATABASES: dict[str, Series] = {}


class MemoryStore(MarketStore):
    """A store whose series live in a dict; a write works on a copy swapped in at commit."""

    def __init__(self, url: str, chunk_rows: int | None = None) -> None:
        self.url = url
        if chunk_rows:
            self.chunk_rows = chunk_rows
        self._series = _DATABASES.setdefault(url.partition("://")[2], {})

    @contextmanager
    def _transaction(self) -> Iterator[Series]:
        working = dict(self._series)
        yield working  # an exception here leaves self._series untouched
        self._series.clear()
        self._series.update(working)

    def _upsert_chunk(
        self, transaction: Series, batch: Batch, chunk: pd.DataFrame
    ) -> tuple[int, int]:
        key = (batch.symbol, batch.timeframe)
        old = transaction.get(key, empty_candles())
        rows = chunk[list(COLUMNS)].astype("float64")
        common = rows.index.intersection(old.index)
        changed = int((old.loc[common] != rows.loc[common]).any(axis=1).sum())
        merged = pd.concat([old.drop(common), rows]).sort_index()
        transaction[key] = merged
        return len(rows) - len(common), changed

    def read(
        self,
        symbol: str,
        timeframe: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles with ``start <= timestamp < end``."""
        name = Timeframe.parse(timeframe).name
        frame = clip_range(self._series.get((symbol, name), empty_candles()), start, end)
        return with_meta(frame.copy(), symbol=symbol, timeframe=name)

    def list_series(self) -> list[SeriesInfo]:
        """Every stored series with its row count and span."""
        return [
            SeriesInfo(symbol, timeframe, len(frame), frame.index[0], frame.index[-1])
            for (symbol, timeframe), frame in sorted(self._series.items())
            if len(frame)
        ]

    def delete(self, symbol: str, timeframe: str) -> int:
        """Remove one series."""
        removed = self._series.pop((symbol, Timeframe.parse(timeframe).name), None)
        return 0 if removed is None else len(removed)

    def close(self) -> None:
        """Nothing to release."""


def open_memory(url: str, chunk_rows: int | None = None) -> MemoryStore:
    """The store factory: ``examplemem://name``."""
    return MemoryStore(url, chunk_rows)
