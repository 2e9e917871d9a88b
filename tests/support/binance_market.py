"""Binance spot's vocabulary for the local server: its error shape, number formats and the
filters of one symbol (``PRICE_FILTER``, ``LOT_SIZE``, ``NOTIONAL``) as ``exchangeInfo`` lists
them and as orders are checked against them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

ZERO = Decimal(0)
INSUFFICIENT = "Account has insufficient balance for requested action."
CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_NUMBER = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT"]


class BinanceError(Exception):
    """A refusal as Binance words it: ``{"code": ..., "msg": ...}`` with an HTTP status."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def now_ms() -> int:
    return int(time.time() * 1000)


def text(value: Decimal) -> str:
    """A Decimal as Binance writes amounts: eight decimals."""
    return f"{value:.8f}"


def number(params: dict[str, str], name: str, required: bool = True) -> Decimal | None:
    """A decimal parameter, or the -1100/-1102 error Binance answers."""
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise BinanceError(
                400,
                -1102,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return None
    if not _NUMBER.match(raw):
        raise BinanceError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is "
            "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    try:
        return Decimal(raw)
    except InvalidOperation as error:  # pragma: no cover - the pattern already checked
        raise BinanceError(400, -1100, f"Illegal characters in '{name}'.") from error


@dataclass
class Market:
    """One spot symbol and its filters."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal = Decimal("0.01")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    step_size: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.0001")
    max_qty: Decimal = Decimal("9000")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")

    def info(self) -> dict[str, Any]:
        """The symbol's entry in ``GET /api/v3/exchangeInfo``."""
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ORDER_TYPES,
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": text(self.min_price),
                    "maxPrice": text(self.max_price),
                    "tickSize": text(self.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": text(self.min_qty),
                    "maxQty": text(self.max_qty),
                    "stepSize": text(self.step_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": text(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": text(self.max_notional),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
        }

    def check(self, quantity: Decimal, prices: list[Decimal], notional_price: Decimal) -> None:
        """Binance's -1013 filter failures for one order."""
        for price in prices:
            off_tick = (price - self.min_price) % self.tick_size != 0
            if price < self.min_price or price > self.max_price or off_tick:
                raise BinanceError(400, -1013, "Filter failure: PRICE_FILTER")
        off_step = (quantity - self.min_qty) % self.step_size != 0
        if quantity < self.min_qty or quantity > self.max_qty or off_step:
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        if quantity * notional_price < self.min_notional:
            raise BinanceError(400, -1013, "Filter failure: NOTIONAL")
