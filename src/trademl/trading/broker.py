"""The one protocol every venue implements, and the values it trades in.

A broker takes orders named by a *client order id* that the caller chooses: submitting the same
id twice returns the first order rather than placing a second (how a restarted loop or a retry
after a timeout avoids a double order). Quantities are in the base asset, prices in the quote
asset, times are UTC.

>>> order = OrderRequest("t1-entry", "BTCUSDT", "buy", "market", 0.01)
>>> order.side, order.kind, order.quantity
('buy', 'market', 0.01)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import pandas as pd

from trademl.errors import ConfigError

Side = Literal["buy", "sell"]
OrderKind = Literal["market", "limit", "stop"]
OrderStatus = Literal["new", "partially_filled", "filled", "canceled", "rejected", "expired"]

SIDES: tuple[Side, ...] = ("buy", "sell")
ORDER_KINDS: tuple[OrderKind, ...] = ("market", "limit", "stop")
OPEN_STATUSES: frozenset[str] = frozenset({"new", "partially_filled"})
# Venues bound client ids (Binance: 36 characters of [.A-Z:/a-z0-9_-]); ours are stricter.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


@dataclass(frozen=True)
class OrderRequest:
    """An order to place.

    Attributes
    ----------
    client_id : str
        The caller's id for the order, 1 to 36 characters of ``[A-Za-z0-9_-]``; the key that
        makes a submission idempotent.
    symbol : str
        The market, in the store's spelling (``BTCUSDT``).
    side : {"buy", "sell"}
    kind : {"market", "limit", "stop"}
        A ``limit`` order fills at ``price`` or better; a ``stop`` becomes a market order once
        the price trades through ``stop_price``.
    quantity : float
        Base-asset quantity, positive.
    price : float, optional
        The limit price (``limit`` only).
    stop_price : float, optional
        The trigger price (``stop`` only).
    """

    client_id: str
    symbol: str
    side: Side
    kind: OrderKind
    quantity: float
    price: float | None = None
    stop_price: float | None = None

    def __post_init__(self) -> None:
        if not _CLIENT_ID.match(self.client_id):
            raise ConfigError(
                f"order client_id {self.client_id!r}: expected 1 to 36 characters of "
                "letters, digits, '_' and '-'"
            )
        if self.side not in SIDES:
            raise ConfigError(f"order side {self.side!r}: expected one of {', '.join(SIDES)}")
        if self.kind not in ORDER_KINDS:
            raise ConfigError(f"order kind {self.kind!r}: expected one of {', '.join(ORDER_KINDS)}")
        if not (math.isfinite(self.quantity) and self.quantity > 0):
            raise ConfigError(f"order quantity {self.quantity!r}: expected a positive number")
        needs = {"limit": "price", "stop": "stop_price"}.get(self.kind)
        for name in ("price", "stop_price"):
            value = getattr(self, name)
            if name == needs and value is None:
                raise ConfigError(f"a {self.kind} order needs {name}")
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"order {name} {value!r}: expected a positive number")


@dataclass(frozen=True)
class Order:
    """An order as the venue knows it.

    Attributes
    ----------
    request : OrderRequest
        What was asked.
    venue_id : str
        The venue's id for it (the client id where the venue has none of its own).
    status : str
        One of ``new``, ``partially_filled``, ``filled``, ``canceled``, ``rejected``,
        ``expired``.
    filled : float
        Base quantity filled so far.
    average_price : float, optional
        Mean fill price, None before any fill.
    reason : str
        Why a rejected order was rejected (empty otherwise).
    """

    request: OrderRequest
    venue_id: str
    status: OrderStatus
    filled: float = 0.0
    average_price: float | None = None
    reason: str = ""

    @property
    def is_open(self) -> bool:
        """Whether the order can still fill."""
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class Fill:
    """One execution of an order.

    Attributes
    ----------
    client_id : str
        The order's client id.
    symbol : str
    side : {"buy", "sell"}
    quantity, price : float
        Base quantity and price of this execution.
    fee : float
        Fee paid, in the quote asset.
    time : pandas.Timestamp
        When it executed (UTC).
    fill_id : str
        The venue's id for the execution (unique per venue).
    """

    client_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    time: pd.Timestamp
    fill_id: str


@dataclass(frozen=True)
class Position:
    """A net position in one market: ``quantity`` > 0 long, < 0 short, entered at
    ``average_price`` (quote per base)."""

    symbol: str
    quantity: float
    average_price: float


@dataclass(frozen=True)
class Balance:
    """Free and locked amounts of one asset."""

    asset: str
    free: float
    locked: float = 0.0

    @property
    def total(self) -> float:
        """Free plus locked."""
        return self.free + self.locked


@dataclass(frozen=True)
class Capabilities:
    """What a venue does natively; the live loop emulates the rest on closed bars.

    Attributes
    ----------
    stop_orders : bool
        Resting stop orders are accepted.
    oco : bool
        A stop and a target can be placed as one-cancels-the-other.
    shorting : bool
        A sell without holdings opens a short.
    """

    stop_orders: bool = False
    oco: bool = False
    shorting: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Broker(Protocol):
    """A venue the live loop trades on: ``paper``, ``ccxt:<exchange>`` or ``dex``.

    Every method raises :class:`~trademl.errors.TradingError` subclasses for the venue's
    refusals (:class:`~trademl.errors.OrderRejectedError`) and for what cannot be known
    (:class:`~trademl.errors.VenueUnavailableError`: the order may or may not exist; ask
    :meth:`order` by client id before trying again).
    """

    name: str
    capabilities: Capabilities

    def submit(self, request: OrderRequest) -> Order:
        """Place ``request``; a client id already known returns that order unchanged."""
        ...

    def cancel(self, symbol: str, client_id: str) -> Order:
        """Cancel an open order; a closed one is returned as it is."""
        ...

    def order(self, symbol: str, client_id: str) -> Order | None:
        """The order with this client id, or None when the venue never received it."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders that can still fill."""
        ...

    def positions(self) -> list[Position]:
        """Non-zero positions."""
        ...

    def balances(self) -> list[Balance]:
        """Non-zero balances."""
        ...

    def fills(self, symbol: str, since: pd.Timestamp | None = None) -> list[Fill]:
        """Executions of ``symbol`` at or after ``since``, oldest first."""
        ...


@runtime_checkable
class OcoBroker(Broker, Protocol):
    """A broker that places a position's stop and target as one-cancels-the-other (the venue
    says so with :attr:`Capabilities.oco`); the live loop uses it when both hold."""

    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> tuple[Order, Order]:
        """Place ``stop`` (a ``stop`` order) and ``target`` (a ``limit`` order) so that the
        fill of either cancels the other; client ids already known return those orders."""
        ...
