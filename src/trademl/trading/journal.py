"""The trade journal: every intent, order, fill and position change of the live loops.

One database (SQLite under ``TRADEML_HOME`` by default, PostgreSQL by
``TRADEML_TRADE_JOURNAL_URL``) holds:

* ``trade_loops``: one row per loop (its broker, symbol, realised equity, last bar handled);
* ``trade_intents``: one row per signal acted on, from ``pending`` to ``closed`` (or
  ``skipped``, ``refused``, ``abandoned``), with its entry, exit and P&L;
* ``trade_orders``: every order, written as ``sending`` *before* it goes to the venue and
  updated with the venue's answer *after*: an order left ``sending`` by a crash is one whose
  fate only the venue knows, and :meth:`TradeJournal.unknown_orders` lists them for
  reconciliation by client id;
* ``trade_fills``, ``trade_events`` (an append-only log of everything, positions included)
  and ``trade_switches`` (the kill switch, persisted).

Each method is one transaction, so the journal never holds half a change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trademl.config import Settings
from trademl.databases import open_engine
from trademl.errors import NotFoundError
from trademl.trading.broker import Fill, Order, OrderRequest

#: Intent states in which a loop still owns an order or a position.
ACTIVE_STATES = ("pending", "entering", "open", "exiting")
_metadata = sa.MetaData()
_time = sa.DateTime(timezone=True)
_loops = sa.Table(
    "trade_loops",
    _metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("broker", sa.String(64), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("timeframe", sa.String(16), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("initial_equity", sa.Double, nullable=False),
    sa.Column("equity", sa.Double, nullable=False),
    sa.Column("last_bar", _time),
    sa.Column("heartbeat", _time),
)
_intents = sa.Table(
    "trade_intents",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("loop", sa.String(128), nullable=False, index=True),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("signal_bar", _time, nullable=False),
    sa.Column("side", sa.Integer, nullable=False),
    sa.Column("close", sa.Double, nullable=False),
    sa.Column("stop", sa.Double),
    sa.Column("target", sa.Double),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("exits", sa.String(16), nullable=False, default=""),
    sa.Column("quantity", sa.Double),
    sa.Column("entry_time", _time),
    sa.Column("entry_price", sa.Double),
    sa.Column("entry_fee", sa.Double),
    sa.Column("exit_time", _time),
    sa.Column("exit_price", sa.Double),
    sa.Column("exit_fee", sa.Double),
    sa.Column("exit_reason", sa.String(16)),
    sa.Column("pnl", sa.Double),
    sa.Column("updated", _time, nullable=False),
)
_orders = sa.Table(
    "trade_orders",
    _metadata,
    sa.Column("client_id", sa.String(36), primary_key=True),
    sa.Column("intent", sa.String(32), nullable=False, index=True),
    sa.Column("loop", sa.String(128), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("quantity", sa.Double, nullable=False),
    sa.Column("price", sa.Double),
    sa.Column("stop_price", sa.Double),
    sa.Column("state", sa.String(24), nullable=False, index=True),
    sa.Column("venue_id", sa.String(128)),
    sa.Column("filled", sa.Double, nullable=False, default=0.0),
    sa.Column("average_price", sa.Double),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("created", _time, nullable=False, index=True),
    sa.Column("updated", _time, nullable=False),
)
_fills = sa.Table(
    "trade_fills",
    _metadata,
    sa.Column("fill_id", sa.String(128), primary_key=True),
    sa.Column("client_id", sa.String(36), nullable=False, index=True),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("quantity", sa.Double, nullable=False),
    sa.Column("price", sa.Double, nullable=False),
    sa.Column("fee", sa.Double, nullable=False),
    sa.Column("time", _time, nullable=False),
)
_events = sa.Table(
    "trade_events",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", _time, nullable=False),
    sa.Column("loop", sa.String(128), nullable=False, index=True),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("subject", sa.String(64), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
)
_switches = sa.Table(
    "trade_switches",
    _metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("engaged", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("time", _time, nullable=False),
)


def journal_url(settings: Settings) -> str:
    """The journal database in effect: ``trade_journal_url``, else SQLite under home."""
    if settings.trade_journal_url:
        return settings.trade_journal_url
    return f"sqlite:///{(settings.home / 'trading' / 'journal.sqlite').as_posix()}"


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: Any) -> pd.Timestamp | None:
    """A stored time as a UTC timestamp (SQLite hands back naive datetimes)."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | datetime):
        return _utc(value).isoformat()  # type: ignore[union-attr]
    return value


