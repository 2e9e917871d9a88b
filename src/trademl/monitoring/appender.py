"""Rows appended to one table through one database connection kept open: the write path of the
prediction log, where a server commits every few hundred microseconds.

Each append is one transaction of multi-row ``INSERT`` statements. With SQLite the connection
runs in autocommit, so an append of up to :data:`ROWS_PER_STATEMENT` rows is a single call into
the database: the thread that writes gives the interpreter lock up once per commit, not once
per row (a server's event loop waits on every hand-over). A file database is also checked on
every append to still be the file the connection opened: one removed or replaced under a
running server would otherwise take the rows into an unlinked file, silently.

>>> import sqlalchemy as sa
>>> engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
>>> with engine.begin() as connection:
...     _ = connection.exec_driver_sql("CREATE TABLE t (a INTEGER, b TEXT)")
>>> appender = Appender(engine, "t", ["a", "b"])
>>> appender.write([1, "x", 2, "y"])
2
>>> with engine.connect() as connection:
...     connection.exec_driver_sql("SELECT count(*) FROM t").scalar()
2
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from trademl.errors import ConfigError, StoreError
from trademl.redact import redact, redact_url

# Rows per INSERT statement: with 11 parameters a row, under every database's bound (SQLite's
# 32,766 parameters, PostgreSQL's 65,535).
ROWS_PER_STATEMENT = 1024


class Appender:
    """Appends rows to ``table`` in one transaction per :meth:`write`, thread-safe.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        The database; one of its connections is kept for the appends.
    table : str
        The table appended to.
    columns : sequence of str
        Its columns, in the order of each row's values.
    skip_duplicates : bool
        A row whose primary key is stored already is skipped rather than refused (rows stored
        once under a content key; other constraint violations are still refused).
    """

    def __init__(
        self,
        engine: Engine,
        table: str,
        columns: Sequence[str],
        *,
        skip_duplicates: bool = False,
    ) -> None:
        self.engine = engine
        self.width = len(columns)
        self._mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self._tail = skip_clause(engine.dialect.name, columns[0]) if skip_duplicates else ""
        self._statements: dict[int, str] = {}
        self._sqlite = engine.dialect.name == "sqlite"
        database = engine.url.database
        memory = self._sqlite and database in (None, "", ":memory:")
        self._file = Path(str(database)) if self._sqlite and not memory else None
        self._memory = memory
        self._connection: Any = None  # SQLAlchemy's pooled connection proxy, checked out
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def write(self, values: list[Any]) -> int:
        """Append the rows of ``values`` (row after row, ``width`` values each) in one
        transaction; returns the number of rows.

        Raises
        ------
        ConfigError
            The database refused a value (an integrity or data error): nothing is written.
        StoreError
            The database cannot be written (unreachable, its file removed, full...): nothing
            is written, and the next write opens a new connection.
        """
        count, rest = divmod(len(values), self.width)
        if rest:
            raise ConfigError(f"appender: {len(values)} values are not rows of {self.width}")
        if count:
            with self._lock:
                self._write(values, count)
        return count

    def _write(self, values: list[Any], count: int) -> None:
        connection = self._checked_out()
        dbapi = connection.driver_connection
        cursor = dbapi.cursor()
        try:
            starts = range(0, count, ROWS_PER_STATEMENT)
            if self._sqlite and len(starts) > 1:
                cursor.execute("BEGIN")
            for start in starts:
                rows = min(ROWS_PER_STATEMENT, count - start)
                chunk = values[start * self.width : (start + rows) * self.width]
                cursor.execute(self._statement(rows), chunk)
            if not self._sqlite or len(starts) > 1:
                dbapi.commit()  # SQLite's single statement committed itself
        except Exception as error:
            self._drop(rollback=True)
            module = self.engine.dialect.dbapi
            refused = (module.IntegrityError, module.DataError) if module else ()
            if isinstance(error, refused):
                raise ConfigError(f"the database refused a row: {reason(error)}") from None
            raise StoreError(
                f"cannot write to {redact_url(str(self.engine.url))}: {reason(error)}"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                cursor.close()

    def _statement(self, rows: int) -> str:
        statement = self._statements.get(rows)
        if statement is None:
            row = "(" + ", ".join([self._mark] * self.width) + ")"
            statement = self._head + ", ".join([row] * rows) + self._tail
            self._statements[rows] = statement
        return statement

    def _checked_out(self) -> Any:
        """The appends' connection, opened when there is none; a file database's file checked
        to be the one it opened."""
        if self._connection is not None and self._file_identity() != self._identity:
            self._drop(rollback=False)
            raise StoreError(
                f"the database file {self._file} was removed or replaced while in use "
                "(restore it, or restart on a new one)"
            )
        if self._connection is None:
            try:
                connection: Any = self.engine.raw_connection()
            except DBAPIError as error:
                raise StoreError(
                    f"cannot write to {redact_url(str(self.engine.url))}: {reason(error)}"
                ) from None
            if self._sqlite:
                connection.driver_connection.isolation_level = None  # autocommit
            self._identity = self._file_identity()
            self._connection = connection
        return self._connection

    def _file_identity(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        try:
            seen = os.stat(self._file)
        except OSError:
            return None
        return (seen.st_dev, seen.st_ino)

    def _drop(self, *, rollback: bool) -> None:
        connection = self._connection
        if connection is None:
            return
        dbapi = connection.driver_connection
        if rollback:
            with contextlib.suppress(Exception):
                if not self._sqlite or dbapi.in_transaction:
                    dbapi.rollback()
        if self._memory:
            return  # an in-memory database lives in its one connection: keep it
        self._connection = None
        with contextlib.suppress(Exception):
            connection.invalidate()  # closed, never handed back to the pool

    def close(self) -> None:
        """Close the kept connection."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.invalidate()


def reason(error: BaseException) -> str:
    """A database error in the driver's own words (not the SQL and its parameters), redacted,
    on one line."""
    orig = getattr(error, "orig", None) or error
    return " ".join(redact(str(orig) or type(orig).__name__).split())


def skip_clause(dialect: str, column: str) -> str:
    """The clause that makes an ``INSERT ... VALUES`` skip rows whose key is stored already,
    and only those (SQLite's ``OR IGNORE`` and MySQL's ``IGNORE`` would also swallow a NULL in
    a NOT NULL column)."""
    if dialect in ("sqlite", "postgresql"):
        return " ON CONFLICT DO NOTHING"
    if dialect in ("mysql", "mariadb"):
        return f" ON DUPLICATE KEY UPDATE {column} = {column}"
    raise StoreError(f"the prediction log cannot skip duplicate rows on {dialect}")
