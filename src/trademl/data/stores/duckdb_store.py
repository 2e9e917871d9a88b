"""The embedded default store: one DuckDB file under TRADEML_HOME."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from trademl.data.candles import COLUMNS, empty_candles, make_candles, with_meta
from trademl.data.stores.base import STORES, Batch, MarketStore, SeriesInfo
from trademl.data.timeframes import Timeframe
from trademl.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    open DOUBLE NOT NULL,
    high DOUBLE NOT NULL,
    low DOUBLE NOT NULL,
    close DOUBLE NOT NULL,
    volume DOUBLE NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts)
)
"""
_DIFFERS = " OR ".join(f"s.{c} IS DISTINCT FROM c.{c}" for c in COLUMNS)
_SET = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS)


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> None:
    # DuckDB 2 streams results: drain each statement before the next one on this connection.
    con.execute(sql, params).fetchall()


def duckdb_path(url: str) -> Path:
    """The file of a ``duckdb:///abs/path`` (or ``duckdb://rel/path``) store URL."""
    path = url.split("://", 1)[1] if "://" in url else url.split(":", 1)[1]
    return Path(path[1:] if path.startswith("//") else path)


class StoreLockedError(StoreError):
    """Another process holds the DuckDB file's write lock (an import is running)."""


def _connect(path: Path, *, read_only: bool, lock_wait_s: float) -> duckdb.DuckDBPyConnection:
    # DuckDB locks the file per process: one writer, or any number of read-only readers. The
    # server's read-only opens last milliseconds, so a writer that meets one waits a little.
    deadline = time.monotonic() + lock_wait_s
    pause_s = 0.005
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except (duckdb.IOException, duckdb.ConnectionException) as error:
            # Another process's lock, or, within this process, an open connection in the other
            # mode (DuckDB shares one instance per file and process): both end within a read.
            text = str(error).lower()
            if "lock" not in text and "different configuration" not in text:
                raise StoreError(f"cannot open DuckDB store {path}: {error}") from error
            if time.monotonic() >= deadline:
                mode = "read" if read_only else "write"
                raise StoreLockedError(
                    f"cannot {mode} DuckDB store {path}: another connection holds its lock "
                    f"(waited {lock_wait_s:g} s); retry when the import or ingest is done"
                ) from error
        except duckdb.Error as error:
            raise StoreError(f"cannot open DuckDB store {path}: {error}") from error
        time.sleep(pause_s)
        pause_s = min(pause_s * 2, 0.1)