@dataclass(frozen=True)
class LoopRecord:
    """A loop as the journal knows it."""

    name: str
    broker: str
    symbol: str
    timeframe: str
    model: str
    initial_equity: float
    equity: float
    last_bar: pd.Timestamp | None


@dataclass(frozen=True)
class Intent:
    """One signal a loop acts on, and the trade it became."""

    id: str
    loop: str
    symbol: str
    signal_bar: pd.Timestamp
    side: int
    close: float
    stop: float
    target: float
    state: str
    reason: str = ""
    exits: str = ""
    quantity: float | None = None
    entry_time: pd.Timestamp | None = None
    entry_price: float | None = None
    entry_fee: float | None = None
    exit_time: pd.Timestamp | None = None
    exit_price: float | None = None
    exit_fee: float | None = None
    exit_reason: str | None = None
    pnl: float | None = None


@dataclass(frozen=True)
class JournalOrder:
    """An order as the journal knows it (``state`` ``sending`` = the venue's answer unknown)."""

    client_id: str
    intent: str
    loop: str
    role: str
    symbol: str
    side: str
    kind: str
    quantity: float
    price: float | None
    stop_price: float | None
    state: str
    filled: float
    average_price: float | None

    @property
    def request(self) -> OrderRequest:
        """The request this order was sent as."""
        return OrderRequest(
            self.client_id,
            self.symbol,
            self.side,  # type: ignore[arg-type]
            self.kind,  # type: ignore[arg-type]
            self.quantity,
            self.price,
            self.stop_price,
        )


def _intent(row: Mapping[Any, Any]) -> Intent:
    values = {k: row[k] for k in Intent.__dataclass_fields__}
    for key in ("signal_bar", "entry_time", "exit_time"):
        values[key] = _utc(values[key])
    for key in ("stop", "target"):
        values[key] = float("nan") if values[key] is None else values[key]
    return Intent(**values)


def _order(row: Mapping[Any, Any]) -> JournalOrder:
    return JournalOrder(**{k: row[k] for k in JournalOrder.__dataclass_fields__})


