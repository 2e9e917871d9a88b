"""``ccxt:<exchange>``: the Broker on a real exchange's order endpoints, through ccxt.

Submissions are idempotent by client order id and never doubled: before sending, the broker
asks the venue for the client id (a known order is returned), and after a timeout it looks
again before anything else (:class:`~trademl.trading.ccxt_calls.VenueCalls`). Binance spot
places a stop and a target as one OCO order list (``POST /api/v3/orderList/oco``); elsewhere
:attr:`CcxtBroker.capabilities` says there is no OCO and the live loop emulates it. Symbols are
the store's spelling (``BTCUSDT``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, TypeVar

import pandas as pd
from loguru import logger

from trademl.config import Settings
from trademl.errors import (
    ConfigError,
    TradingError,
)
from trademl.trading.broker import (
    Balance,
    Capabilities,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
)
from trademl.trading.ccxt_calls import VenueCalls
from trademl.trading.ccxt_venue import BINANCE_LIKE, connect

T = TypeVar("T")

_FORMS = {
    "symbol": (
        re.compile(r"^[A-Z0-9]{2,32}$"),
        "the store's spelling, 2 to 32 capital letters and digits such as BTCUSDT",
    ),
    "client_id": (
        re.compile(r"^[A-Za-z0-9_-]{1,36}$"),
        "1 to 36 characters of letters, digits, '_' and '-'",
    ),
}
_KINDS = {
    "market": "market",
    "limit": "limit",
    "limit_maker": "limit",
    "take_profit": "limit",
    "take_profit_limit": "limit",
    "stop": "stop",
    "stop_loss": "stop",
    "stop_loss_limit": "stop",
    "stop_market": "stop",
}
_TRADES_PAGE = 1000


def _status(raw: dict[str, Any], filled: float) -> OrderStatus:
    unified = raw.get("status")
    if unified == "open":
        return "partially_filled" if filled > 0 else "new"
    mapped: dict[str, OrderStatus] = {
        "closed": "filled",
        "canceled": "canceled",
        "expired": "expired",
        "rejected": "rejected",
    }
    return mapped.get(str(unified), "new")


def _positive(value: Any) -> float | None:
    """``value`` as a positive float, or None (ccxt leaves absent prices None or 0)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


