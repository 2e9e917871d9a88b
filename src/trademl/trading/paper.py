"""The paper broker: orders filled by the backtest engine's own fill model, on closed bars.

The rules are those of :mod:`trademl.backtest.engine`, applied to orders:

* a **market** order fills at the open of the bar it waits for (:meth:`PaperBroker.open_bar`);
  sent while a bar is open (after ``open_bar``, before ``close_bar``), at that bar's open;
* a resting **stop** or **limit** order that the open has already gone through fills at the
  open (the engine's gap fills); during the bar (:meth:`PaperBroker.close_bar`), one whose
  level the range touched fills at its level; when a bar touches both orders of a
  one-cancels-the-other pair, the stop fills first unless ``target_first``;
* every fill is slipped ``slippage_bps`` against the trader (a buy at ``price · (1 + s)``, a sell
  at ``price · (1 − s)``) and pays ``fee_bps`` of its notional, the engine's arithmetic to the
  bit, so a replay reproduces the backtest's prices and P&L exactly.

Shorting is allowed and there is no margin check (the engine has no leverage cap). Every change
is committed to a database (SQLite under ``TRADEML_HOME`` by default) before the call returns,
so a restarted process resumes with the orders, fills, cash and positions it had; a bar given
twice (a restart replaying it) is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from trademl.config import Settings
from trademl.databases import open_engine
from trademl.errors import ConfigError, OrderRejectedError
from trademl.trading.broker import (
    Balance,
    Capabilities,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
)

_metadata = sa.MetaData()
_orders = sa.Table(
    "paper_orders",
    _metadata,
    sa.Column("client_id", sa.String(36), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)
_fills = sa.Table(
    "paper_fills",
    _metadata,
    sa.Column("fill_id", sa.String(64), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)
_account = sa.Table(
    "paper_account",
    _metadata,
    sa.Column("key", sa.String(96), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


@dataclass
class _Book:
    """One order's life on the paper venue."""

    request: OrderRequest
    sequence: int
    status: OrderStatus = "new"
    filled: float = 0.0
    average_price: float | None = None
    sibling: str | None = None  # the other order of a one-cancels-the-other pair

    def order(self) -> Order:
        return Order(
            self.request, self.request.client_id, self.status, self.filled, self.average_price
        )

    def dump(self) -> str:
        r = self.request
        return json.dumps(
            {
                "request": [
                    r.client_id,
                    r.symbol,
                    r.side,
                    r.kind,
                    r.quantity,
                    r.price,
                    r.stop_price,
                ],
                "sequence": self.sequence,
                "status": self.status,
                "filled": self.filled,
                "average_price": self.average_price,
                "sibling": self.sibling,
            }
        )

    @classmethod
    def load(cls, text: str) -> _Book:
        data = json.loads(text)
        return cls(
            OrderRequest(*data["request"]),
            data["sequence"],
            data["status"],
            data["filled"],
            data["average_price"],
            data["sibling"],
        )


@dataclass
class _Bar:
    """The latest bar of a symbol the venue was given: its start, open and phase."""

    timestamp: pd.Timestamp
    open: float
    closed: bool
    close: float | None = None
    stored: bool = False  # written while open: its close must be written too


@dataclass
class _Changes:
    orders: set[str] = field(default_factory=set)
    fills: list[Fill] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    force: bool = False


def _fill_dump(fill: Fill) -> str:
    return json.dumps(
        [
            fill.client_id,
            fill.symbol,
            fill.side,
            fill.quantity,
            fill.price,
            fill.fee,
            fill.time.isoformat(),
            fill.fill_id,
        ]
    )


def _fill_load(text: str) -> Fill:
    c, s, side, q, p, fee, t, f = json.loads(text)
    return Fill(c, s, side, q, p, fee, pd.Timestamp(t), f)


