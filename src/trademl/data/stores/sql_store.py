"""Candles in PostgreSQL or MySQL/MariaDB, through SQLAlchemy.

Bulk writes stage the rows in a temporary table (COPY on PostgreSQL, multi-row INSERT on MySQL)
and upsert from there, all in one transaction. Timestamps are ``TIMESTAMPTZ`` on PostgreSQL and
UTC ``DATETIME(6)`` on MySQL (which has no zone-aware type); the store re-attaches UTC on read.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine, make_url

from trademl.data.candles import COLUMNS, candle_index, empty_candles, make_candles, with_meta
from trademl.data.stores.base import STORES, Batch, MarketStore, SeriesInfo
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, StoreError
from trademl.redact import redact

_STAGING = "trademl_staging"


def normalise_url(url: str) -> str:
    """Pick the drivers trademl installs: psycopg 3 for PostgreSQL, PyMySQL for MySQL/MariaDB."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend in ("mysql", "mariadb"):
        return parsed.set(drivername="mysql+pymysql").render_as_string(hide_password=False)
    raise ConfigError(
        f"store URL {parsed!r}: unsupported database {backend!r} (use postgresql or mysql)"
    )


class SQLStore(MarketStore):
    """Candles in a SQL database given by a SQLAlchemy URL.

    Examples
    --------
    >>> store = SQLStore("postgresql://postgres@127.0.0.1:5432/test")  # doctest: +SKIP
    """

    def __init__(self, url: str, *, table: str = "candles", chunk_rows: int | None = None) -> None:
        self.url = normalise_url(url)
        if chunk_rows:
            self.chunk_rows = chunk_rows
        self._is_mysql = make_url(self.url).get_backend_name() == "mysql"
        connect_args: dict[str, Any] = (
            {"init_command": "SET time_zone = '+00:00'"}
            if self._is_mysql
            else {"options": "-c timezone=UTC"}
        )
        self._engine: Engine = sa.create_engine(
            self.url, connect_args=connect_args, pool_pre_ping=True
        )
        timestamp = sa.DateTime(timezone=True).with_variant(
            mysql.DATETIME(fsp=6), "mysql", "mariadb"
        )
        self._table = sa.Table(
            table,
            sa.MetaData(),
            sa.Column("symbol", sa.String(64), primary_key=True),
            sa.Column("timeframe", sa.String(16), primary_key=True),
            sa.Column("ts", timestamp, primary_key=True),
            *(sa.Column(c, sa.Double(), nullable=False) for c in COLUMNS),
        )
        try:
            self._table.metadata.create_all(self._engine)
        except sa.exc.SQLAlchemyError as error:
            raise StoreError(
                redact(
                    f"cannot open store {self.display_url}: {error.__class__.__name__}: "
                    f"{getattr(error, 'orig', None) or error}"
                )
            ) from error

    @property
    def display_url(self) -> str:
        """The URL with its password hidden."""
        return make_url(self.url).render_as_string(hide_password=True)

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as error:
            raise StoreError(
                redact(f"write to {self.display_url} failed, nothing was written: {error}")
            ) from error

    def _upsert_chunk(
        self, transaction: Connection, batch: Batch, chunk: pd.DataFrame
    ) -> tuple[int, int]:
        self._stage(transaction, chunk)
        new, changed = self._count_changes(transaction, batch)
        if new or changed:
            self._merge(transaction, batch)
        drop = "DROP TEMPORARY TABLE" if self._is_mysql else "DROP TABLE"
        transaction.exec_driver_sql(f"{drop} {_STAGING}")
        return new, changed

    def _stage(self, conn: Connection, chunk: pd.DataFrame) -> None:
        # Timestamps travel as integer epoch microseconds: exact, and free of session zones.
        epoch_us = candle_index(chunk).as_unit("us").asi8
        columns = ", ".join(f"{c} DOUBLE PRECISION NOT NULL" for c in COLUMNS)
        if self._is_mysql:
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {_STAGING} (ts_us BIGINT PRIMARY KEY, {columns})"
            )
            rows = np.column_stack(
                [epoch_us.astype(object), *(chunk[c].to_numpy().astype(object) for c in COLUMNS)]
            )
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.executemany(
                f"INSERT INTO {_STAGING} (ts_us, {', '.join(COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s)",
                rows.tolist(),
            )
            cursor.close()
            return
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {_STAGING} (ts_us BIGINT NOT NULL, {columns})"
        )
        table = pa.table({"ts_us": epoch_us, **{c: chunk[c].to_numpy() for c in COLUMNS}})
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False))
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {_STAGING} FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buffer.getbuffer())
        cursor.close()

    def _staged_ts(self) -> str:
        if self._is_mysql:
            return "TIMESTAMPADD(MICROSECOND, s.ts_us, '1970-01-01 00:00:00')"
        return "(TIMESTAMPTZ 'epoch' + s.ts_us * INTERVAL '1 microsecond')"

    def _count_changes(self, conn: Connection, batch: Batch) -> tuple[int, int]:
        table = self._table.name
        if self._is_mysql:
            differs = " OR ".join(f"NOT (s.{c} <=> c.{c})" for c in COLUMNS)
        else:
            differs = " OR ".join(f"s.{c} IS DISTINCT FROM c.{c}" for c in COLUMNS)
        row = conn.exec_driver_sql(
            f"SELECT COALESCE(SUM(CASE WHEN c.ts IS NULL THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN c.ts IS NOT NULL AND ({differs}) THEN 1 ELSE 0 END), 0) "
            f"FROM {_STAGING} s LEFT JOIN {table} c ON c.symbol = %(symbol)s "
            f"AND c.timeframe = %(timeframe)s AND c.ts = {self._staged_ts()}",
            {"symbol": batch.symbol, "timeframe": batch.timeframe},
        ).one()
        return int(row[0]), int(row[1])

    def _merge(self, conn: Connection, batch: Batch) -> None:
        table = self._table.name
        values = ", ".join(f"s.{c}" for c in COLUMNS)
        select = (
            f"SELECT %(symbol)s, %(timeframe)s, {self._staged_ts()}, {values} FROM {_STAGING} s"
        )
        target = f"{table} (symbol, timeframe, ts, {', '.join(COLUMNS)})"
        if self._is_mysql:
            update = ", ".join(f"{c} = VALUES({c})" for c in COLUMNS)
            sql = f"INSERT INTO {target} {select} ON DUPLICATE KEY UPDATE {update}"
        else:
            update = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS)
            differs = " OR ".join(f"{table}.{c} IS DISTINCT FROM excluded.{c}" for c in COLUMNS)
            sql = (
                f"INSERT INTO {target} {select} ON CONFLICT (symbol, timeframe, ts) "
                f"DO UPDATE SET {update} WHERE {differs}"
            )
        conn.exec_driver_sql(sql, {"symbol": batch.symbol, "timeframe": batch.timeframe})

    # -- reading -----------------------------------------------------------------------------

    def read(
        self,
        symbol: str,
        timeframe: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles with ``start <= timestamp < end``."""
        name = Timeframe.parse(timeframe).name
        t = self._table.c
        query = sa.select(t.ts, *(t[c] for c in COLUMNS)).where(
            t.symbol == symbol, t.timeframe == name
        )
        if start is not None:
            query = query.where(t.ts >= self._bound(start))
        if end is not None:
            query = query.where(t.ts < self._bound(end))
        with self._connect() as conn:
            rows = conn.execute(query.order_by(t.ts)).all()
        if not rows:
            return with_meta(empty_candles(), symbol=symbol, timeframe=name)
        columns = list(zip(*rows, strict=True))
        index = pd.DatetimeIndex(pd.to_datetime(list(columns[0]), utc=not self._is_mysql))
        arrays = [np.asarray(values, dtype=np.float64) for values in columns[1:]]
        return make_candles(index, *arrays, symbol=symbol, timeframe=name)

    def _bound(self, stamp: pd.Timestamp) -> Any:
        utc = stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")
        # MySQL DATETIME is naive: compare against naive UTC.
        return utc.tz_localize(None).to_pydatetime() if self._is_mysql else utc.to_pydatetime()

    def list_series(self) -> list[SeriesInfo]:
        """Every stored series with its row count and span."""
        t = self._table.c
        query = (
            sa.select(t.symbol, t.timeframe, sa.func.count(), sa.func.min(t.ts), sa.func.max(t.ts))
            .group_by(t.symbol, t.timeframe)
            .order_by(t.symbol, t.timeframe)
        )
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [
            SeriesInfo(s, tf, int(n), _utc(first), _utc(last)) for s, tf, n, first, last in rows
        ]

    def delete(self, symbol: str, timeframe: str) -> int:
        """Remove one series."""
        name = Timeframe.parse(timeframe).name
        t = self._table
        with self._engine.begin() as conn:
            result = conn.execute(sa.delete(t).where(t.c.symbol == symbol, t.c.timeframe == name))
        return int(result.rowcount)

    def _connect(self) -> Connection:
        try:
            return self._engine.connect()
        except sa.exc.SQLAlchemyError as error:
            raise StoreError(redact(f"cannot reach store {self.display_url}: {error}")) from error

    def close(self) -> None:
        """Dispose of the connection pool."""
        self._engine.dispose()


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@STORES.register("postgresql")
@STORES.register("postgres")
@STORES.register("mysql")
@STORES.register("mariadb")
def open_sql(url: str, chunk_rows: int | None = None) -> SQLStore:
    """The SQL store of a ``postgresql://...`` or ``mysql://...`` (``mariadb://...``) URL."""
    return SQLStore(url, chunk_rows=chunk_rows)
