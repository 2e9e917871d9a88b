"""Market stores behind one interface: DuckDB (embedded default), PostgreSQL, MySQL/MariaDB."""

from __future__ import annotations

from trademl.data.stores.base import Batch, MarketStore, SeriesInfo, WriteReport
from trademl.errors import ConfigError
from trademl.redact import redact_url


def open_store(url: str, *, chunk_rows: int | None = None) -> MarketStore:
    """Open the store at ``url``: ``duckdb:///path``, ``postgresql://...`` or ``mysql://...``.

    Examples
    --------
    >>> store = open_store("duckdb:////tmp/trademl-doc.duckdb")
    >>> store.list_series()
    []
    >>> store.close()
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "duckdb":
        from trademl.data.stores.duckdb_store import DuckDBStore

        path = url.split("://", 1)[1] if "://" in url else url.split(":", 1)[1]
        # duckdb:///abs/path keeps its leading slash; duckdb://rel/path is relative.
        return DuckDBStore(path[1:] if path.startswith("//") else path, chunk_rows=chunk_rows)
    if scheme.split("+")[0] in ("postgresql", "postgres", "mysql", "mariadb"):
        from trademl.data.stores.sql_store import SQLStore

        return SQLStore(url, chunk_rows=chunk_rows)
    raise ConfigError(
        f"store URL {redact_url(url)!r} is not supported; use duckdb:///path, postgresql://... or mysql://..."
    )


__all__ = ["Batch", "MarketStore", "SeriesInfo", "WriteReport", "open_store"]