class CcxtBroker:
    """A :class:`~trademl.trading.broker.Broker` on one ccxt exchange (spot).

    Parameters
    ----------
    exchange:
        A ccxt exchange object with keys set (see :meth:`from_settings`).
    calls:
        How requests are retried and rate limits waited out; by default
        :class:`~trademl.trading.ccxt_calls.VenueCalls` with its defaults.
    symbols:
        Markets whose holdings :meth:`positions` reports (markets traded through this broker
        are added as they are used).
    """

    def __init__(
        self, exchange: Any, *, calls: VenueCalls | None = None, symbols: Iterable[str] = ()
    ) -> None:
        import ccxt

        self._ccxt = ccxt
        self.exchange = exchange
        self.name = f"ccxt:{exchange.id}"
        self.calls = calls if calls is not None else VenueCalls(exchange)
        self._binance = exchange.id in BINANCE_LIKE
        has = exchange.has
        self.capabilities = Capabilities(
            stop_orders=self._binance
            or bool(has.get("createStopMarketOrder") or has.get("createTriggerOrder")),
            oco=self._binance,
            shorting=False,
        )
        self._symbols: set[str] = {self._checked("symbol", s) for s in symbols}
        self._client_ids: dict[str, str] = {}  # venue order id -> client id, for fills
        self._seen_trades: dict[str, list[dict[str, Any]]] = {}  # market id -> its trades

    @classmethod
    def from_settings(
        cls, exchange: str, settings: Settings, *, symbols: Iterable[str] = ()
    ) -> CcxtBroker:
        """The broker for ``ccxt:<exchange>`` as settings configure it.

        Reads ``exchange_api_key``, ``exchange_api_secret``, ``exchange_api_password``,
        ``exchange_api_url``, ``exchange_sandbox``, ``exchange_allow_live``,
        ``exchange_recv_window_s``, ``http_timeout_s`` and ``http_retries``.

        Raises
        ------
        ConfigError
            See :func:`trademl.trading.ccxt_venue.connect`.
        """
        venue = connect(exchange, settings)
        calls = VenueCalls(
            venue, retries=settings.http_retries, recv_window_s=settings.exchange_recv_window_s
        )
        return cls(venue, calls=calls, symbols=symbols)

    # -- symbols and orders ---------------------------------------------------------------------

    @staticmethod
    def _checked(name: str, value: str) -> str:
        """``value`` if it has the form of a ``symbol`` or ``client_id``, before any request."""
        pattern, expected = _FORMS[name]
        if not isinstance(value, str) or not pattern.match(value):
            raise ConfigError(f"{name} {str(value)[:40]!r}: expected {expected}")
        return value

    def _market(self, symbol: str) -> dict[str, Any]:
        """ccxt's spot market for a store symbol (``BTCUSDT`` -> ``BTC/USDT``)."""
        self._checked("symbol", symbol)
        markets: dict[str, Any] = self.calls.call("loading markets", self.exchange.load_markets)
        for market in markets.values():
            if market.get("spot") and symbol in (market["id"], market["base"] + market["quote"]):
                self._symbols.add(symbol)
                found: dict[str, Any] = market
                return found
        raise ConfigError(f"{self.name}: no spot market {symbol!r} on this exchange")

    def _store_symbol(self, ccxt_symbol: str) -> str:
        market = self.exchange.markets.get(ccxt_symbol, {})
        return str(market.get("base", "") + market.get("quote", "")) or ccxt_symbol

    def _order(
        self, raw: dict[str, Any], request: OrderRequest | None = None, client_id: str = ""
    ) -> Order | None:
        """Our Order from ccxt's, or None for one we cannot represent (not placed by us)."""
        client_id = client_id or str(raw.get("clientOrderId") or "")
        filled = float(raw.get("filled") or 0.0)
        if request is None:
            # ccxt calls a Binance STOP_LOSS "market": the venue's own type says more.
            venue_type = str((raw.get("info") or {}).get("type") or "").lower()
            kind = _KINDS.get(venue_type) or _KINDS.get(str(raw.get("type") or "").lower())
            price, trigger = _positive(raw.get("price")), _positive(raw.get("triggerPrice"))
            if kind == "market" and trigger is not None:
                kind = "stop"
            try:
                request = OrderRequest(
                    client_id,
                    self._store_symbol(str(raw.get("symbol"))),
                    raw.get("side"),  # type: ignore[arg-type]  # checked by OrderRequest
                    kind,  # type: ignore[arg-type]
                    float(raw.get("amount") or 0.0),
                    (price or trigger) if kind == "limit" else None,
                    trigger if kind == "stop" else None,
                )
            except (ConfigError, TypeError, ValueError) as error:
                logger.warning("{}: skipping order {}: {}", self.name, raw.get("id"), error)
                return None
        venue_id = str(raw.get("id") or client_id)
        self._client_ids[venue_id] = client_id
        return Order(
            request,
            venue_id,
            _status(raw, filled),
            filled,
            _positive(raw.get("average")) if filled > 0 else None,
        )

    def _create(self, market: dict[str, Any], request: OrderRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"clientOrderId": request.client_id}
        kind, price = request.kind, request.price
        if kind == "stop":
            kind, params["triggerPrice"] = "market", request.stop_price
        raw: dict[str, Any] = self.exchange.create_order(
            market["symbol"], kind, request.side, request.quantity, price, params
        )
        return raw

    def _lookup(self, market: dict[str, Any], client_id: str) -> Order | None:
        what = f"looking up order {client_id}"
        params = {"clientOrderId": client_id}
        try:
            raw = self.calls.call(what, self.exchange.fetch_order, None, market["symbol"], params)
        except self._ccxt.OrderNotFound:
            return None
        return self._order(raw, client_id=client_id)

    # -- the Broker protocol --------------------------------------------------------------------

    def submit(self, request: OrderRequest) -> Order:
        """Place ``request``; a client id the venue already knows returns that order.

        Raises
        ------
        OrderRejectedError
            The venue refused it (balance, filters...), with the venue's reason.
        VenueUnavailableError
            No answer could be had; the order may exist (look it up by client id).
        """
        market = self._market(request.symbol)
        known = self._lookup(market, request.client_id)
        if known is not None:
            return known
        what = f"submitting {request.kind} {request.side} order {request.client_id}"

        def send() -> Order:
            order = self._order(self._create(market, request), request)
            assert order is not None  # built from the request itself
            return order

        return self.calls.send(what, send, lambda: self._lookup(market, request.client_id))

    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> tuple[Order, Order]:
        """Place ``stop`` and ``target`` as one OCO order list (Binance spot).

        Both close the same position: same symbol, side and quantity; ``stop`` is a ``stop``
        order, ``target`` a ``limit``. Client ids already known return those orders.

        Raises
        ------
        TradingError
            The venue has no native OCO (:attr:`capabilities`).
        ConfigError
            The two orders do not form a pair.
        OrderRejectedError
            The venue refused the list.
        """
        if not self.capabilities.oco:
            raise TradingError(f"{self.name}: no native OCO here; the live loop emulates it")
        same = (stop.symbol, stop.side, stop.quantity) == (
            target.symbol,
            target.side,
            target.quantity,
        )
        if not same or stop.kind != "stop" or target.kind != "limit":
            raise ConfigError(
                "an OCO pair is a stop order and a limit order of the same symbol, side and "
                f"quantity; got {stop.kind} and {target.kind}"
            )
        market = self._market(stop.symbol)

        def find() -> tuple[Order, Order] | None:
            legs = (self._lookup(market, stop.client_id), self._lookup(market, target.client_id))
            if legs[0] is None and legs[1] is None:
                return None
            if legs[0] is None or legs[1] is None:
                raise TradingError(f"{self.name}: only one leg of OCO {stop.client_id} exists")
            return legs[0], legs[1]

        known = find()
        if known is not None:
            return known
        exchange = self.exchange
        symbol = market["symbol"]
        limit_leg = {
            "Type": "LIMIT_MAKER",
            "Price": exchange.price_to_precision(symbol, target.price),
            "ClientOrderId": target.client_id,
        }
        stop_leg = {
            "Type": "STOP_LOSS",
            "StopPrice": exchange.price_to_precision(symbol, stop.stop_price),
            "ClientOrderId": stop.client_id,
        }
        above, below = (limit_leg, stop_leg) if stop.side == "sell" else (stop_leg, limit_leg)
        params = {
            "symbol": market["id"],
            "side": stop.side.upper(),
            "quantity": exchange.amount_to_precision(symbol, stop.quantity),
            "listClientOrderId": stop.client_id,
            "newOrderRespType": "FULL",
            **{f"above{key}": value for key, value in above.items()},
            **{f"below{key}": value for key, value in below.items()},
        }

        def send() -> tuple[Order, Order]:
            answer = exchange.private_post_orderlist_oco(params)
            reports = {r["clientOrderId"]: r for r in answer.get("orderReports", [])}
            legs = []
            for leg in (stop, target):
                raw = exchange.parse_order(reports[leg.client_id], market)
                order = self._order(raw, leg)
                assert order is not None  # built from the request itself
                legs.append(order)
            return legs[0], legs[1]

        return self.calls.send(f"submitting OCO {stop.client_id}", send, find)

    def cancel(self, symbol: str, client_id: str) -> Order:
        """Cancel an open order; a closed one is returned as it is.

        Raises
        ------
        TradingError
            The venue has no order with this client id.
        """
        self._checked("client_id", client_id)
        market = self._market(symbol)
        params = {"clientOrderId": client_id}
        try:
            raw = self.calls.call(
                f"canceling order {client_id}",
                self.exchange.cancel_order,
                None,
                market["symbol"],
                params,
            )
        except self._ccxt.OrderNotFound:
            order = self._lookup(market, client_id)
            if order is None:
                raise TradingError(
                    f"{self.name}: no order with client id {client_id!r} on {symbol}"
                ) from None
            return order
        canceled = self._order(raw, client_id=client_id)
        # The cancel answer names the cancel request; the order itself says what it was.
        return canceled if canceled is not None else self._must(market, client_id)

    def _must(self, market: dict[str, Any], client_id: str) -> Order:
        order = self._lookup(market, client_id)
        if order is None:
            raise TradingError(f"{self.name}: order {client_id!r} vanished from the venue")
        return order

    def order(self, symbol: str, client_id: str) -> Order | None:
        """The order with this client id, or None when the venue never received it."""
        self._checked("client_id", client_id)
        return self._lookup(self._market(symbol), client_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders that can still fill (orders this broker cannot represent are skipped)."""
        ccxt_symbol = self._market(symbol)["symbol"] if symbol is not None else None
        if ccxt_symbol is None:
            self.calls.call("loading markets", self.exchange.load_markets)
        raws = self.calls.call("fetching open orders", self.exchange.fetch_open_orders, ccxt_symbol)
        orders = (self._order(raw) for raw in raws)
        return [order for order in orders if order is not None and order.is_open]

    def balances(self) -> list[Balance]:
        """Non-zero balances, free and locked."""
        raw = self.calls.call("fetching balances", self.exchange.fetch_balance)
        result = []
        for asset, total in sorted((raw.get("total") or {}).items()):
            if total:
                free = float(raw.get("free", {}).get(asset) or 0.0)
                locked = float(raw.get("used", {}).get(asset) or 0.0)
                result.append(Balance(asset, free, locked))
        return result

    def positions(self) -> list[Position]:
        """Holdings of the broker's markets as long positions (spot has no shorts).

        The quantity is the base asset held; the average price is that of the buys since the
        holding was last flat, from the account's fills (0.0 when no fill explains it).
        """
        held = {balance.asset: balance.total for balance in self.balances()}
        result = []
        for symbol in sorted(self._symbols):
            quantity = held.get(self._market(symbol)["base"], 0.0)
            if quantity > 0:
                result.append(Position(symbol, quantity, self._entry_price(symbol)))
        return result

    def _entry_price(self, symbol: str) -> float:
        quantity = average = 0.0
        for fill in self.fills(symbol):
            if fill.side == "buy":
                average = (quantity * average + fill.quantity * fill.price) / (
                    quantity + fill.quantity
                )
                quantity += fill.quantity
            else:
                quantity = max(0.0, quantity - fill.quantity)
                average = average if quantity > 0 else 0.0
        return average

    def fills(self, symbol: str, since: pd.Timestamp | None = None) -> list[Fill]:
        """Executions of ``symbol`` at or after ``since``, oldest first, named by client id.

        Raises
        ------
        ConfigError
            ``since`` is not a time-zone-aware timestamp.
        """
        if since is not None and (not isinstance(since, pd.Timestamp) or since.tz is None):
            raise ConfigError(f"fills since {since!r}: expected a UTC pandas.Timestamp")
        market = self._market(symbol)
        since_ms = int(since.value // 1_000_000) if since is not None else None
        trades = self._trades(market, since_ms)
        fills = [self._fill(symbol, market, trade) for trade in trades]
        return sorted(
            (f for f in fills if since is None or f.time >= since),
            key=lambda f: (f.time, f.fill_id),
        )

    def _trades(self, market: dict[str, Any], since_ms: int | None) -> list[dict[str, Any]]:
        what = f"fetching fills of {market['symbol']}"
        fetch = self.exchange.fetch_my_trades
        if not self._binance:
            return list(self.calls.call(what, fetch, market["symbol"], since_ms))
        # Binance bounds a time query to 24 hours; trade ids page through all of history,
        # and trades are final, so each is fetched once per broker.
        trades = self._seen_trades.setdefault(market["id"], [])
        while True:
            next_id = max((int(trade["id"]) for trade in trades), default=-1) + 1
            page = self.calls.call(
                what, fetch, market["symbol"], None, _TRADES_PAGE, {"fromId": next_id}
            )
            trades.extend(page)
            if len(page) < _TRADES_PAGE:
                return list(trades)

    def _fill(self, symbol: str, market: dict[str, Any], trade: dict[str, Any]) -> Fill:
        venue_id = str(trade.get("order"))
        if venue_id not in self._client_ids:
            raw = self.calls.call(
                f"looking up order {venue_id}",
                self.exchange.fetch_order,
                venue_id,
                market["symbol"],
            )
            self._client_ids[venue_id] = str(raw.get("clientOrderId") or venue_id)
        price = float(trade["price"])
        fee = trade.get("fee") or {}
        cost = float(fee.get("cost") or 0.0)
        if fee.get("currency") == market["base"]:
            cost *= price  # Binance charges a buy's fee in the asset bought
        elif fee.get("currency") not in (None, market["quote"]):
            logger.warning("{}: a fee in {} is not counted", self.name, fee.get("currency"))
            cost = 0.0
        return Fill(
            self._client_ids[venue_id],
            symbol,
            trade["side"],
            float(trade["amount"]),
            price,
            cost,
            pd.Timestamp(int(trade["timestamp"]), unit="ms", tz="UTC"),
            str(trade["id"]),
        )
