"""The Source protocol and the table of registered sources.

A source turns (symbol, timeframe, start, end) into validated Candles. Sources are named on the
command line and in configs: ``binance``, ``ccxt:<exchange>``, ``polygon``, ``yahoo``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import pandas as pd

from trademl.config import Settings
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError
from trademl.plugins import GROUPS, PluginTable, callable_entry


class Source(Protocol):
    """Something that fetches candles."""

    name: str

    def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles of ``symbol`` at ``timeframe`` with ``start <= timestamp < end``, validated."""
        ...


SourceFactory = Callable[[Settings, str | None], Source]
"""Builds a source from settings and the part of the name after ``:`` (``ccxt:kraken``)."""


# Network sources pull heavy client libraries (ccxt, yfinance): a module is imported only when
# its source is named.
SOURCES: PluginTable[SourceFactory] = PluginTable(
    "source",
    group=GROUPS["sources"],
    builtins={
        "binance": "trademl.data.sources.binance",
        "ccxt": "trademl.data.sources.ccxt_source",
        "polygon": "trademl.data.sources.polygon",
        "yahoo": "trademl.data.sources.yahoo",
    },
    check=callable_entry("a source factory (settings, argument) -> Source"),
    hint="ccxt takes an exchange, e.g. ccxt:kraken; files go through 'trademl data import'",
)
"""Source factories by name: the built-ins and the ``trademl.sources`` entry points."""


def get_source(spec: str, settings: Settings) -> Source:
    """Build the source named ``spec`` (``binance``, ``ccxt:kraken``, ``polygon``, ``yahoo``);
    what follows the first ``:`` is handed to the factory."""
    name, _, argument = spec.strip().partition(":")
    factory = SOURCES.get(name)
    return factory(settings, argument or None)


def import_optional(module: str, purpose: str) -> Any:
    """Import an optional client library on first use, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"{purpose} needs the {module} package: pip install 'trademl[exchanges]'"
        ) from error


def clip_range(
    frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> pd.DataFrame:
    """Rows with ``start <= timestamp < end`` (either bound optional)."""
    mask = pd.Series(True, index=frame.index)
    if start is not None:
        mask &= frame.index >= start
    if end is not None:
        mask &= frame.index < end
    return frame.loc[mask.to_numpy()]


def parse_time(value: str | pd.Timestamp | None, *, argument: str = "time") -> pd.Timestamp | None:
    """Parse a user-given date or time as UTC (naive values are taken as UTC)."""
    if value is None or value == "":
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"{argument} {value!r} is not a date or time (expected e.g. 2024-01-31)"
        ) from error
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
