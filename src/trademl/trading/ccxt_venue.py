"""Connecting the ``ccxt:<exchange>`` broker: which endpoint, which keys, and what is refused.

Orders go to the exchange's sandbox (testnet) by default. Live endpoints, where real money
moves, need ``exchange_allow_live``; an ``exchange_api_url`` override (a local server, a
testnet proxy) keeps ccxt's paths and counts as live when its host is one of the exchange's
live hosts. Keys come from settings only and are masked in every message.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any
from urllib.parse import urlsplit

from trademl.config import Settings
from trademl.data.sources.base import import_optional
from trademl.data.sources.ccxt_source import rehost
from trademl.errors import ConfigError
from trademl.redact import redact, register_secrets

# Exchanges spoken through Binance's spot API (client ids, recvWindow, orderList/oco, fromId).
BINANCE_LIKE = frozenset({"binance", "binanceus"})
_EXCHANGE_ID = re.compile(r"^[a-z0-9]{2,32}$")
_VENUE_MESSAGE = re.compile(r"\{.*\}", re.DOTALL)


def _hosts(urls: Any) -> set[str]:
    """Every host named in a ccxt ``urls`` value (a URL, or dicts and lists of them)."""
    if isinstance(urls, str):
        return {urlsplit(urls).hostname or ""} - {""}
    if isinstance(urls, dict):
        return set().union(*(_hosts(value) for value in urls.values()))
    if isinstance(urls, list):
        return set().union(*(_hosts(value) for value in urls))
    return set()


def _options(exchange_id: str, settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"defaultType": "spot"}
    if exchange_id in BINANCE_LIKE:
        options.update(
            {
                "recvWindow": round(settings.exchange_recv_window_s * 1000),
                # Sign with the exchange's clock: the recv window is measured on it.
                "adjustForTimeDifference": True,
                # Spot only: no futures exchangeInfo, no wallet endpoint a testnet lacks.
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
            }
        )
    return options


def connect(exchange_id: str, settings: Settings) -> Any:
    """A ccxt exchange object for ``exchange_id``, keyed and pointed at a permitted endpoint.

    Parameters
    ----------
    exchange_id:
        A ccxt exchange id (``binance``, ``kraken``...).
    settings:
        ``exchange_api_key``, ``exchange_api_secret`` (and ``exchange_api_password``),
        ``exchange_api_url``, ``exchange_sandbox``, ``exchange_allow_live``, ``http_timeout_s``.

    Returns
    -------
    Any
        The ccxt exchange, with its rate limiter on.

    Raises
    ------
    ConfigError
        On an unknown exchange, missing keys, an exchange without a sandbox while
        ``exchange_sandbox`` is set, or a live endpoint without ``exchange_allow_live``.
    """
    ccxt = import_optional("ccxt", "the ccxt broker")
    known: list[str] = list(ccxt.exchanges)
    if not _EXCHANGE_ID.match(exchange_id) or exchange_id not in known:
        close = difflib.get_close_matches(exchange_id.lower()[:32], known, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown ccxt exchange {exchange_id[:40]!r}{hint} (the broker is "
            "ccxt:<exchange>, with one of ccxt's exchange ids, e.g. ccxt:binance)"
        )
    if settings.exchange_api_key is None or settings.exchange_api_secret is None:
        raise ConfigError(
            f"ccxt:{exchange_id} needs exchange_api_key and exchange_api_secret "
            "(TRADEML_EXCHANGE_API_KEY, TRADEML_EXCHANGE_API_SECRET)"
        )
    password = settings.exchange_api_password
    secrets = [settings.exchange_api_key, settings.exchange_api_secret, password]
    # Settings register their secrets when validated; a copy made without validation does not.
    register_secrets(s.get_secret_value() for s in secrets if s is not None)
    exchange: Any = getattr(ccxt, exchange_id)(
        {
            "apiKey": settings.exchange_api_key.get_secret_value(),
            "secret": settings.exchange_api_secret.get_secret_value(),
            "password": password.get_secret_value() if password is not None else None,
            "enableRateLimit": True,
            "timeout": round(settings.http_timeout_s * 1000),
            "options": _options(exchange_id, settings),
        }
    )
    live_hosts = _hosts(exchange.urls.get("api"))
    override = settings.exchange_api_url
    if override:
        live = urlsplit(override).hostname in live_hosts
        exchange.urls["api"] = rehost(exchange.urls["api"], override)
        where = f"{redact(override)} (exchange_api_url)"
    elif settings.exchange_sandbox:
        if not exchange.urls.get("test"):
            raise ConfigError(
                f"ccxt:{exchange_id} has no sandbox in ccxt: set exchange_api_url to a test "
                "endpoint, or exchange_sandbox=false and exchange_allow_live=true to trade live"
            )
        exchange.set_sandbox_mode(True)
        live, where = False, "its sandbox"
    else:
        live, where = True, "its live endpoints"
    if live and not settings.exchange_allow_live:
        raise ConfigError(
            f"ccxt:{exchange_id} would send orders to {where}, a live exchange (real money); "
            "set exchange_allow_live=true to allow it"
        )
    return exchange


def venue_reason(error: Exception, *secrets: str | None) -> str:
    """The venue's own words from a ccxt error (``msg (code N)`` for a JSON body), redacted."""
    message = str(error)
    found = _VENUE_MESSAGE.search(message)
    if found:
        try:
            body = json.loads(found.group(0))
        except ValueError:
            body = None
        if isinstance(body, dict) and "msg" in body:
            code = f" (code {body['code']})" if "code" in body else ""
            return redact(f"{body['msg']}{code}", *secrets)
    return redact(message, *secrets)
