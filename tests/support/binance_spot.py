"""The matching engine behind the local Binance spot server: balances, filters, orders, fills.

Simple but real: market orders fill at the symbol's current price, limit orders rest until the
price crosses them, stops trigger when it trades through them, OCO legs cancel each other, and
``fill_limit`` caps the base quantity one match can fill (partial fills). Amounts are Decimals,
refusals are :class:`BinanceError` carrying the HTTP status, code and message Binance sends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.support.binance_market import (
    CLIENT_ID,
    INSUFFICIENT,
    ORDER_TYPES,
    ZERO,
    BinanceError,
    Market,
    now_ms,
    number,
    text,
)

_TRIGGERED = {"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT"}


@dataclass
class SpotOrder:
    """An order on the book or in history."""

    order_id: int
    client_id: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal = ZERO
    stop_price: Decimal = ZERO
    time_in_force: str | None = None
    status: str = "NEW"
    executed: Decimal = ZERO
    quote: Decimal = ZERO
    locked: Decimal = ZERO
    working: bool = True
    list_id: int = -1
    created: int = field(default_factory=now_ms)
    updated: int = field(default_factory=now_ms)

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def json(self) -> dict[str, Any]:
        """The order as ``GET /api/v3/order`` answers."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": self.list_id,
            "clientOrderId": self.client_id,
            "price": text(self.price),
            "origQty": text(self.quantity),
            "executedQty": text(self.executed),
            "cummulativeQuoteQty": text(self.quote),
            "status": self.status,
            "timeInForce": self.time_in_force or "GTC",
            "type": self.type,
            "side": self.side,
            "stopPrice": text(self.stop_price),
            "icebergQty": text(ZERO),
            "time": self.created,
            "updateTime": self.updated,
            "isWorking": self.working,
            "workingTime": self.created if self.working else -1,
            "origQuoteOrderQty": text(ZERO),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


