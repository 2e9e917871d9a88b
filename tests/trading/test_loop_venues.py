"""The live loop on the real local peers, through ``open_broker`` and settings as ``trademl
trade`` opens them: ``ccxt:binance`` against the local Binance spot server (entry, stop and
target as one OCO list, restart) and ``dex`` against an EVM JSON-RPC endpoint (entry swap, the
stop emulated on a closed bar, exit swap). Signals are a champion's prediction rows for real
BTCUSDT bars, through the server's signal rule; the venues' prices follow the same bars."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.support.binance_market import Market
from tests.support.binance_server import BinanceSpotServer, binance_spot_server
from tests.support.binance_spot import SpotExchange
from tests.support.evm_chain import BTC, USDT, Chain, compile_contracts, deploy_chain
from tests.support.evm_rpc import json_rpc_server

from trademl.config import Settings
from trademl.data.sources.files import read_candle_file
from trademl.trading.brokers import open_broker
from trademl.trading.journal import TradeJournal
from trademl.trading.live import initial_equity
from trademl.trading.loop import LoopConfig, PredictionSignals, TradingLoop, venue_step
from trademl.trading.signal import signal_params

API_KEY = "Zr4mKq8LwT2xVb6nHc0pYd3sFg7jUe1aQi5oRt9yMk2NzXl4CvBw8Eh6Gu0Jp3Sd"
API_SECRET = "Lh7TgQ2wRk9bVz4mXc1pNs6dFy3jUa8eKo5iWt0qHl2MvCx7BnZr4Gs9Jd1Pe6Yu"
HOUR = pd.Timedelta("1h")
ORDER, OCO = "/api/v3/order", "/api/v3/orderList/oco"


@pytest.fixture(scope="module")
def candles(data_dir: Path) -> pd.DataFrame:
    frame = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    return frame.loc["2024-07-24 00:00":"2024-07-28 00:00"]


def champion(bar: str, high: float, low: float) -> PredictionSignals:
    """A champion that predicts, for one bar, a high and a low ``high`` and ``low`` times
    the close, confident it goes up; flat elsewhere (no prediction row)."""
    stamp = pd.Timestamp(bar, tz="UTC")
    row = {"intraday__high_log": math.log(high), "intraday__low_log": math.log(low)}
    predictions = pd.DataFrame([{**row, "intraday__p_up": 0.7}], index=[stamp])
    return PredictionSignals(predictions, "intraday", signal_params())


def path(candle: pd.Series) -> list[Decimal]:
    """A bar's prices in trading order: open, the extreme against its close, the other, close."""
    first, second = ("low", "high") if candle["close"] >= candle["open"] else ("high", "low")
    return [Decimal(str(candle[c])) for c in ("open", first, second, "close")]


def _loop(broker: Any, settings: Settings, signals: PredictionSignals, spec: str) -> TradingLoop:
    """The loop as ``trademl trade`` builds it (journal from settings, equity from the venue),
    reconciled."""
    config = LoopConfig("venue-test", "BTCUSDT", "1h", "champion", spec, risk_per_trade=0.003)
    journal = TradeJournal.from_settings(settings)
    equity = initial_equity(broker, settings, None)
    loop = TradingLoop(broker, journal, signals, config, initial_equity=equity)
    loop.reconcile()
    return loop


# -- ccxt:binance ---------------------------------------------------------------------------------


@pytest.fixture
def binance(candles: pd.DataFrame) -> Iterator[BinanceSpotServer]:
    first = Decimal(str(candles["open"].iloc[0]))
    exchange = SpotExchange(
        [Market("BTCUSDT", "BTC", "USDT")], {"USDT": Decimal("10000")}, {"BTCUSDT": first}
    )
    with binance_spot_server(exchange, API_KEY, API_SECRET) as server:
        yield server


