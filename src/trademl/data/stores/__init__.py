"""Market stores behind one interface: DuckDB (embedded default), PostgreSQL, MySQL/MariaDB,
and any store a package registers under the ``trademl.stores`` entry-point group."""

from __future__ import annotations

from trademl.data.stores.base import STORES, Batch, MarketStore, SeriesInfo, WriteReport
from trademl.errors import ConfigError
from trademl.redact import redact_url


def open_store(url: str, *, chunk_rows: int | None = None) -> MarketStore:
    """Open the store at ``url``: ``duckdb:///path``, ``postgresql://...`` or ``mysql://...``.

    The URL's scheme, before any ``+driver``, names the store in :data:`STORES`.

    Examples
    --------
    >>> store = open_store("duckdb:////tmp/trademl-doc.duckdb")
    >>> store.list_series()
    []
    >>> store.close()
    """
    scheme, colon, _ = url.partition(":")
    if not colon or not scheme:
        raise ConfigError(
            f"store URL {redact_url(url)!r} has no scheme; use duckdb:///path, "
            "postgresql://... or mysql://..."
        )
    factory = STORES.get(scheme.split("+", 1)[0].lower())
    return factory(url, chunk_rows)


__all__ = ["STORES", "Batch", "MarketStore", "SeriesInfo", "WriteReport", "open_store"]
