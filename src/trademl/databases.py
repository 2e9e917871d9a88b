"""Engines of the metadata databases (the job store, the prediction log): SQLite by default,
PostgreSQL or MySQL at scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def open_engine(url: str) -> Engine:
    """An engine for a metadata database (jobs, the prediction log): SQLite in WAL mode with a
    busy timeout, so the API reads while a worker writes; PostgreSQL or MySQL with the drivers
    trademl installs."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = not parsed.database or parsed.database == ":memory:"
        if not memory:
            Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": 30.0, "check_same_thread": False},
            # An in-memory database exists per connection: every thread must share the one.
            **({"poolclass": sa.pool.StaticPool} if memory else {}),
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers (the API) read while a worker writes; the busy timeout makes
            # concurrent writers wait for each other instead of failing.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # The market store's driver choice, imported only for a server database.
    from trademl.data.stores.sql_store import normalise_url

    return sa.create_engine(normalise_url(url), pool_pre_ping=True)
