"""The server's reads of the market store: the latest bar of a series and the tail window a
prediction needs. The server never writes to the store."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

from trademl.data.stores import MarketStore, SeriesInfo, open_store
from trademl.data.stores.duckdb_store import DuckDBStore, StoreLockedError, duckdb_path
from trademl.data.timeframes import Timeframe
from trademl.errors import NotFoundError

# A file modified this recently may be modified again within the same mtime tick (the kernel's
# clock is coarse) without its size changing: such a signature proves nothing, so it is not kept.
_RACY_NS = 100_000_000
# With no earlier look to fall back on, how long a read waits for an import's write lock.
_LOCK_WAIT_S = 2.0

Signature = tuple[int, ...]


class StoreReader:
    """Thread-safe reads of the store at ``url``.

    A DuckDB store is opened read-only for each read and closed at once: any number of server
    processes share the file, and an import (``trademl data import``) waits milliseconds for a
    read to finish. While an import holds the file, the series' last known state is served.
    Whether a series changed is told by the file's and its WAL's mtime and size, so the next
    request after a write sees it; SQL stores keep one pooled engine and look again every
    ``latest_ttl_s`` seconds.
    """

    def __init__(self, url: str, *, latest_ttl_s: float = 0.5) -> None:
        self.url = url
        self.latest_ttl_s = latest_ttl_s
        self._duckdb = duckdb_path(url) if url.lower().startswith("duckdb") else None
        self._files = (str(self._duckdb), f"{self._duckdb}.wal") if self._duckdb else ()
        self._shared: MarketStore | None = None
        self._lock = threading.Lock()
        self._looking = threading.Lock()
        # (symbol, timeframe) -> (monotonic time of the look, files' signature, info or None)
        self._latest: dict[tuple[str, str], tuple[float, Signature | None, SeriesInfo | None]] = {}

    @contextmanager
    def _open(self, *, lock_wait_s: float = _LOCK_WAIT_S) -> Iterator[MarketStore]:
        if self._duckdb is not None:
            store = DuckDBStore(self._duckdb, read_only=True, lock_wait_s=lock_wait_s)
            try:
                yield store
            finally:
                store.close()
            return
        with self._lock:
            if self._shared is None:
                self._shared = open_store(self.url)
        yield self._shared

    def _signature(self) -> Signature | None:
        """mtime and size of the DuckDB file and its WAL (any committed write changes one), or
        None while a file is too recently modified to tell a next write apart."""
        now = time.time_ns()
        signature: list[int] = []
        for name in self._files:
            try:
                stat = os.stat(name)
            except FileNotFoundError:
                signature += (0, 0)
                continue
            if now - stat.st_mtime_ns < _RACY_NS:
                return None
            signature += (stat.st_mtime_ns, stat.st_size)
        return tuple(signature)

    def list_series(self) -> list[SeriesInfo]:
        """Every stored series."""
        with self._open() as store:
            return store.list_series()

    def info_nowait(self, symbol: str, timeframe: str) -> tuple[bool, SeriesInfo | None]:
        """``(True, info)`` when the remembered info of a series is current, known without
        opening the store (a DuckDB file unchanged since the look, or a look younger than
        ``latest_ttl_s`` on SQL stores); ``(False, None)`` otherwise."""
        cached = self._latest.get((symbol, timeframe))
        if cached is None:
            return False, None
        seen, signature, found = cached
        if self._files:
            current = signature is not None and signature == self._signature()
        else:
            current = time.monotonic() - seen < self.latest_ttl_s
        return (True, found) if current else (False, None)

    def info(self, symbol: str, timeframe: str, *, fresh: bool = False) -> SeriesInfo | None:
        """The series' row count and span: remembered while the store is unchanged (DuckDB) or
        for ``latest_ttl_s`` seconds (SQL stores); ``fresh`` looks again regardless."""
        key = (symbol, Timeframe.parse(timeframe).name)
        if not fresh:
            current, found = self.info_nowait(*key)
            if current:
                return found
        asked = time.monotonic()
        with self._looking:  # one look at a time: requests that queued behind it reuse it
            cached = self._latest.get(key)
            if not fresh and cached is not None and cached[0] >= asked:
                return cached[2]
            signature = self._signature()  # before the read: a write during it shows next time
            now = time.monotonic()
            try:
                # With an earlier look to fall back on, do not queue behind an import.
                with self._open(lock_wait_s=0.0 if cached else _LOCK_WAIT_S) as store:
                    found = store.series_info(*key)
            except StoreLockedError:
                if cached is None:
                    raise
                return cached[2]  # the last state read; looked at again on the next request
            self._latest[key] = (now, signature, found)
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