class TradeJournal:
    """The journal at ``url`` (tables created when missing).

    Examples
    --------
    >>> journal = TradeJournal("sqlite://")
    >>> journal.register_loop("demo", "paper", "BTCUSDT", "1h", "m", 1000.0).equity
    1000.0
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url)
        _metadata.create_all(self._engine)

    @classmethod
    def from_settings(cls, settings: Settings) -> TradeJournal:
        """The journal the settings name."""
        return cls(journal_url(settings))

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    @staticmethod
    def _event(conn: Connection, loop: str, what: str, subject: str, **detail: Any) -> None:
        text = json.dumps({k: _plain(v) for k, v in detail.items()}, default=str)
        conn.execute(
            _events.insert().values(time=_now(), loop=loop, kind=what, subject=subject, detail=text)
        )

    def event(self, loop: str, what: str, subject: str = "", **detail: Any) -> None:
        """Append an event of kind ``what`` (``position``, ``risk``, ``kill``, ``dry_run``...)."""
        with self._begin() as conn:
            self._event(conn, loop, what, subject, **detail)

    # -- loops ----------------------------------------------------------------------------------

    def register_loop(
        self,
        name: str,
        broker: str,
        symbol: str,
        timeframe: str,
        model: str,
        initial_equity: float,
    ) -> LoopRecord:
        """The loop ``name``, created with ``initial_equity`` the first time (a restart keeps
        its equity and last bar)."""
        with self._begin() as conn:
            found = conn.execute(sa.select(_loops).where(_loops.c.name == name)).first()
            if found is None:
                conn.execute(
                    _loops.insert().values(
                        name=name,
                        broker=broker,
                        symbol=symbol,
                        timeframe=timeframe,
                        model=model,
                        initial_equity=initial_equity,
                        equity=initial_equity,
                        heartbeat=_now(),
                    )
                )
                self._event(
                    conn,
                    name,
                    "loop",
                    "registered",
                    broker=broker,
                    symbol=symbol,
                    equity=initial_equity,
                )
            else:
                self._event(conn, name, "loop", "restarted", broker=broker)
        return self.loop(name)

    def loop(self, name: str) -> LoopRecord:
        """The loop's record.

        Raises
        ------
        NotFoundError
            No loop of that name.
        """
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_loops).where(_loops.c.name == name)).mappings().first()
        if row is None:
            raise NotFoundError(f"no trading loop named {name!r} in the journal")
        fields = {k: row[k] for k in LoopRecord.__dataclass_fields__}
        fields["last_bar"] = _utc(fields["last_bar"])
        return LoopRecord(**fields)

    def loops(self) -> list[LoopRecord]:
        """Every loop, by name."""
        with self._engine.connect() as conn:
            names = conn.execute(sa.select(_loops.c.name).order_by(_loops.c.name)).scalars()
            found = list(names)
        return [self.loop(name) for name in found]

    def bar_done(self, loop: str, bar: pd.Timestamp) -> None:
        """Record that ``bar`` of ``loop`` was handled completely."""
        with self._begin() as conn:
            conn.execute(
                _loops.update()
                .where(_loops.c.name == loop)
                .values(last_bar=bar.to_pydatetime(), heartbeat=_now())
            )

    # -- intents ------------------------------------------------------------------------------

    def add_intent(self, intent: Intent) -> None:
        """Record a new intent (written before anything is sent for it)."""
        with self._begin() as conn:
            values = {k: getattr(intent, k) for k in Intent.__dataclass_fields__}
            for key in ("signal_bar", "entry_time", "exit_time"):
                values[key] = values[key].to_pydatetime() if values[key] is not None else None
            conn.execute(_intents.insert().values(**values, updated=_now()))
            self._event(
                conn,
                intent.loop,
                "intent",
                intent.id,
                state=intent.state,
                side=intent.side,
                stop=intent.stop,
                target=intent.target,
                bar=intent.signal_bar,
            )

    def update_intent(self, intent_id: str, **changes: Any) -> Intent:
        """Change an intent's fields (its state, entry, exit); logged as an event."""
        stored = {
            k: v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for k, v in changes.items()
        }
        with self._begin() as conn:
            conn.execute(
                _intents.update().where(_intents.c.id == intent_id).values(**stored, updated=_now())
            )
            row = conn.execute(sa.select(_intents).where(_intents.c.id == intent_id)).mappings()
            intent = _intent(row.one())
            self._event(conn, intent.loop, "intent", intent_id, **changes)
        return intent

    def close_trade(self, intent_id: str, equity: float, **changes: Any) -> Intent:
        """Close an intent's trade and set its loop's realised equity, in one transaction."""
        stored = {
            k: v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for k, v in changes.items()
        }
        with self._begin() as conn:
            conn.execute(
                _intents.update()
                .where(_intents.c.id == intent_id)
                .values(**stored, state="closed", updated=_now())
            )
            intent = _intent(
                conn.execute(sa.select(_intents).where(_intents.c.id == intent_id)).mappings().one()
            )
            conn.execute(_loops.update().where(_loops.c.name == intent.loop).values(equity=equity))
            self._event(
                conn, intent.loop, "position", intent_id, state="closed", equity=equity, **changes
            )
        return intent

    def intent(self, intent_id: str) -> Intent | None:
        """One intent, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_intents).where(_intents.c.id == intent_id)).mappings()
            found = row.first()
        return _intent(found) if found is not None else None

    def intents(
        self, loop: str | None = None, states: tuple[str, ...] | None = None, limit: int = 10_000
    ) -> list[Intent]:
        """Intents, oldest signal first (of ``loop``, in ``states``, at most ``limit``)."""
        query = sa.select(_intents).order_by(_intents.c.signal_bar.desc()).limit(limit)
        if loop is not None:
            query = query.where(_intents.c.loop == loop)
        if states is not None:
            query = query.where(_intents.c.state.in_(states))
        with self._engine.connect() as conn:
            rows = [_intent(row) for row in conn.execute(query).mappings()]
        return rows[::-1]

    def active_intent(self, loop: str) -> Intent | None:
        """The loop's intent still owning an order or a position, if any."""
        found = self.intents(loop, ACTIVE_STATES, limit=1)
        return found[0] if found else None

    def realised_since(self, loop: str, since: pd.Timestamp) -> float:
        """Net P&L of the loop's trades that closed at or after ``since``."""
        query = sa.select(sa.func.coalesce(sa.func.sum(_intents.c.pnl), 0.0)).where(
            _intents.c.loop == loop,
            _intents.c.state == "closed",
            _intents.c.exit_time >= since.to_pydatetime(),
        )
        with self._engine.connect() as conn:
            return float(conn.execute(query).scalar_one())

    # -- orders and fills -----------------------------------------------------------------------

    def sending(self, loop: str, intent: str, role: str, request: OrderRequest) -> None:
        """Record an order about to be sent (state ``sending``); a known client id is left
        as it is (a retry after a restart)."""
        with self._begin() as conn:
            known = conn.execute(
                sa.select(_orders.c.state).where(_orders.c.client_id == request.client_id)
            ).first()
            if known is not None:
                if known.state == "not_sent":  # sent again after a restart: unknown again
                    conn.execute(
                        _orders.update()
                        .where(_orders.c.client_id == request.client_id)
                        .values(state="sending", updated=_now())
                    )
                    self._event(conn, loop, "order", request.client_id, state="sending")
                return
            now = _now()
            conn.execute(
                _orders.insert().values(
                    client_id=request.client_id,
                    intent=intent,
                    loop=loop,
                    role=role,
                    symbol=request.symbol,
                    side=request.side,
                    kind=request.kind,
                    quantity=request.quantity,
                    price=request.price,
                    stop_price=request.stop_price,
                    state="sending",
                    filled=0.0,
                    reason="",
                    created=now,
                    updated=now,
                )
            )
            self._event(
                conn,
                loop,
                "order",
                request.client_id,
                state="sending",
                role=role,
                side=request.side,
                kind=request.kind,
                quantity=request.quantity,
                price=request.price,
                stop_price=request.stop_price,
            )

    def order_state(self, order: Order) -> None:
        """Record the venue's answer about an order (an event only when something changed)."""
        client_id = order.request.client_id
        with self._begin() as conn:
            row = conn.execute(sa.select(_orders).where(_orders.c.client_id == client_id)).first()
            if row is None:
                return
            if (row.state, row.filled, row.average_price) == (
                order.status,
                order.filled,
                order.average_price,
            ):
                return
            conn.execute(
                _orders.update()
                .where(_orders.c.client_id == client_id)
                .values(
                    state=order.status,
                    venue_id=order.venue_id,
                    filled=order.filled,
                    average_price=order.average_price,
                    reason=order.reason,
                    updated=_now(),
                )
            )
            self._event(
                conn,
                row.loop,
                "order",
                client_id,
                state=order.status,
                filled=order.filled,
                average_price=order.average_price,
                reason=order.reason,
            )

    def order_failed(self, client_id: str, state: str, reason: str) -> None:
        """Mark an order ``rejected`` (the venue refused it) or ``not_sent`` (never reached the
        venue and not sent again)."""
        with self._begin() as conn:
            row = conn.execute(sa.select(_orders).where(_orders.c.client_id == client_id)).first()
            if row is None:
                return
            conn.execute(
                _orders.update()
                .where(_orders.c.client_id == client_id)
                .values(state=state, reason=reason, updated=_now())
            )
            self._event(conn, row.loop, "order", client_id, state=state, reason=reason)

    def orders(
        self,
        loop: str | None = None,
        intent: str | None = None,
        states: tuple[str, ...] | None = None,
        limit: int = 10_000,
    ) -> list[JournalOrder]:
        """Orders, oldest first."""
        query = sa.select(_orders).order_by(_orders.c.created.desc()).limit(limit)
        if loop is not None:
            query = query.where(_orders.c.loop == loop)
        if intent is not None:
            query = query.where(_orders.c.intent == intent)
        if states is not None:
            query = query.where(_orders.c.state.in_(states))
        with self._engine.connect() as conn:
            rows = [_order(row) for row in conn.execute(query).mappings()]
        return rows[::-1]

    def unknown_orders(self, loop: str) -> list[JournalOrder]:
        """The loop's orders whose venue answer was never recorded (state ``sending``)."""
        return self.orders(loop, states=("sending",))

    def orders_since(self, loop: str, since: datetime) -> int:
        """How many orders the loop recorded at or after the wall-clock time ``since``."""
        query = sa.select(sa.func.count()).where(_orders.c.loop == loop, _orders.c.created >= since)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def add_fill(self, fill: Fill, loop: str) -> bool:
        """Record an execution once (by its venue id); True when it was new."""
        with self._begin() as conn:
            known = conn.execute(
                sa.select(_fills.c.fill_id).where(_fills.c.fill_id == fill.fill_id)
            ).first()
            if known is not None:
                return False
            conn.execute(
                _fills.insert().values(
                    fill_id=fill.fill_id,
                    client_id=fill.client_id,
                    symbol=fill.symbol,
                    side=fill.side,
                    quantity=fill.quantity,
                    price=fill.price,
                    fee=fill.fee,
                    time=fill.time.to_pydatetime(),
                )
            )
            self._event(
                conn,
                loop,
                "fill",
                fill.client_id,
                quantity=fill.quantity,
                price=fill.price,
                fee=fill.fee,
                time=fill.time,
            )
        return True

    def fills(self, client_id: str) -> list[Fill]:
        """The recorded executions of one order."""
        query = sa.select(_fills).where(_fills.c.client_id == client_id).order_by(_fills.c.time)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Fill(
                r["client_id"],
                r["symbol"],
                r["side"],
                r["quantity"],
                r["price"],
                r["fee"],
                pd.Timestamp(r["time"], tz="UTC")
                if r["time"].tzinfo is None
                else pd.Timestamp(r["time"]),
                r["fill_id"],
            )
            for r in rows
        ]

    def events(
        self, loop: str | None = None, after: int = 0, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Events with an id above ``after``, oldest first."""
        query = sa.select(_events).where(_events.c.id > after).order_by(_events.c.id).limit(limit)
        if loop is not None:
            query = query.where(_events.c.loop == loop)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            {
                "id": r["id"],
                "time": _utc(r["time"]),
                "loop": r["loop"],
                "kind": r["kind"],
                "subject": r["subject"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]

    # -- the kill switch ------------------------------------------------------------------------

    def set_switch(self, engaged: bool, reason: str = "") -> None:
        """Engage or release the kill switch (persisted: a restarted loop sees it)."""
        with self._begin() as conn:
            values = {"engaged": engaged, "reason": reason, "time": _now()}
            done = conn.execute(
                _switches.update().where(_switches.c.name == "kill").values(**values)
            ).rowcount
            if not done:
                conn.execute(_switches.insert().values(name="kill", **values))
            self._event(conn, "*", "kill", "engaged" if engaged else "released", reason=reason)

    def switch(self) -> tuple[bool, str]:
        """(engaged, reason) of the kill switch."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_switches).where(_switches.c.name == "kill")).first()
        return (bool(row.engaged), str(row.reason)) if row is not None else (False, "")