def test_ccxt_loop_enters_exits_by_oco_and_restarts_without_a_second_order(
    tmp_path: Path, candles: pd.DataFrame, binance: BinanceSpotServer
) -> None:
    settings = Settings(
        home=tmp_path,
        exchange_api_key=API_KEY,
        exchange_api_secret=API_SECRET,
        exchange_api_url=binance.url,
        http_timeout_s=2.0,
        http_retries=2,
    )
    signals = champion("2024-07-25 20:00", high=1.01, low=0.994)  # the target is hit next bar
    exchange = binance.exchange

    def run(loop: TradingLoop, until: str) -> None:
        start = candles.index.searchsorted(loop.last_bar, side="right") if loop.last_bar else 0
        for position in range(start, candles.index.get_loc(pd.Timestamp(until, tz="UTC")) + 1):
            for price in path(candles.iloc[position]):
                exchange.set_price("BTCUSDT", price)
            venue_step(loop, candles.iloc[max(0, position - 47) : position + 1], HOUR)

    loop = _loop(open_broker("ccxt:binance", settings), settings, signals, "ccxt:binance")
    assert loop.equity == 10_000.0  # the venue's USDT
    run(loop, "2024-07-25 20:00")  # the signal bar: entered at its close, OCO resting
    (intent,) = loop.journal.intents("venue-test")
    assert (intent.state, intent.exits) == ("open", "oco")
    assert len(binance.calls("POST", ORDER)) == 1 and len(binance.calls("POST", OCO)) == 1
    stop_id, target_id = f"{intent.id}-s", f"{intent.id}-t"
    assert {o.client_id for o in exchange.orders.values() if o.is_open} == {stop_id, target_id}

    # A restart while the position is open: reconciled, nothing sent again.
    loop.journal.close()
    loop = _loop(open_broker("ccxt:binance", settings), settings, signals, "ccxt:binance")
    assert loop._active is not None and loop._active.id == intent.id
    run(loop, "2024-07-26 02:00")  # the next bar reaches the target; then flat bars
    assert len(binance.calls("POST", ORDER)) == 1 and len(binance.calls("POST", OCO)) == 1

    (intent,) = loop.journal.intents("venue-test")
    assert (intent.state, intent.exit_reason) == ("closed", "target")
    held = {o.client_id: o for o in exchange.orders.values()}
    journalled = {o.client_id: o for o in loop.journal.orders("venue-test")}
    assert set(journalled) == set(held) == {f"{intent.id}-e", stop_id, target_id}
    states = {"FILLED": "filled", "EXPIRED": "expired", "CANCELED": "canceled"}
    for client_id, order in held.items():
        assert journalled[client_id].state == states[order.status]
        assert journalled[client_id].filled == pytest.approx(float(order.executed))
    assert held[target_id].status == "FILLED" and held[stop_id].status == "EXPIRED"
    # Fills as the venue holds them, and the trade's P&L as the account's money moved.
    for client_id in (f"{intent.id}-e", target_id):
        trades = [t for t in exchange.trades if t["orderId"] == held[client_id].order_id]
        fills = loop.journal.fills(client_id)
        assert [(f.quantity, f.price) for f in fills] == [
            (float(t["qty"]), float(t["price"])) for t in trades
        ]
    entry = held[f"{intent.id}-e"]
    assert intent.quantity == pytest.approx(float(entry.executed))
    assert intent.entry_price == pytest.approx(float(entry.quote / entry.executed))
    assert intent.exit_price == pytest.approx(float(held[target_id].price))
    usdt = float(exchange.free["USDT"] + exchange.held.get("USDT", Decimal(0)))
    btc = float(exchange.free.get("BTC", Decimal(0)) + exchange.held.get("BTC", Decimal(0)))
    # The entry's fee was paid in BTC, counted at the entry price; what the account lost by it
    # is its worth at the exit price (the dust under the lot step stays held as BTC).
    (entry_trade,) = [t for t in exchange.trades if t["orderId"] == entry.order_id]
    assert entry_trade["commissionAsset"] == "BTC"
    fee_btc = float(entry_trade["commission"])
    moved = fee_btc * (intent.exit_price - intent.entry_price)  # type: ignore[operator]
    assert btc * intent.exit_price + usdt == pytest.approx(loop.equity - moved, abs=1e-6)  # type: ignore[operator]
    assert loop.journal.loop("venue-test").equity == pytest.approx(10_000.0 + intent.pnl)  # type: ignore[operator]
    events = [e["kind"] for e in loop.journal.events("venue-test")]
    assert "position" in events

    # Restarting once more after the trade changes nothing at the venue.
    loop.journal.close()
    loop = _loop(open_broker("ccxt:binance", settings), settings, signals, "ccxt:binance")
    run(loop, "2024-07-26 04:00")
    assert len(binance.calls("POST", ORDER)) == 1 and len(binance.calls("POST", OCO)) == 1
    assert loop.journal.intents("venue-test", ("open", "pending", "entering")) == []
    loop.journal.close()


