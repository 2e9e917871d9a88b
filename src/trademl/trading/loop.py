"""The live loop: on every closed bar, the champion's signal through the server's own signal
function, sized by risk, entered with its stop and target, tracked and exited, every step in
the trade journal.

The loop follows the backtest engine's rules (:mod:`trademl.backtest.engine`):

* a signal at the close of bar ``t`` (taken only when flat) is entered at the open of the next
  bar, and skipped when that open has already gapped to or beyond its stop or target;
* the quantity is ``risk_per_trade · equity / |entry − stop|`` with ``entry`` the open slipped
  by the expected ``slippage_bps`` and ``equity`` the realised equity (the loop's starting
  equity plus the P&L of its closed trades), the engine's formula;
* the stop and target are placed at the venue once the entry filled: as one-cancels-the-other
  where the venue has it (:class:`~trademl.trading.broker.OcoBroker`), a native stop and an
  emulated target where it has stop orders, else both emulated on closed bars (a market exit
  once a bar's range touched a level, the stop first when both were).

Every order is journalled as ``sending`` before it goes out and updated after; on start,
:meth:`TradingLoop.reconcile` asks the venue about each order left ``sending`` by its client id
(deterministic: the same intent always gets the same ids), so a killed loop neither loses nor
doubles an order.

The paper broker is driven by the same closed bars (:func:`paper_step`), so replaying stored
bars through the loop reproduces the backtest trade for trade (tested in
``tests/trading/test_parity.py``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from loguru import logger

from trademl.errors import OrderRejectedError, RiskLimitError, VenueUnavailableError
from trademl.trading.broker import Broker, OcoBroker, Order, OrderRequest, Side
from trademl.trading.journal import ACTIVE_STATES, Intent, JournalOrder, TradeJournal
from trademl.trading.paper import PaperBroker
from trademl.trading.risk import RiskLimits, flatten
from trademl.trading.signal import BarSignal, bar_signal

#: Longest wall-clock time between two records of the last bar handled.
CHECKPOINT_S = 30.0
#: Longest wall-clock time between two looks at the kill switch (a replay runs many bars a
#: second; live, every bar looks).
SWITCH_CHECK_S = 1.0
if TYPE_CHECKING:  # the models import scikit-learn: seconds a replay does not need
    from trademl.pipeline import PipelineModel

_DONE_EMPTY = ("rejected", "canceled", "expired", "not_sent")


class SignalSource(Protocol):
    """The signal at the close of the last of ``candles``."""

    def __call__(self, candles: pd.DataFrame) -> BarSignal:
        """The signal of the last candle (the bar that just closed)."""
        ...


@dataclass(frozen=True)
class PipelineSignals:
    """Signals of a pipeline model (the registry's champion): its last-bar prediction, the one
    the server computes, through :func:`~trademl.trading.signal.bar_signal`."""

    pipeline: PipelineModel
    horizon: str
    params: dict[str, Any]

    def __call__(self, candles: pd.DataFrame) -> BarSignal:
        """The signal of the last candle, from its ``window_bars`` last candles."""
        last = self.pipeline.predict_last(candles)
        return bar_signal(last.values, self.horizon, last.timestamp, last.close, self.params)


class PredictionSignals:
    """Signals of predictions made beforehand (a replay): the row of the last candle's
    timestamp, through :func:`~trademl.trading.signal.bar_signal`; a bar without one is flat.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Prediction columns by bar timestamp.
    horizon : str
        The horizon traded.
    params : dict
        The rule's parameters.
    """

    def __init__(self, predictions: pd.DataFrame, horizon: str, params: dict[str, Any]) -> None:
        self.horizon = horizon
        self.params = params
        columns = [f"{horizon}__{name}" for name in ("high_log", "low_log", "p_up")]
        values = predictions.reindex(columns=columns).to_numpy(dtype=np.float64)
        self._columns = columns
        self._rows = dict(zip(predictions.index, values.tolist(), strict=True))

    def __call__(self, candles: pd.DataFrame) -> BarSignal:
        """The signal of the last candle, from its prediction row."""
        stamp = candles.index[-1]
        row = self._rows.get(stamp)
        values = dict(zip(self._columns, row or [np.nan] * 3, strict=True))
        return bar_signal(
            values, self.horizon, stamp, float(candles["close"].iloc[-1]), self.params
        )


@dataclass(frozen=True)
class LoopConfig:
    """What a loop trades and how.

    Attributes
    ----------
    name : str
        The loop's name in the journal (its orders' client ids derive from it).
    symbol, timeframe : str
        The market and its bars.
    model : str
        What makes the signals (a registered model name).
    broker : str
        The broker spec (``paper``, ``ccxt:<exchange>``, ``dex``).
    risk_per_trade : float
        Equity fraction lost at the stop, in (0, 1].
    fee_bps, slippage_bps : float
        Expected costs (the slippage sizes the entry, as the engine does).
    dry_run : bool
        Journal the orders it would send, send none.
    limits : RiskLimits
        Entry limits.
    """

    name: str
    symbol: str
    timeframe: str
    model: str
    broker: str
    risk_per_trade: float = 0.01
    fee_bps: float = 0.0
    slippage_bps: float = 0.0
    dry_run: bool = False
    limits: RiskLimits = field(default_factory=RiskLimits)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


class TradingLoop:
    """One symbol traded on one broker from one signal source.

    Parameters
    ----------
    broker : Broker
    journal : TradeJournal
    signals : callable
        A :class:`SignalSource`.
    config : LoopConfig
    initial_equity : float
        The loop's equity the first time it runs (a restart keeps the journal's).
    """

    def __init__(
        self,
        broker: Broker,
        journal: TradeJournal,
        signals: SignalSource | Callable[[pd.DataFrame], BarSignal],
        config: LoopConfig,
        *,
        initial_equity: float,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.signals = signals
        self.config = config
        record = journal.register_loop(
            config.name,
            config.broker,
            config.symbol,
            config.timeframe,
            config.model,
            initial_equity,
        )
        self.equity = record.equity
        self.last_bar = record.last_bar
        self.stopped = False
        # The loop is the only writer of its intents: the active one is kept in memory.
        self._active = journal.active_intent(config.name)
        self._wrote = False
        self._checkpoint = -math.inf
        self._recorded = record.last_bar
        self._switch_checked = -math.inf
        # The active intent's orders as journalled (None: read them again).
        self._orders: tuple[str, list[JournalOrder]] | None = None
        self._prefix = hashlib.sha256(config.name.encode()).hexdigest()[:8]
        self._slip_rate = config.slippage_bps / 10_000.0

    # -- ids ----------------------------------------------------------------------------------

    def intent_id(self, bar: pd.Timestamp) -> str:
        """The intent id of a signal at ``bar``: the loop's hash and the bar's epoch second."""
        return f"{self._prefix}-{_base36(int(bar.timestamp()))}"

    def _update(self, intent_id: str, **changes: Any) -> Intent:
        """Change an intent in the journal and in memory."""
        intent = self.journal.update_intent(intent_id, **changes)
        self._active = intent if intent.state in ACTIVE_STATES else None
        self._wrote = True
        return intent

    # -- reconciliation -----------------------------------------------------------------------

    def reconcile(self) -> list[JournalOrder]:
        """Ask the venue, by client id, about every order the journal left ``sending``: a
        found order's state is recorded; one the venue never received is marked ``not_sent``
        (an entry whose bar is still current is sent again by the next open, under the same
        id). Returns the orders that were unknown."""
        unknown = self.journal.unknown_orders(self.config.name)
        for order in unknown:
            found = self.broker.order(order.symbol, order.client_id)
            if found is not None:
                self.journal.order_state(found)
                continue
            self.journal.order_failed(order.client_id, "not_sent", "the venue never received it")
            intent = self.journal.intent(order.intent)
            if intent is not None and order.role == "entry" and intent.state == "entering":
                self._update(intent.id, state="pending")
        if unknown:
            logger.info("reconciled {} order(s) of loop {}", len(unknown), self.config.name)
        self._active = self.journal.active_intent(self.config.name)
        if self._active is not None and self._active.state != "pending":
            self._sync(self._active)
        return unknown

    # -- one bar --------------------------------------------------------------------------------

    def on_bar_open(self, bar: pd.Timestamp, open_price: float) -> None:
        """A bar opened at ``open_price``: enter the signal of the bar before it."""
        if self.stopped:
            return
        intent = self._active
        if intent is None or intent.state != "pending":
            return
        if self.last_bar is None or intent.signal_bar != self.last_bar:
            self._update(intent.id, state="abandoned", reason="its bar has passed")
            return
        self._enter(intent, bar, float(open_price))

    def on_bar_close(self, candles: pd.DataFrame) -> None:
        """The last of ``candles`` closed: track the position, exit where emulated, take the
        signal of this close when flat, and mark the bar handled."""
        bar = pd.Timestamp(candles.index[-1])
        if self.stopped:
            return
        if time.monotonic() - self._switch_checked >= SWITCH_CHECK_S:
            self._switch_checked = time.monotonic()
            engaged, reason = self.journal.switch()
            if engaged:
                self.kill(bar, reason)
                return
        intent = self._active
        if intent is not None and intent.state != "pending":
            intent = self._sync(intent, settle=True)
            if intent is not None and intent.state == "open":
                intent = self._emulated_exit(intent, candles)
        if intent is None:
            signal = self.signals(candles)
            if signal.side != 0:
                self._active = Intent(
                    self.intent_id(bar),
                    self.config.name,
                    self.config.symbol,
                    bar,
                    signal.side,
                    signal.close,
                    signal.stop,
                    signal.target,
                    "pending",
                )
                self.journal.add_intent(self._active)
                self._wrote = True
        self.last_bar = bar
        # A bar that changed nothing is recorded at most every CHECKPOINT_S: handling it again
        # after a restart changes nothing either (the paper venue ignores a bar it saw, signals
        # and ids are deterministic).
        if self._wrote or time.monotonic() - self._checkpoint >= CHECKPOINT_S:
            self.flush()

    def flush(self) -> None:
        """Record the last bar handled in the journal (a loop ending calls it)."""
        if self.last_bar is not None and self.last_bar != self._recorded:
            self.journal.bar_done(self.config.name, self.last_bar)
            self._recorded = self.last_bar
        self._wrote = False
        self._checkpoint = time.monotonic()

    def kill(self, bar: pd.Timestamp, reason: str = "") -> None:
        """Cancel the loop's open orders, flatten its position, stop."""
        prefix = f"{self._prefix}-{_base36(int(bar.timestamp()))}"
        done = flatten(self.broker, self.journal, self.config.name, self.config.symbol, prefix)
        if self._active is not None:
            self._update(self._active.id, state="killed", reason=reason or "kill switch")
        self.last_bar = bar
        self.flush()
        logger.warning(
            "loop {} stopped by the kill switch: {} order(s) cancelled, {} closing",
            self.config.name,
            len(done.cancelled),
            len(done.closing),
        )
        self.stopped = True

    # -- entry -----------------------------------------------------------------------------------

    def _enter(self, intent: Intent, bar: pd.Timestamp, open_price: float) -> None:
        side = float(intent.side)
        stop, target = intent.stop, intent.target
        if side > 0:
            gapped = open_price <= stop or open_price >= target
        else:
            gapped = open_price >= stop or open_price <= target
        if gapped or self.equity <= 0.0:
            why = "the open gapped through a level" if gapped else "equity is not positive"
            self._update(intent.id, state="skipped", reason=why)
            return
        # The engine's sizing, operand for operand.
        entry = open_price * (1.0 + side * self._slip_rate)
        if math.isnan(stop):
            quantity = self.equity / entry
        else:
            quantity = self.config.risk_per_trade * self.equity / abs(entry - stop)
        try:
            self.config.limits.check_entry(self.journal, self.config.name, quantity * entry, bar)
        except RiskLimitError as error:
            self._update(intent.id, state="refused", reason=str(error))
            logger.warning("entry refused: {}", error)
            return
        request = OrderRequest(
            f"{intent.id}-e", self.config.symbol, "buy" if side > 0 else "sell", "market", quantity
        )
        if self.config.dry_run:
            self.journal.event(
                self.config.name,
                "dry_run",
                request.client_id,
                side=request.side,
                quantity=quantity,
                stop=stop,
                target=target,
            )
            self._update(intent.id, state="skipped", reason="dry run")
            logger.info(
                "dry run: would {} {:.8g} {} at market", request.side, quantity, request.symbol
            )
            return
        intent = self._update(intent.id, state="entering", quantity=quantity)
        self._send(intent, "entry", request)
        self._sync(intent)

    def _send(
        self, intent: Intent, role: str, request: OrderRequest, *, raise_rejection: bool = False
    ) -> Order | None:
        """Journal, send, journal: the venue's answer, or None when refused (raised again
        with ``raise_rejection``) or unknown."""
        self._orders = None
        self.journal.sending(self.config.name, intent.id, role, request)
        try:
            order = self.broker.submit(request)
        except OrderRejectedError as error:
            self.journal.order_failed(request.client_id, "rejected", str(error))
            logger.warning("order {} rejected: {}", request.client_id, error)
            if raise_rejection:
                raise
            return None
        except VenueUnavailableError as error:
            logger.warning(
                "order {} state unknown, left to reconcile: {}", request.client_id, error
            )
            return None
        self.journal.order_state(order)
        return order

    # -- tracking ------------------------------------------------------------------------------

    def _journalled(self, intent: Intent) -> list[JournalOrder]:
        """The intent's orders as journalled (kept until an order is written)."""
        if self._orders is None or self._orders[0] != intent.id:
            self._orders = (intent.id, self.journal.orders(intent=intent.id))
        return self._orders[1]

    def _refresh(self, intent: Intent) -> list[JournalOrder]:
        """The intent's orders, open ones updated from the venue."""
        orders = self._journalled(intent)
        changed = False
        for order in orders:
            if order.state in ("new", "partially_filled"):
                found = self.broker.order(order.symbol, order.client_id)
                if found is not None and (found.status, found.filled) != (
                    order.state,
                    order.filled,
                ):
                    self.journal.order_state(found)
                    changed = self._wrote = True
        if changed:
            self._orders = None
            return self._journalled(intent)
        return orders

    def _fills(self, order: JournalOrder, since: pd.Timestamp) -> tuple[pd.Timestamp, float]:
        """(time of the first fill, total fee) of a filled order, journalled."""
        found = self.broker.fills(order.symbol, since)
        fills = [f for f in found if f.client_id == order.client_id]
        for fill in fills:
            self.journal.add_fill(fill, self.config.name)
        if not fills:  # a venue slow to list its fills: the order's own numbers
            logger.warning("order {} is filled but the venue lists no fill yet", order.client_id)
            return pd.Timestamp.now(tz="UTC"), 0.0
        return fills[0].time, math.fsum(f.fee for f in fills)

    def _sync(self, intent: Intent, *, settle: bool = False) -> Intent | None:
        """Bring ``intent`` up to date with its orders; None once it is no longer active.
        With ``settle`` (a bar has closed since), an entry still open is not chased: its
        remainder is cancelled and what filled is the position."""
        orders = self._refresh(intent)
        entry = next((o for o in orders if o.role == "entry"), None)
        if (
            settle
            and intent.state == "entering"
            and entry is not None
            and entry.state
            in (
                "new",
                "partially_filled",
            )
        ):
            self.journal.order_state(self.broker.cancel(entry.symbol, entry.client_id))
            self._orders = None
            orders = self._refresh(intent)
            entry = next((o for o in orders if o.role == "entry"), None)
        if intent.state == "entering" and entry is not None:
            if entry.state == "filled" or (entry.state in _DONE_EMPTY and entry.filled > 0.0):
                time, fee = self._fills(entry, intent.signal_bar)
                intent = self._update(
                    intent.id,
                    state="open",
                    quantity=entry.filled,
                    entry_time=time,
                    entry_price=entry.average_price,
                    entry_fee=fee,
                )
                self.journal.event(
                    self.config.name,
                    "position",
                    intent.id,
                    quantity=intent.side * entry.filled,
                    price=entry.average_price,
                )
                self._place_exits(intent)
                orders = self._refresh(intent)
            elif entry.state in _DONE_EMPTY and entry.filled == 0.0:
                self._update(intent.id, state="skipped", reason=entry.state)
                return None
        if intent.state in ("open", "exiting"):
            exits = [o for o in orders if o.role in ("stop", "target") and o.state == "filled"]
            if exits:
                self._close(intent, exits[0], orders)
                return None
            placed = [o for o in orders if o.role != "entry" and o.state != "not_sent"]
            if intent.state == "open" and intent.exits != "emulated" and not placed:
                # A crash before the exits reached the venue: place them (the same ids).
                self._place_exits(intent)
                intent = self.journal.intent(intent.id) or intent
            return intent
        return intent if intent.state in ("pending", "entering") else None

    def _exit_quantity(self, intent: Intent) -> float:
        """The position's quantity, but no more than the venue holds: a venue that takes its
        fee in the asset bought (Binance spot without BNB) holds less than the entry filled,
        and refuses an exit of the whole fill."""
        quantity = float(intent.quantity or 0.0)
        held = math.fsum(
            abs(p.quantity) for p in self.broker.positions() if p.symbol == self.config.symbol
        )
        return min(quantity, held) if held > 0.0 else quantity

    def _place_exits(self, intent: Intent) -> None:
        quantity = self._exit_quantity(intent)
        side: Side = "sell" if intent.side > 0 else "buy"
        symbol, caps = self.config.symbol, self.broker.capabilities
        self._orders = None
        stop = OrderRequest(
            f"{intent.id}-s", symbol, side, "stop", quantity, stop_price=intent.stop
        )
        target = OrderRequest(
            f"{intent.id}-t", symbol, side, "limit", quantity, price=intent.target
        )
        if caps.oco and isinstance(self.broker, OcoBroker):
            for role, request in (("stop", stop), ("target", target)):
                self.journal.sending(self.config.name, intent.id, role, request)
            exits = "oco"
            try:
                placed: tuple[Order, ...] = self.broker.submit_oco(stop, target)
            except OrderRejectedError as error:
                for request in (stop, target):
                    self.journal.order_failed(request.client_id, "rejected", str(error))
                placed, exits = (), self._refused_exits(intent, error)
            except VenueUnavailableError:
                placed = ()
            for order in placed:
                self.journal.order_state(order)
            self._update(intent.id, exits=exits)
        elif caps.stop_orders:
            try:
                self._send(intent, "stop", stop, raise_rejection=True)
                exits = "stop"
            except OrderRejectedError as error:
                exits = self._refused_exits(intent, error)
            self._update(intent.id, exits=exits)
        else:
            self._update(intent.id, exits="emulated")

    def _refused_exits(self, intent: Intent, error: OrderRejectedError) -> str:
        """A position whose exits the venue refused is not left unprotected: both levels are
        watched on closed bars instead."""
        logger.warning(
            "the venue refused the exits of {}; stop and target emulated: {}", intent.id, error
        )
        return "emulated"

    def _emulated_exit(self, intent: Intent, candles: pd.DataFrame) -> Intent | None:
        """Exit at market once the closed bar touched a level the venue does not hold."""
        if intent.exits not in ("stop", "emulated"):
            return intent
        high, low = (float(candles[c].to_numpy()[-1]) for c in ("high", "low"))
        long = intent.side > 0
        stop_hit = (low <= intent.stop) if long else (high >= intent.stop)
        target_hit = (high >= intent.target) if long else (low <= intent.target)
        if intent.exits == "stop":
            stop_hit = False  # the venue holds the stop
        if not (stop_hit or target_hit):
            return intent
        role = "stop" if stop_hit else "target"
        self._orders = None
        for order in self.journal.orders(intent=intent.id, states=("new", "partially_filled")):
            self.journal.order_state(self.broker.cancel(order.symbol, order.client_id))
        request = OrderRequest(
            f"{intent.id}-x",
            self.config.symbol,
            "sell" if long else "buy",
            "market",
            self._exit_quantity(intent),
        )
        intent = self._update(intent.id, state="exiting")
        self._send(intent, role, request)
        return self._sync(intent)

    def _close(self, intent: Intent, exit_order: JournalOrder, orders: list[JournalOrder]) -> None:
        for order in orders:  # a venue without OCO keeps the other exit open: cancel it
            if order.client_id != exit_order.client_id and order.state in (
                "new",
                "partially_filled",
            ):
                self.journal.order_state(self.broker.cancel(order.symbol, order.client_id))
        time, exit_fee = self._fills(exit_order, intent.signal_bar)
        side, quantity = float(intent.side), float(intent.quantity or 0.0)
        entry_price, exit_price = (
            float(intent.entry_price or 0.0),
            float(exit_order.average_price or 0.0),
        )
        # The engine's P&L arithmetic, so the equity that sizes the next trade is its own.
        gross = side * quantity * (exit_price - entry_price)
        fees = float(intent.entry_fee or 0.0) + exit_fee
        self.equity += gross - fees
        self._active, self._wrote, self._orders = None, True, None
        self.journal.close_trade(
            intent.id,
            self.equity,
            exit_time=time,
            exit_price=exit_price,
            exit_fee=exit_fee,
            exit_reason=exit_order.role,
            pnl=gross - fees,
        )


