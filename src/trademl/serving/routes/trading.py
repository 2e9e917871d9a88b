"""The trade journal over HTTP: ``GET /api/v1/trading/positions``, ``/orders``, ``/journal``,
and ``POST /api/v1/trading/stop`` (the kill switch, behind the API key).

Reads need the key whenever the server has one (positions and orders are an account's own);
the kill switch always needs it. The journal is the one ``trademl trade`` writes
(``TRADEML_TRADE_JOURNAL_URL``, SQLite under home by default); a server whose journal does not
exist yet answers empty lists rather than creating one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from trademl.redact import redact_url
from trademl.serving.deps import ApiKey, ApiKeyIfConfigured, ServingState, State
from trademl.serving.errors import ApiError
from trademl.serving.routes import errors
from trademl.trading.journal import ACTIVE_STATES, JournalOrder, TradeJournal, journal_url

router = APIRouter(prefix="/api/v1/trading", tags=["trading"])

OrderState = Literal[
    "sending", "new", "partially_filled", "filled", "canceled", "rejected", "expired", "not_sent"
]
# No control characters: PostgreSQL refuses NUL in text, and nothing legitimate holds them.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
LoopName = Annotated[str | None, Query(min_length=1, max_length=128, pattern=_PRINTABLE)]
_lock = threading.Lock()


class PositionItem(BaseModel):
    """A loop's open (or opening) trade."""

    loop: str
    symbol: str
    state: str
    side: Literal["long", "short"]
    quantity: float | None
    entry_time: datetime | None
    entry_price: float | None
    stop: float | None
    target: float | None


class EventItem(BaseModel):
    """One journal event."""

    id: int
    time: datetime
    loop: str
    kind: str
    subject: str
    detail: dict[str, Any]


class Positions(BaseModel):
    """``GET /api/v1/trading/positions``."""

    positions: list[PositionItem]


class Orders(BaseModel):
    """``GET /api/v1/trading/orders``."""

    orders: list[JournalOrder]  # as journalled (``sending``: the venue's answer unknown)


class Events(BaseModel):
    """``GET /api/v1/trading/journal``."""

    events: list[EventItem]


class StopRequest(BaseModel):
    """``POST /api/v1/trading/stop``."""

    model_config = ConfigDict(strict=True, extra="forbid")
    reason: str = Field(default="", max_length=500, pattern=_PRINTABLE)
    release: bool = False


class StopResponse(BaseModel):
    """The kill switch after the request."""

    engaged: bool
    reason: str


def open_journal(state: ServingState, *, create: bool) -> TradeJournal | None:
    """The server's journal, opened once; None when it does not exist and ``create`` is
    false."""
    found = state.extras.get("trade_journal")
    if isinstance(found, TradeJournal):
        return found
    url = journal_url(state.settings)
    parsed = sa.engine.make_url(url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not create and sqlite_file and not Path(sqlite_file).exists():
        return None
    with _lock:
        found = state.extras.get("trade_journal")
        if not isinstance(found, TradeJournal):
            found = TradeJournal(url)
            state.extras["trade_journal"] = found
    return found


@contextmanager
def _reachable(state: ServingState) -> Iterator[None]:
    """A journal database that cannot be reached is a 503 naming it (its password masked);
    the driver's own message stays out of the answer."""
    try:
        yield
    except sa.exc.OperationalError:
        url = redact_url(journal_url(state.settings))
        raise ApiError(503, f"trade journal {url} cannot be reached", "Unavailable") from None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@router.get(
    "/positions",
    response_model=Positions,
    responses=errors(401, 403),
    dependencies=[ApiKeyIfConfigured],
)
def positions(state: State, loop: LoopName = None) -> dict[str, Any]:
    """Open trades of every loop (or of ``loop``), from the journal."""
    with _reachable(state):
        journal = open_journal(state, create=False)
        found = [] if journal is None else journal.intents(loop, ACTIVE_STATES[1:], limit=1000)
    return {
        "positions": [
            {
                "loop": i.loop,
                "symbol": i.symbol,
                "state": i.state,
                "side": "long" if i.side > 0 else "short",
                "quantity": i.quantity,
                "entry_time": i.entry_time,
                "entry_price": i.entry_price,
                "stop": _finite(i.stop),
                "target": _finite(i.target),
            }
            for i in found
        ]
    }


@router.get(
    "/orders", response_model=Orders, responses=errors(401, 403), dependencies=[ApiKeyIfConfigured]
)
def orders(
    state: State,
    loop: LoopName = None,
    order_state: Annotated[OrderState | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The latest ``limit`` orders, oldest first (of ``loop``, in ``state``)."""
    states = (order_state,) if order_state is not None else None
    with _reachable(state):
        journal = open_journal(state, create=False)
        found = [] if journal is None else journal.orders(loop, states=states, limit=limit)
    return {"orders": found}


@router.get(
    "/journal", response_model=Events, responses=errors(401, 403), dependencies=[ApiKeyIfConfigured]
)
def journal_events(
    state: State,
    loop: LoopName = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Journal events with an id above ``after``, oldest first (page with the last id)."""
    with _reachable(state):
        journal = open_journal(state, create=False)
        return {"events": [] if journal is None else journal.events(loop, after, limit)}


@router.post(
    "/stop", response_model=StopResponse, responses=errors(401, 403, 422), dependencies=[ApiKey]
)
def stop(body: StopRequest, state: State) -> dict[str, Any]:
    """Engage the kill switch (``release``: release it): running loops cancel their open
    orders, flatten their positions and stop at their next bar; no loop enters meanwhile."""
    with _reachable(state):
        journal = open_journal(state, create=True)
        if journal is None:  # never: create=True opens it
            raise ApiError(503, "the trade journal cannot be opened", "Unavailable")
        journal.set_switch(not body.release, body.reason)
        engaged, reason = journal.switch()
    return {"engaged": engaged, "reason": reason}