def test_exits_the_venue_refuses_are_emulated_on_closed_bars(
    tmp_path: Path, candles: pd.DataFrame, binance: BinanceSpotServer
) -> None:
    """The price jumped past the target before the entry filled: Binance refuses the OCO's
    limit maker (it would take at once), and the loop watches both levels itself."""
    settings = Settings(
        home=tmp_path,
        exchange_api_key=API_KEY,
        exchange_api_secret=API_SECRET,
        exchange_api_url=binance.url,
    )
    signals = champion("2024-07-25 20:00", high=1.01, low=0.994)
    exchange = binance.exchange
    loop = _loop(open_broker("ccxt:binance", settings), settings, signals, "ccxt:binance")
    start = candles.index.get_loc(pd.Timestamp("2024-07-25 18:00", tz="UTC"))
    for position in range(start, start + 4):
        close = Decimal(str(candles["close"].iloc[position]))
        jumped = close * Decimal("1.02") if position == start + 2 else close
        exchange.set_price("BTCUSDT", jumped.quantize(Decimal("0.01")))
        venue_step(loop, candles.iloc[max(0, position - 47) : position + 1], HOUR)
        if position == start + 2:
            (intent,) = loop.journal.intents("venue-test")
            assert (intent.state, intent.exits) == ("open", "emulated")
            states = {o.role: o.state for o in loop.journal.orders("venue-test")}
            assert states == {"entry": "filled", "stop": "rejected", "target": "rejected"}
    (intent,) = loop.journal.intents("venue-test")
    assert (intent.state, intent.exit_reason) == ("closed", "target")  # the next bar's high
    exit_order = exchange.find(
        {"symbol": "BTCUSDT", "origClientOrderId": f"{intent.id}-x"}, (0, "")
    )
    assert (exit_order.type, exit_order.status) == ("MARKET", "FILLED")
    assert exchange.free.get("BTC", Decimal(0)) < Decimal("0.00001")  # flat but for dust
    loop.journal.close()


# -- dex -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def market(candles: pd.DataFrame) -> Iterator[tuple[Chain, str]]:
    """A chain whose pool starts at the first bar's open, served over HTTP JSON-RPC."""
    price = float(candles["open"].iloc[0])
    chain = deploy_chain(compile_contracts(), 10 * BTC, round(10 * price * USDT))
    with json_rpc_server(chain.w3) as url:
        yield chain, url


def move_pool(chain: Chain, price: float) -> None:
    """Trade the pool (as its admin) to about ``price`` USDT a BTC: the market moving."""
    reserve_btc, reserve_usdt = chain.reserves()
    wanted_usdt = math.isqrt(int(reserve_btc * reserve_usdt * price * USDT / BTC))
    deadline = chain.now + 600
    if wanted_usdt > reserve_usdt:
        amount, route = wanted_usdt - reserve_usdt, [chain.usdt.address, chain.btc.address]
    else:
        amount = round((reserve_usdt - wanted_usdt) / reserve_usdt * reserve_btc)
        route = [chain.btc.address, chain.usdt.address]
    if amount > 0:
        swap = chain.router.functions.swapExactTokensForTokens(
            amount, 0, route, chain.admin, deadline
        )
        swap.transact({"from": chain.admin})


def test_dex_loop_swaps_in_and_out_on_an_emulated_stop(
    tmp_path: Path, candles: pd.DataFrame, market: tuple[Chain, str]
) -> None:
    chain, url = market
    account = chain.fund(usdt=10_000 * USDT)
    settings = Settings(
        home=tmp_path,
        dex_rpc_url=url,
        dex_private_key=account.key.hex(),
        dex_router=chain.router.address,
        dex_markets={"BTCUSDT": (chain.btc.address, chain.usdt.address)},
    )
    signals = champion("2024-07-27 18:00", high=1.01, low=0.994)  # the stop is hit next bar

    loop = _loop(open_broker("dex", settings), settings, signals, "dex")
    assert loop.equity == 10_000.0
    first, last = (
        candles.index.get_loc(pd.Timestamp(t, tz="UTC"))
        for t in ("2024-07-27 15:00", "2024-07-27 21:00")
    )
    for position in range(first, last + 1):
        move_pool(chain, float(candles["close"].iloc[position]))
        venue_step(loop, candles.iloc[max(0, position - 47) : position + 1], HOUR)

    (intent,) = loop.journal.intents("venue-test")
    assert (intent.state, intent.exits, intent.exit_reason) == ("closed", "emulated", "stop")
    assert intent.exit_time is not None and intent.entry_time is not None
    orders = {o.role: o for o in loop.journal.orders("venue-test")}
    assert set(orders) == {"entry", "stop"}
    assert orders["stop"].kind == "market" and orders["stop"].client_id == f"{intent.id}-x"
    assert all(o.state == "filled" for o in orders.values())
    # The chain holds what the journal says: the BTC bought was sold, the USDT moved by the fills.
    btc_units, usdt_units = chain.holdings(account.address)
    assert btc_units == 0
    entry_fills = loop.journal.fills(f"{intent.id}-e")
    exit_fills = loop.journal.fills(f"{intent.id}-x")
    assert [f.quantity for f in entry_fills] == [pytest.approx(intent.quantity)]
    assert [f.quantity for f in exit_fills] == [pytest.approx(intent.quantity)]
    paid = entry_fills[0].quantity * entry_fills[0].price + entry_fills[0].fee
    got = exit_fills[0].quantity * exit_fills[0].price - exit_fills[0].fee
    assert usdt_units / USDT == pytest.approx(10_000.0 - paid + got, abs=1e-5)
    assert loop.equity == pytest.approx(usdt_units / USDT, abs=1e-5)
    assert loop.journal.loop("venue-test").equity == pytest.approx(10_000.0 + intent.pnl)  # type: ignore[operator]
    loop.journal.close()
