"""Brokers by spec: ``paper``, ``ccxt:<exchange>`` and ``dex``."""

from __future__ import annotations

import re

from trademl.config import Settings
from trademl.errors import ConfigError
from trademl.trading.broker import Broker

_EXCHANGE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


def check_spec(spec: str) -> tuple[str, str]:
    """(kind, exchange) of a broker spec; ``exchange`` is empty but for ``ccxt:<exchange>``.

    >>> check_spec("ccxt:binance")
    ('ccxt', 'binance')

    Raises
    ------
    ConfigError
        Not ``paper``, ``dex`` or ``ccxt:<exchange>`` with a ccxt exchange id.
    """
    text = spec.strip() if isinstance(spec, str) else ""
    if text in ("paper", "dex"):
        return text, ""
    kind, _, exchange = text.partition(":")
    if kind == "ccxt" and _EXCHANGE.match(exchange):
        return kind, exchange
    raise ConfigError(
        f"broker {spec[:80]!r}: expected paper, dex or ccxt:<exchange> (a ccxt exchange id "
        "such as ccxt:binance)"
    )


def open_broker(spec: str, settings: Settings) -> Broker:
    """The broker ``spec`` names, configured by ``settings``.

    Parameters
    ----------
    spec : str
        ``paper`` (:class:`~trademl.trading.paper.PaperBroker`), ``ccxt:<exchange>`` (an
        exchange through ccxt) or ``dex`` (a Uniswap-v2-style router on an EVM chain).
    settings : Settings
        Keys, endpoints and the paper account.

    Raises
    ------
    ConfigError
        An unknown spec, or settings the broker refuses.
    """
    kind, exchange = check_spec(spec)
    # Imported on demand: ccxt and web3 take seconds to import and are not needed by the rest.
    if kind == "paper":
        from trademl.trading.paper import PaperBroker

        return PaperBroker.from_settings(settings)
    if kind == "ccxt":
        from trademl.trading.ccxt_broker import CcxtBroker

        broker: Broker = CcxtBroker.from_settings(exchange, settings)
        return broker
    from trademl.trading.dex import DexBroker

    dex: Broker = DexBroker.from_settings(settings)
    return dex