class SpotExchange:
    """The state of one Binance spot account and its markets (thread-safe).

    Parameters
    ----------
    markets:
        The symbols traded.
    balances:
        Free amounts per asset at the start.
    prices:
        The current price of each symbol; :meth:`set_price` moves it and matches the book.
    commission:
        The taker and maker fee rate, charged in the asset received (as Binance does without
        BNB).
    """

    def __init__(
        self,
        markets: list[Market],
        balances: dict[str, Decimal],
        prices: dict[str, Decimal],
        commission: Decimal = Decimal("0.001"),
    ) -> None:
        self.markets = {market.symbol: market for market in markets}
        self.free: dict[str, Decimal] = dict(balances)
        self.held: dict[str, Decimal] = {}
        self.prices = dict(prices)
        self.commission = commission
        self.fill_limit: Decimal | None = None
        self.orders: dict[int, SpotOrder] = {}
        self.trades: list[dict[str, Any]] = []
        self.lists: dict[int, dict[str, Any]] = {}
        self.lock = threading.RLock()
        self._ids = iter(range(10_001, 10**9))

    # -- money ----------------------------------------------------------------------------------

    def _reserve(self, asset: str, amount: Decimal) -> None:
        if self.free.get(asset, ZERO) < amount:
            raise BinanceError(400, -2010, INSUFFICIENT)
        self.free[asset] = self.free.get(asset, ZERO) - amount
        self.held[asset] = self.held.get(asset, ZERO) + amount

    def _release(self, asset: str, amount: Decimal) -> None:
        self.held[asset] -= amount
        self.free[asset] = self.free.get(asset, ZERO) + amount

    def _market(self, symbol: str | None) -> Market:
        market = self.markets.get(symbol or "")
        if market is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return market

    # -- orders ---------------------------------------------------------------------------------

    def new_order(self, params: dict[str, str], list_id: int = -1) -> SpotOrder:
        """Validate, place and match an order (``POST /api/v3/order``)."""
        with self.lock:
            market = self._market(params.get("symbol"))
            side, kind = params.get("side", ""), params.get("type", "")
            if side not in ("BUY", "SELL"):
                raise BinanceError(400, -1102, "Mandatory parameter 'side' was not sent.")
            if kind not in ORDER_TYPES:
                raise BinanceError(400, -1116, "Invalid orderType.")
            client_id = params.get("newClientOrderId") or f"auto{next(self._ids)}"
            if not CLIENT_ID.match(client_id):
                raise BinanceError(400, -1100, "Illegal characters found in 'newClientOrderId'.")
            if any(o.client_id == client_id and o.is_open for o in self.orders.values()):
                raise BinanceError(400, -2010, "Duplicate order sent.")
            quantity = number(params, "quantity")
            assert quantity is not None
            price = number(params, "price", kind in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT"))
            stop = number(params, "stopPrice", kind in _TRIGGERED)
            if kind in ("LIMIT", "STOP_LOSS_LIMIT") and not params.get("timeInForce"):
                raise BinanceError(400, -1102, "Mandatory parameter 'timeInForce' was not sent.")
            current = self.prices[market.symbol]
            prices = [p for p in (price, stop) if p is not None]
            market.check(quantity, prices, price or stop or current)
            order = SpotOrder(
                next(self._ids),
                client_id,
                market.symbol,
                side,
                kind,
                quantity,
                price or ZERO,
                stop or ZERO,
                params.get("timeInForce"),
                working=kind not in _TRIGGERED,
                list_id=list_id,
            )
            self._refuse_immediate(order, current)
            if kind == "MARKET":
                needed = quantity * current if side == "BUY" else quantity
                if self.free.get(market.quote if side == "BUY" else market.base, ZERO) < needed:
                    raise BinanceError(400, -2010, INSUFFICIENT)
            elif not (kind in _TRIGGERED and list_id != -1):
                # A resting order holds what it may spend; an OCO's stop leg shares its limit
                # leg's hold and pays once that leg has expired.
                self._hold(order, market)
            self.orders[order.order_id] = order
            self._match(order, current, taker=True)
            return order

    def _refuse_immediate(self, order: SpotOrder, current: Decimal) -> None:
        if order.type in _TRIGGERED and self._triggers(order, current):
            raise BinanceError(400, -2010, "Stop price would trigger immediately.")
        if order.type == "LIMIT_MAKER" and self._crosses(order, current):
            raise BinanceError(400, -2010, "Order would immediately match and take.")

    def _hold(self, order: SpotOrder, market: Market) -> None:
        if order.side == "SELL":
            order.locked = order.quantity
            self._reserve(market.base, order.locked)
        else:
            order.locked = order.quantity * (order.price or order.stop_price)
            self._reserve(market.quote, order.locked)

    @staticmethod
    def _triggers(order: SpotOrder, price: Decimal) -> bool:
        falling = (order.type == "TAKE_PROFIT") == (order.side == "BUY")
        return price <= order.stop_price if falling else price >= order.stop_price

    @staticmethod
    def _crosses(order: SpotOrder, price: Decimal) -> bool:
        return price <= order.price if order.side == "BUY" else price >= order.price

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move ``symbol``'s price and match the resting orders once against it."""
        with self.lock:
            self.prices[symbol] = price
            for order in list(self.orders.values()):
                if order.symbol != symbol or not order.is_open:
                    continue
                if not order.working:
                    if not self._triggers(order, price):
                        continue
                    order.working = True
                    self._expire_siblings(order)
                self._match(order, price, taker=False)

    def _match(self, order: SpotOrder, price: Decimal, taker: bool) -> None:
        """Fill what ``order`` can at ``price`` (up to ``fill_limit``)."""
        if not order.working:
            return
        limit_kind = order.type in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT")
        if limit_kind and not self._crosses(order, price):
            return
        fill_price = order.price if limit_kind and not taker else price
        quantity = order.quantity - order.executed
        if self.fill_limit is not None:
            quantity = min(quantity, self.fill_limit)
        if self._fill(order, quantity, fill_price, maker=limit_kind and not taker):
            self._expire_siblings(order)
        if order.executed == order.quantity:
            self._close(order, "FILLED")
        elif not limit_kind:  # a market order (or a triggered stop) takes what is there
            self._close(order, "EXPIRED")
        elif order.executed > 0:
            order.status = "PARTIALLY_FILLED"

    def _fill(self, order: SpotOrder, quantity: Decimal, price: Decimal, maker: bool) -> bool:
        market = self.markets[order.symbol]
        cost = quantity * price
        paying, receiving = (
            (market.quote, market.base) if order.side == "BUY" else (market.base, market.quote)
        )
        spend = cost if order.side == "BUY" else quantity
        gross = quantity if order.side == "BUY" else cost
        if order.locked > 0:
            # Resting orders pay from their hold (a buy held at its limit, so return the rest).
            held = quantity * (order.price or order.stop_price) if order.side == "BUY" else quantity
            held = min(held, order.locked)
            self._release(paying, held)
            order.locked -= held
        if self.free.get(paying, ZERO) < spend:
            return False
        fee = (gross * self.commission).quantize(Decimal("0.00000001"))
        self.free[paying] -= spend
        self.free[receiving] = self.free.get(receiving, ZERO) + gross - fee
        order.executed += quantity
        order.quote += cost
        order.updated = now_ms()
        self.trades.append(
            {
                "symbol": order.symbol,
                "id": len(self.trades) + 1,
                "orderId": order.order_id,
                "orderListId": order.list_id,
                "price": text(price),
                "qty": text(quantity),
                "quoteQty": text(cost),
                "commission": text(fee),
                "commissionAsset": receiving,
                "time": order.updated,
                "isBuyer": order.side == "BUY",
                "isMaker": maker,
                "isBestMatch": True,
            }
        )
        return True

    def _close(self, order: SpotOrder, status: str) -> None:
        order.status = status
        order.updated = now_ms()
        if order.locked > 0:
            market = self.markets[order.symbol]
            self._release(market.base if order.side == "SELL" else market.quote, order.locked)
            order.locked = ZERO
        if order.list_id in self.lists and all(
            not self.orders[i].is_open for i in self.lists[order.list_id]["orderIds"]
        ):
            self.lists[order.list_id]["listOrderStatus"] = "ALL_DONE"

    def _expire_siblings(self, order: SpotOrder) -> None:
        if order.list_id == -1:
            return
        for other in self.lists[order.list_id]["orderIds"]:
            sibling = self.orders[other]
            if other != order.order_id and sibling.is_open:
                self._close(sibling, "EXPIRED")

    def find(self, params: dict[str, str], unknown: tuple[int, str]) -> SpotOrder:
        """The order named by ``orderId`` or ``origClientOrderId`` (latest first)."""
        self._market(params.get("symbol"))
        order_id, client_id = params.get("orderId"), params.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise BinanceError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        for order in sorted(self.orders.values(), key=lambda o: -o.order_id):
            if order.symbol != params["symbol"]:
                continue
            if str(order.order_id) == order_id or order.client_id == client_id:
                return order
        raise BinanceError(400, *unknown)

    def cancel(self, params: dict[str, str]) -> list[SpotOrder]:
        """Cancel an open order (and the rest of its OCO list)."""
        with self.lock:
            order = self.find(params, (-2011, "Unknown order sent."))
            if not order.is_open:
                raise BinanceError(400, -2011, "Unknown order sent.")
            ids = self.lists[order.list_id]["orderIds"] if order.list_id != -1 else []
            victims = [self.orders[i] for i in ids] or [order]
            for victim in victims:
                if victim.is_open:
                    self._close(victim, "CANCELED")
            return victims

    def new_oco(self, params: dict[str, str]) -> dict[str, Any]:
        """``POST /api/v3/orderList/oco``: a limit maker and a stop that cancel each other."""
        with self.lock:
            side = params.get("side")
            legs: dict[str, dict[str, str]] = {}
            for leg in ("above", "below"):
                legs[leg] = {
                    "symbol": params.get("symbol", ""),
                    "side": side or "",
                    "type": params.get(f"{leg}Type", ""),
                    "quantity": params.get("quantity", ""),
                    "newClientOrderId": params.get(f"{leg}ClientOrderId", ""),
                }
                for name in ("Price", "StopPrice", "TimeInForce"):
                    if f"{leg}{name}" in params:
                        legs[leg][name[0].lower() + name[1:]] = params[f"{leg}{name}"]
            limit_leg, stop_leg = ("above", "below") if side == "SELL" else ("below", "above")
            if legs[limit_leg]["type"] != "LIMIT_MAKER" or legs[stop_leg]["type"] not in (
                "STOP_LOSS",
                "STOP_LOSS_LIMIT",
            ):
                raise BinanceError(400, -1166, "Invalid leg types for this OCO side.")
            list_id = len(self.lists) + 1
            self.lists[list_id] = {"orderIds": [], "listOrderStatus": "EXECUTING"}
            placed: list[SpotOrder] = []
            try:
                for leg in (limit_leg, stop_leg):  # the limit leg first: it holds the funds
                    placed.append(self.new_order(legs[leg], list_id=list_id))
                    self.lists[list_id]["orderIds"].append(placed[-1].order_id)
            except BinanceError:
                for order in placed:
                    self._close(order, "CANCELED")
                    del self.orders[order.order_id]
                del self.lists[list_id]
                raise
            reports = [order.json() for order in placed]
            return {
                "orderListId": list_id,
                "contingencyType": "OCO",
                "listStatusType": "EXEC_STARTED",
                "listOrderStatus": "EXECUTING",
                "listClientOrderId": params.get("listClientOrderId", f"list{list_id}"),
                "transactionTime": now_ms(),
                "symbol": params.get("symbol"),
                "orders": [
                    {"symbol": o.symbol, "orderId": o.order_id, "clientOrderId": o.client_id}
                    for o in placed
                ],
                "orderReports": reports,
            }

    # -- reads ----------------------------------------------------------------------------------

    def account(self) -> dict[str, Any]:
        """``GET /api/v3/account``."""
        with self.lock:
            assets = sorted(set(self.free) | set(self.held))
            return {
                "makerCommission": 10,
                "takerCommission": 10,
                "canTrade": True,
                "canWithdraw": False,
                "canDeposit": False,
                "updateTime": now_ms(),
                "accountType": "SPOT",
                "balances": [
                    {
                        "asset": asset,
                        "free": text(self.free.get(asset, ZERO)),
                        "locked": text(self.held.get(asset, ZERO)),
                    }
                    for asset in assets
                ],
                "permissions": ["SPOT"],
            }

    def my_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """``GET /api/v3/myTrades`` with ``fromId``, ``startTime``/``endTime``, ``limit``."""
        with self.lock:
            market = self._market(params.get("symbol"))
            limit = int(params.get("limit", "500"))
            if not 1 <= limit <= 1000:
                raise BinanceError(400, -1130, "Invalid data sent for a parameter.")
            start, end = params.get("startTime"), params.get("endTime")
            if start and end and int(end) - int(start) > 86_400_000:
                raise BinanceError(400, -1127, "More than 24 hours between startTime and endTime.")
            rows = [t for t in self.trades if t["symbol"] == market.symbol]
            if "orderId" in params:
                rows = [t for t in rows if str(t["orderId"]) == params["orderId"]]
            if "fromId" in params:
                rows = [t for t in rows if t["id"] >= int(params["fromId"])]
            if start:
                rows = [t for t in rows if t["time"] >= int(start)]
            if end:
                rows = [t for t in rows if t["time"] <= int(end)]
            return rows[:limit] if start or "fromId" in params else rows[-limit:]