def paper_step(loop: TradingLoop, broker: PaperBroker, candles: pd.DataFrame) -> None:
    """Drive ``broker`` and ``loop`` through the last of ``candles``, a closed bar: the bar
    opens (waiting orders fill, the loop enters), its range runs (stops and targets fill), it
    closes (the loop tracks and takes the next signal)."""
    prices = tuple(float(candles[c].to_numpy()[-1]) for c in ("open", "high", "low", "close"))
    _paper_bar(loop, broker, candles, *prices)


def venue_step(loop: TradingLoop, candles: pd.DataFrame, bar_delta: pd.Timedelta) -> None:
    """Drive ``loop`` through the last of ``candles``, a closed bar, on a venue that runs on
    its own clock: the bar closes (the loop tracks and takes the next signal), then the next
    bar opens, its open taken as this close (a real venue fills at its price of the moment)."""
    loop.on_bar_close(candles)
    bar = pd.Timestamp(candles.index[-1])
    loop.on_bar_open(bar + bar_delta, float(candles["close"].to_numpy()[-1]))


def _paper_bar(
    loop: TradingLoop,
    broker: PaperBroker,
    candles: pd.DataFrame,
    open_: float,
    high: float,
    low: float,
    close: float,
) -> None:
    bar = pd.Timestamp(candles.index[-1])
    symbol = loop.config.symbol
    broker.open_bar(symbol, bar, open_)
    loop.on_bar_open(bar, open_)
    broker.close_bar(symbol, bar, high, low, close)
    loop.on_bar_close(candles)


def replay(loop: TradingLoop, broker: PaperBroker, candles: pd.DataFrame) -> int:
    """Replay ``candles`` bar by bar through ``loop`` on the paper ``broker``, resuming after
    the loop's last handled bar; returns the bars stepped."""
    start = 0
    if loop.last_bar is not None:
        start = int(candles.index.searchsorted(loop.last_bar, side="right"))
    prices = [candles[c].to_numpy(dtype=float).tolist() for c in ("open", "high", "low", "close")]
    stepped = 0
    for position in range(start, len(candles)):
        if loop.stopped:
            break
        bar_prices = (
            prices[0][position],
            prices[1][position],
            prices[2][position],
            prices[3][position],
        )
        _paper_bar(loop, broker, candles.iloc[: position + 1], *bar_prices)
        stepped += 1
    loop.flush()
    return stepped