class DuckDBStore(MarketStore):
    """Candles in a DuckDB file (``duckdb:///path/to/market.duckdb``).

    Parameters
    ----------
    path
        The DuckDB file (created, with its folder, unless ``read_only``).
    chunk_rows
        Rows per write transaction (the store's default when None).
    read_only
        Open without the write lock, as the server does: any number of read-only processes
        share the file, and a missing file or table reads as an empty store.
    lock_wait_s
        How long to wait for another process's lock on the file before a
        :class:`StoreLockedError`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        chunk_rows: int | None = None,
        read_only: bool = False,
        lock_wait_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self.url = f"duckdb:///{self.path.as_posix()}"
        self.read_only = read_only
        if chunk_rows:
            self.chunk_rows = chunk_rows
        if read_only and not self.path.exists():
            self._con = duckdb.connect(":memory:")
        else:
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = _connect(self.path, read_only=read_only, lock_wait_s=lock_wait_s)
        _run(self._con, "SET TimeZone = 'UTC'")
        if not read_only:
            _run(self._con, _SCHEMA)
        elif not self._con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'candles'"
        ).fetchall()[0][0]:
            # A read-only view of a file without the table: an empty temporary one reads alike.
            _run(self._con, _SCHEMA.replace("CREATE TABLE", "CREATE TEMP TABLE"))

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.read_only:
            raise StoreError(f"DuckDB store {self.path} is open read-only: it cannot be written")
        _run(self._con, "BEGIN TRANSACTION")
        try:
            yield self._con
        except BaseException:
            _run(self._con, "ROLLBACK")
            raise
        _run(self._con, "COMMIT")

    def _upsert_chunk(
        self, transaction: duckdb.DuckDBPyConnection, batch: Batch, chunk: pd.DataFrame
    ) -> tuple[int, int]:
        con = transaction
        staging = chunk.reset_index().rename(columns={"timestamp": "ts"})
        staging.insert(0, "timeframe", batch.timeframe)
        staging.insert(0, "symbol", batch.symbol)
        con.register("staging", staging)
        try:
            row = con.execute(
                "SELECT count(*) FILTER (WHERE c.ts IS NULL), "
                f"count(*) FILTER (WHERE c.ts IS NOT NULL AND ({_DIFFERS})) "
                "FROM staging s LEFT JOIN candles c "
                "ON c.symbol = s.symbol AND c.timeframe = s.timeframe AND c.ts = s.ts"
            ).fetchall()[0]
            new, changed = int(row[0]), int(row[1])
            if new == len(staging):
                _run(con, "INSERT INTO candles SELECT * FROM staging")
            elif new or changed:
                _run(
                    con,
                    "INSERT INTO candles SELECT * FROM staging "
                    f"ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET {_SET}",
                )
        finally:
            con.unregister("staging")
        return new, changed

    def read(
        self,
        symbol: str,
        timeframe: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles with ``start <= timestamp < end``."""
        name = Timeframe.parse(timeframe).name
        query = "SELECT ts, open, high, low, close, volume FROM candles WHERE symbol = ? AND timeframe = ?"
        params: list[object] = [symbol, name]
        if start is not None:
            query += " AND ts >= ?"
            params.append(start.to_pydatetime())
        if end is not None:
            query += " AND ts < ?"
            params.append(end.to_pydatetime())
        table = self._con.execute(query + " ORDER BY ts", params).fetchnumpy()
        if len(table["ts"]) == 0:
            return with_meta(empty_candles(), symbol=symbol, timeframe=name)
        index = pd.DatetimeIndex(table["ts"])
        arrays = [np.asarray(table[c], dtype=np.float64) for c in COLUMNS]
        return make_candles(index, *arrays, symbol=symbol, timeframe=name)

    def list_series(self) -> list[SeriesInfo]:
        """Every stored series with its row count and span."""
        rows = self._con.execute(
            "SELECT symbol, timeframe, count(*), min(ts), max(ts) FROM candles "
            "GROUP BY symbol, timeframe ORDER BY symbol, timeframe"
        ).fetchall()
        return [
            SeriesInfo(
                s,
                tf,
                int(n),
                pd.Timestamp(first).tz_convert("UTC"),
                pd.Timestamp(last).tz_convert("UTC"),
            )
            for s, tf, n, first, last in rows
        ]

    def series_info(self, symbol: str, timeframe: str) -> SeriesInfo | None:
        """One series' row count and span: a filtered aggregate over the primary key's prefix,
        not every series grouped."""
        name = Timeframe.parse(timeframe).name
        n, first, last = self._con.execute(
            "SELECT count(*), min(ts), max(ts) FROM candles WHERE symbol = ? AND timeframe = ?",
            [symbol, name],
        ).fetchall()[0]
        if not n:
            return None
        return SeriesInfo(
            symbol,
            name,
            int(n),
            pd.Timestamp(first).tz_convert("UTC"),
            pd.Timestamp(last).tz_convert("UTC"),
        )

    def delete(self, symbol: str, timeframe: str) -> int:
        """Remove one series."""
        name = Timeframe.parse(timeframe).name
        if self.read_only:
            raise StoreError(f"DuckDB store {self.path} is open read-only: it cannot be written")
        row = self._con.execute(
            "SELECT count(*) FROM candles WHERE symbol = ? AND timeframe = ?", [symbol, name]
        ).fetchall()[0]
        _run(self._con, "DELETE FROM candles WHERE symbol = ? AND timeframe = ?", [symbol, name])
        return int(row[0])

    def close(self) -> None:
        """Close the DuckDB connection."""
        self._con.close()


@STORES.register("duckdb")
def open_duckdb(url: str, chunk_rows: int | None = None) -> DuckDBStore:
    """The DuckDB store of a ``duckdb:///abs/path`` or ``duckdb://rel/path`` URL."""
    return DuckDBStore(duckdb_path(url), chunk_rows=chunk_rows)