def _upsert(
    conn: sa.Connection, table: sa.Table, key: str, column: str, rows: list[dict[str, str]]
) -> None:
    """Insert ``rows`` or replace their ``column`` where ``key`` exists."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        module = sqlite_dialect if dialect == "sqlite" else postgresql_dialect
        statement = module.insert(table)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[key], set_={column: statement.excluded[column]}
            ),
            rows,
        )
        return
    for row in rows:
        done = conn.execute(
            table.update().where(table.c[key] == row[key]).values({column: row[column]})
        ).rowcount
        if not done:
            conn.execute(table.insert().values(row))


class PaperBroker:
    """A simulated venue driven by closed bars, filling as the backtest engine does.

    Parameters
    ----------
    url : str
        The database holding its state (a SQLAlchemy URL; ``sqlite:///path`` for a file).
    fee_bps, slippage_bps : float
        Fee per fill in basis points of its notional, and the adverse slippage of every fill.
    initial_cash : float
        Quote-asset cash of a new account.
    quote_asset : str
        The quote asset's name in :meth:`balances`.
    target_first : bool
        When a bar touches both orders of a one-cancels-the-other pair, fill the limit order
        (the target) rather than the stop.

    Examples
    --------
    >>> broker = PaperBroker("sqlite://")
    >>> broker.submit(OrderRequest("a1", "BTCUSDT", "buy", "market", 0.5)).status
    'new'
    >>> broker.on_bar("BTCUSDT", pd.Timestamp("2024-01-01", tz="UTC"), 100.0, 101, 99, 100.5)
    >>> broker.order("BTCUSDT", "a1").average_price, broker.positions()[0].quantity
    (100.0, 0.5)
    """

    name = "paper"
    capabilities = Capabilities(stop_orders=True, oco=True, shorting=True)

    def __init__(
        self,
        url: str,
        *,
        fee_bps: float = 0.0,
        slippage_bps: float = 0.0,
        initial_cash: float = 100_000.0,
        quote_asset: str = "USDT",
        target_first: bool = False,
    ) -> None:
        for label, value in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
            if not 0.0 <= value < 10_000.0:
                raise ConfigError(f"paper {label} must lie in [0, 10000), got {value!r}")
        if not initial_cash > 0:
            raise ConfigError(f"paper initial_cash must be positive, got {initial_cash!r}")
        self.fee_rate = fee_bps / 10_000.0
        self.slip_rate = slippage_bps / 10_000.0
        self.quote_asset = quote_asset
        self.target_first = target_first
        self._engine = open_engine(url)
        _metadata.create_all(self._engine)
        self._books: dict[str, _Book] = {}
        self._fills: list[Fill] = []
        self._positions: dict[str, tuple[float, float]] = {}
        self._bars: dict[str, _Bar] = {}
        self._cash = float(initial_cash)
        self._sequence = 0
        self._load()

    @classmethod
    def from_settings(cls, settings: Settings) -> PaperBroker:
        """The paper account the settings describe (``paper_*`` and ``trade_*`` fields)."""
        url = (
            settings.paper_url
            or f"sqlite:///{(settings.home / 'trading' / 'paper.sqlite').as_posix()}"
        )
        return cls(
            url,
            fee_bps=settings.trade_fee_bps,
            slippage_bps=settings.trade_slippage_bps,
            initial_cash=settings.paper_initial_cash,
            quote_asset=settings.paper_quote_asset,
            target_first=settings.trade_target_first,
        )

    # -- persistence ---------------------------------------------------------------------------

    def _load(self) -> None:
        with self._engine.connect() as conn:
            for (text,) in conn.execute(sa.select(_orders.c.body)):
                book = _Book.load(text)
                self._books[book.request.client_id] = book
            self._fills = [_fill_load(t) for (t,) in conn.execute(sa.select(_fills.c.body))]
            account = dict(conn.execute(sa.select(_account.c.key, _account.c.value)).all())
        self._fills.sort(key=lambda f: (f.time, f.fill_id))
        self._sequence = max((b.sequence for b in self._books.values()), default=0)
        if "cash" in account:
            self._cash = float(json.loads(account["cash"]))
        for key, text in account.items():
            kind, _, symbol = key.partition(":")
            if kind == "position":
                quantity, price = json.loads(text)
                self._positions[symbol] = (float(quantity), float(price))
            elif kind == "bar":
                stamp, opened, closed, close = json.loads(text)
                self._bars[symbol] = _Bar(pd.Timestamp(stamp), opened, closed, close)

    def _save(self, changes: _Changes) -> None:
        """Commit ``changes`` in one transaction (the state in memory is already updated).

        A bar that filled nothing is not written: given again after a restart, it fills
        nothing again."""
        if not (changes.orders or changes.fills or changes.force):
            return
        rows: list[dict[str, str]] = [{"key": "cash", "value": json.dumps(self._cash)}]
        for key in changes.keys:
            kind, _, symbol = key.partition(":")
            if kind == "position":
                value = json.dumps(self._positions.get(symbol, (0.0, 0.0)))
            else:
                bar = self._bars[symbol]
                bar.stored = not bar.closed
                value = json.dumps([bar.timestamp.isoformat(), bar.open, bar.closed, bar.close])
            rows.append({"key": key, "value": value})
        orders = [{"client_id": c, "body": self._books[c].dump()} for c in changes.orders]
        with self._engine.begin() as conn:
            _upsert(conn, _orders, "client_id", "body", orders)
            if changes.fills:
                conn.execute(
                    _fills.insert(),
                    [{"fill_id": f.fill_id, "body": _fill_dump(f)} for f in changes.fills],
                )
            _upsert(conn, _account, "key", "value", rows)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    # -- the Broker protocol -------------------------------------------------------------------

    def submit(self, request: OrderRequest) -> Order:
        """Accept ``request`` (a known client id returns that order unchanged); a market order
        sent while a bar is open fills at once at that bar's open."""
        known = self._books.get(request.client_id)
        if known is not None:
            return known.order()
        changes = _Changes()
        self._accept(request, changes)
        bar = self._bars.get(request.symbol)
        if request.kind == "market" and bar is not None and not bar.closed:
            self._fill(self._books[request.client_id], bar.open, bar.timestamp, changes)
        self._save(changes)
        return self._books[request.client_id].order()

    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> tuple[Order, Order]:
        """Place a stop and a limit order as one-cancels-the-other."""
        if stop.kind != "stop" or target.kind != "limit":
            raise OrderRejectedError(
                f"an OCO pair is a stop order and a limit order, got {stop.kind} and {target.kind}"
            )
        if stop.symbol != target.symbol or stop.side != target.side:
            raise OrderRejectedError("both orders of an OCO pair must share symbol and side")
        known = [self._books.get(r.client_id) for r in (stop, target)]
        if known[0] is not None and known[1] is not None:
            return known[0].order(), known[1].order()
        if known[0] is not None or known[1] is not None:
            raise OrderRejectedError(
                f"client id {stop.client_id if known[0] else target.client_id!r} is already "
                "used by another order"
            )
        changes = _Changes()
        self._accept(stop, changes, sibling=target.client_id)
        self._accept(target, changes, sibling=stop.client_id)
        self._save(changes)
        return self._books[stop.client_id].order(), self._books[target.client_id].order()

    def cancel(self, symbol: str, client_id: str) -> Order:
        """Cancel an open order; a closed one is returned as it is."""
        book = self._book(symbol, client_id)
        if book.status in ("new", "partially_filled"):
            changes = _Changes()
            self._set_status(book, "canceled", changes)
            self._save(changes)
        return book.order()

    def order(self, symbol: str, client_id: str) -> Order | None:
        """The order with this client id, or None when it was never received."""
        book = self._books.get(client_id)
        if book is None or book.request.symbol != symbol:
            return None
        return book.order()

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders that can still fill, oldest first."""
        return [b.order() for b in self._open(symbol)]

    def positions(self) -> list[Position]:
        """Non-zero positions."""
        return [Position(s, q, p) for s, (q, p) in sorted(self._positions.items()) if q != 0.0]

    def balances(self) -> list[Balance]:
        """The quote asset's cash (positions are in :meth:`positions`)."""
        return [Balance(self.quote_asset, self._cash)]

    def fills(self, symbol: str, since: pd.Timestamp | None = None) -> list[Fill]:
        """Executions of ``symbol`` at or after ``since``, oldest first."""
        return [f for f in self._fills if f.symbol == symbol and (since is None or f.time >= since)]

    # -- bars --------------------------------------------------------------------------------

    def open_bar(self, symbol: str, timestamp: pd.Timestamp, open_price: float) -> None:
        """A bar of ``symbol`` opened at ``open_price``: waiting market orders fill there, and
        resting stop and limit orders the open went through fill there (stops first). A bar
        not after the latest one given is ignored."""
        stamp = pd.Timestamp(timestamp)
        latest = self._bars.get(symbol)
        if latest is not None and stamp <= latest.timestamp:
            return
        if not open_price > 0:
            raise ConfigError(f"{symbol} bar at {stamp}: open {open_price!r} is not positive")
        changes = _Changes()
        self._bars[symbol] = _Bar(stamp, float(open_price), closed=False)
        changes.keys.add(f"bar:{symbol}")
        resting = self._open(symbol)
        for book in resting:
            if book.request.kind == "market":
                self._fill(book, open_price, stamp, changes)
        for kind in ("stop", "limit"):
            for book in resting:
                if self._due(book, kind, open_price, open_price):
                    self._fill(book, open_price, stamp, changes)
        self._save(changes)

    def close_bar(
        self, symbol: str, timestamp: pd.Timestamp, high: float, low: float, close: float
    ) -> None:
        """The open bar of ``symbol`` closed: resting orders whose level its range touched fill
        at their level, stops before limits (limits first with ``target_first``)."""
        stamp = pd.Timestamp(timestamp)
        bar = self._bars.get(symbol)
        if bar is not None and bar.timestamp == stamp and bar.closed:
            return
        if bar is None or bar.timestamp != stamp:
            raise ConfigError(f"{symbol} bar at {stamp} closed before it was opened (open_bar)")
        changes = _Changes()
        kinds = ("limit", "stop") if self.target_first else ("stop", "limit")
        resting = self._open(symbol)
        for kind in kinds:
            for book in resting:
                if self._due(book, kind, high, low):
                    level = book.request.price if kind == "limit" else book.request.stop_price
                    self._fill(book, float(level or 0.0), stamp, changes)
        bar.closed, bar.close = True, float(close)
        changes.keys.add(f"bar:{symbol}")
        changes.force = bar.stored
        self._save(changes)

    def on_bar(
        self,
        symbol: str,
        timestamp: pd.Timestamp,
        open_price: float,
        high: float,
        low: float,
        close: float,
    ) -> None:
        """A whole closed bar: :meth:`open_bar` then :meth:`close_bar`."""
        self.open_bar(symbol, timestamp, open_price)
        self.close_bar(symbol, timestamp, high, low, close)

    def last_bar(self, symbol: str) -> pd.Timestamp | None:
        """The start of the latest bar of ``symbol`` given, None before any."""
        bar = self._bars.get(symbol)
        return bar.timestamp if bar is not None else None

    # -- the fill model ----------------------------------------------------------------------

    @staticmethod
    def _due(book: _Book, kind: str, high: float, low: float) -> bool:
        """Whether ``book`` is a still open ``kind`` order whose level the range ``[low, high]``
        reaches (at the open, both are the open)."""
        request = book.request
        if request.kind != kind or book.status != "new":
            return False
        if request.kind == "stop":
            level = float(request.stop_price or 0.0)
            return high >= level if request.side == "buy" else low <= level
        level = float(request.price or 0.0)
        return low <= level if request.side == "buy" else high >= level

    def _open(self, symbol: str | None) -> list[_Book]:
        books = [
            b
            for b in self._books.values()
            if b.status in ("new", "partially_filled")
            and (symbol is None or b.request.symbol == symbol)
        ]
        return sorted(books, key=lambda b: b.sequence)

    def _book(self, symbol: str, client_id: str) -> _Book:
        book = self._books.get(client_id)
        if book is None or book.request.symbol != symbol:
            raise OrderRejectedError(f"no {symbol} order with client id {client_id!r}")
        return book

    def _accept(self, request: OrderRequest, changes: _Changes, sibling: str | None = None) -> None:
        self._sequence += 1
        self._books[request.client_id] = _Book(request, self._sequence, sibling=sibling)
        changes.orders.add(request.client_id)

    def _set_status(self, book: _Book, status: OrderStatus, changes: _Changes) -> None:
        book.status = status
        changes.orders.add(book.request.client_id)

    def _fill(self, book: _Book, level: float, time: pd.Timestamp, changes: _Changes) -> None:
        """Fill ``book`` whole at ``level`` slipped against the trader, as the engine does."""
        request = book.request
        quantity = request.quantity - book.filled
        # The engine's expressions, operand for operand: the same bits.
        if request.side == "buy":
            price = level * (1.0 + self.slip_rate)
            self._cash -= quantity * price
        else:
            price = level * (1.0 - self.slip_rate)
            self._cash += quantity * price
        fee = self.fee_rate * quantity * price
        self._cash -= fee
        book.filled = request.quantity
        book.average_price = price
        self._set_status(book, "filled", changes)
        fill = Fill(
            request.client_id,
            request.symbol,
            request.side,
            quantity,
            price,
            fee,
            time,
            f"{request.client_id}-1",
        )
        self._fills.append(fill)
        changes.fills.append(fill)
        self._move_position(request.symbol, quantity if request.side == "buy" else -quantity, price)
        changes.keys.update((f"position:{request.symbol}", f"bar:{request.symbol}"))
        if book.sibling is not None:
            other = self._books.get(book.sibling)
            if other is not None and other.status in ("new", "partially_filled"):
                self._set_status(other, "canceled", changes)

    def _move_position(self, symbol: str, change: float, price: float) -> None:
        held, average = self._positions.get(symbol, (0.0, 0.0))
        after = held + change
        if after == 0.0:
            self._positions.pop(symbol, None)
        elif held == 0.0 or (held > 0) != (after > 0):
            self._positions[symbol] = (after, price)  # opened, or flipped through zero
        elif abs(after) > abs(held):
            self._positions[symbol] = (after, (held * average + change * price) / after)
        else:
            self._positions[symbol] = (after, average)
