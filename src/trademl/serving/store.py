"""The server's reads of the market store: the latest bar of a series (remembered for a short
while) and the tail window a prediction needs. The server never writes to the store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

from trademl.data.stores import MarketStore, SeriesInfo, open_store
from trademl.data.timeframes import Timeframe
from trademl.errors import NotFoundError


class StoreReader:
    """Thread-safe reads of the store at ``url``.

    DuckDB allows one writing process per file, so a DuckDB store is opened for each read and
    closed at once: an import running in another process (``trademl data ingest``) is locked
    out for milliseconds, not for the server's lifetime. SQL stores keep one pooled engine.
    """

    def __init__(self, url: str, *, latest_ttl_s: float = 0.5) -> None:
        self.url = url
        self.latest_ttl_s = latest_ttl_s
        self._per_read = url.lower().startswith("duckdb")
        self._shared: MarketStore | None = None
        self._lock = threading.Lock()
        # (symbol, timeframe) -> (monotonic time of the look, series info or None)
        self._latest: dict[tuple[str, str], tuple[float, SeriesInfo | None]] = {}

    @contextmanager
    def _open(self) -> Iterator[MarketStore]:
        if self._per_read:
            store = open_store(self.url)
            try:
                yield store
            finally:
                store.close()
            return
        with self._lock:
            if self._shared is None:
                self._shared = open_store(self.url)
        yield self._shared

    def list_series(self) -> list[SeriesInfo]:
        """Every stored series."""
        with self._open() as store:
            return store.list_series()

    def info(self, symbol: str, timeframe: str, *, fresh: bool = False) -> SeriesInfo | None:
        """The series' row count and span, looked up at most every ``latest_ttl_s`` seconds."""
        key = (symbol, Timeframe.parse(timeframe).name)
        now = time.monotonic()
        cached = self._latest.get(key)
        if not fresh and cached is not None and now - cached[0] < self.latest_ttl_s:
            return cached[1]
        with self._open() as store:
            found = store.series_info(*key)
        self._latest[key] = (now, found)
        return found

    def tail(self, symbol: str, timeframe: str, bars: int, info: SeriesInfo) -> pd.DataFrame:
        """The last ``bars`` candles up to ``info.last`` (fewer when the series is shorter)."""
        tf = Timeframe.parse(timeframe)
        end = info.last + tf.delta
        span = bars + 8
        with self._open() as store:
            while True:
                start = info.last - tf.delta * span
                frame = store.read(symbol, tf.name, start, end)
                # Gaps in the series leave fewer rows than bars in the window: look further back.
                if len(frame) >= bars or start <= info.first:
                    break
                span *= 4
        if frame.empty:
            raise NotFoundError(f"no {symbol} {tf.name} candles in the store")
        frame = frame.iloc[-bars:]
        frame.attrs.update(symbol=symbol, timeframe=tf.name)
        return frame

    def close(self) -> None:
        """Close the shared store (SQL backends)."""
        with self._lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None
