"""Risk limits of the live loop, and the kill switch.

Limits stop *entries* only: an exit, a cancel or a flatten is never held back by a limit.

* ``trade_max_position``: the largest entry notional (quote asset);
* ``trade_max_daily_loss``: once the loop's trades closed since the UTC midnight of the current
  bar lost this much, no entry until the next day;
* ``trade_max_orders_per_minute``: orders the loop recorded in the last 60 s of wall-clock
  time (a loop gone wild stops itself);
* the kill switch, persisted in the journal: engaged by ``trademl trade-stop`` or
  ``POST /api/v1/trading/stop``; a loop that sees it cancels its open orders, flattens its
  position and stops, and no loop enters while it is engaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from trademl.config import Settings
from trademl.errors import RiskLimitError
from trademl.trading.broker import Broker, Order, OrderRequest, Side
from trademl.trading.journal import TradeJournal


@dataclass(frozen=True)
class RiskLimits:
    """The limits an entry must pass (None: no such limit).

    Attributes
    ----------
    max_position : float or None
        Largest entry notional, quote asset.
    max_daily_loss : float or None
        Largest realised loss in one UTC day, quote asset (positive).
    max_orders_per_minute : int or None
        Most orders a loop records in 60 s.
    """

    max_position: float | None = None
    max_daily_loss: float | None = None
    max_orders_per_minute: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RiskLimits:
        """The ``trade_max_*`` settings."""
        return cls(
            settings.trade_max_position,
            settings.trade_max_daily_loss,
            settings.trade_max_orders_per_minute,
        )

    def check_entry(
        self, journal: TradeJournal, loop: str, notional: float, bar: pd.Timestamp
    ) -> None:
        """Refuse an entry of ``notional`` at ``bar`` that a limit forbids.

        Raises
        ------
        RiskLimitError
            The kill switch is engaged, or a limit would be broken; the message names it.
        """
        engaged, reason = journal.switch()
        if engaged:
            raise RiskLimitError(f"the kill switch is engaged ({reason or 'no reason given'})")
        if self.max_position is not None and notional > self.max_position:
            raise RiskLimitError(
                f"entry notional {notional:.2f} is above trade_max_position {self.max_position:g}"
            )
        if self.max_daily_loss is not None:
            midnight = bar.tz_convert("UTC").normalize()
            realised = journal.realised_since(loop, midnight)
            if realised <= -self.max_daily_loss:
                raise RiskLimitError(
                    f"loop {loop} lost {-realised:.2f} since {midnight.date()} (UTC), at or "
                    f"beyond trade_max_daily_loss {self.max_daily_loss:g}"
                )
        if self.max_orders_per_minute is not None:
            since = datetime.now(UTC) - timedelta(minutes=1)
            sent = journal.orders_since(loop, since)
            if sent >= self.max_orders_per_minute:
                raise RiskLimitError(
                    f"loop {loop} sent {sent} orders in the last minute, the most "
                    f"trade_max_orders_per_minute allows ({self.max_orders_per_minute})"
                )


@dataclass(frozen=True)
class Flattened:
    """What :func:`flatten` did: the orders cancelled and the closing orders sent."""

    cancelled: list[Order]
    closing: list[Order]


def flatten(
    broker: Broker, journal: TradeJournal, loop: str, symbol: str, client_prefix: str
) -> Flattened:
    """Cancel every open order of ``symbol`` and close its position with a market order.

    Each closing order is journalled before and after it is sent; its client id is
    ``{client_prefix}-k`` (the same on a retry, so a second flatten never doubles it).
    """
    cancelled = [broker.cancel(symbol, o.request.client_id) for o in broker.open_orders(symbol)]
    for order in cancelled:
        journal.order_state(order)
    closing: list[Order] = []
    for position in broker.positions():
        if position.symbol != symbol or position.quantity == 0.0:
            continue
        side: Side = "sell" if position.quantity > 0 else "buy"
        request = OrderRequest(f"{client_prefix}-k", symbol, side, "market", abs(position.quantity))
        journal.sending(loop, client_prefix, "flatten", request)
        order = broker.submit(request)
        journal.order_state(order)
        closing.append(order)
    journal.event(
        loop,
        "kill",
        symbol,
        cancelled=[o.request.client_id for o in cancelled],
        closing=[o.request.client_id for o in closing],
    )
    return Flattened(cancelled, closing)
