"""Data sources: files (``files``) and network sources named ``binance``, ``ccxt:<exchange>``,
``polygon`` and ``yahoo`` (see :func:`get_source`)."""

from trademl.data.sources.base import SOURCES, Source, get_source

__all__ = ["SOURCES", "Source", "get_source"]
