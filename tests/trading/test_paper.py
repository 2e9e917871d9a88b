"""The paper broker's fill model (the engine's rules), its persistence and its refusals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trademl.errors import ConfigError, OrderRejectedError
from trademl.trading.broker import Broker, OcoBroker, OrderRequest
from trademl.trading.paper import PaperBroker

T0 = pd.Timestamp("2024-01-01 00:00", tz="UTC")
HOUR = pd.Timedelta(hours=1)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'paper.sqlite'}"


def _long_with_exits(broker: PaperBroker, stop: float = 95.0, target: float = 110.0) -> None:
    broker.submit(OrderRequest("e", "BTCUSDT", "buy", "market", 2.0))
    broker.submit_oco(
        OrderRequest("s", "BTCUSDT", "sell", "stop", 2.0, stop_price=stop),
        OrderRequest("t", "BTCUSDT", "sell", "limit", 2.0, price=target),
    )


def test_market_fills_at_the_next_open_with_slippage_and_fee(url: str) -> None:
    broker = PaperBroker(url, fee_bps=10, slippage_bps=5, initial_cash=1_000.0)
    assert isinstance(broker, Broker) and isinstance(broker, OcoBroker)
    order = broker.submit(OrderRequest("a", "BTCUSDT", "buy", "market", 2.0))
    assert order.status == "new"
    broker.on_bar("BTCUSDT", T0, 100.0, 101.0, 99.0, 100.5)
    filled = broker.order("BTCUSDT", "a")
    assert filled is not None and filled.status == "filled"
    assert filled.average_price == 100.0 * (1.0 + 5 / 10_000.0)
    (fill,) = broker.fills("BTCUSDT")
    assert fill.fee == 10 / 10_000.0 * 2.0 * filled.average_price
    assert fill.time == T0
    assert broker.balances()[0].free == pytest.approx(1_000.0 - 2 * 100.05 - fill.fee)
    assert broker.positions()[0].quantity == 2.0


def test_the_stop_is_taken_first_when_a_bar_touches_both(url: str) -> None:
    broker = PaperBroker(url)
    _long_with_exits(broker)
    broker.on_bar("BTCUSDT", T0, 100.0, 101.0, 99.0, 100.0)  # entry, no exit
    broker.on_bar("BTCUSDT", T0 + HOUR, 100.0, 111.0, 94.0, 100.0)  # both touched
    stop, target = broker.order("BTCUSDT", "s"), broker.order("BTCUSDT", "t")
    assert stop is not None and target is not None
    assert (stop.status, stop.average_price, target.status) == ("filled", 95.0, "canceled")
    assert broker.positions() == []


def test_target_first_takes_the_target(url: str) -> None:
    broker = PaperBroker(url, target_first=True)
    _long_with_exits(broker)
    broker.on_bar("BTCUSDT", T0, 100.0, 101.0, 99.0, 100.0)
    broker.on_bar("BTCUSDT", T0 + HOUR, 100.0, 111.0, 94.0, 100.0)
    target = broker.order("BTCUSDT", "t")
    assert target is not None and (target.status, target.average_price) == ("filled", 110.0)


def test_a_gap_through_the_stop_fills_at_the_open(url: str) -> None:
    broker = PaperBroker(url, slippage_bps=10)
    _long_with_exits(broker)
    broker.on_bar("BTCUSDT", T0, 100.0, 101.0, 99.0, 100.0)
    broker.on_bar("BTCUSDT", T0 + HOUR, 90.0, 92.0, 89.0, 91.0)
    stop = broker.order("BTCUSDT", "s")
    assert stop is not None and stop.average_price == 90.0 * (1.0 - 10 / 10_000.0)


def test_state_survives_a_restart_and_a_bar_given_twice_is_ignored(url: str) -> None:
    broker = PaperBroker(url, fee_bps=10)
    _long_with_exits(broker)
    broker.on_bar("BTCUSDT", T0, 100.0, 101.0, 99.0, 100.0)
    broker.close()
    again = PaperBroker(url, fee_bps=10)
    assert [o.request.client_id for o in again.open_orders()] == ["s", "t"]
    assert again.positions()[0].quantity == 2.0
    cash = again.balances()[0].free
    again.on_bar("BTCUSDT", T0, 100.0, 200.0, 1.0, 100.0)  # the same bar: ignored
    assert again.order("BTCUSDT", "t").status == "new"  # type: ignore[union-attr]
    assert again.balances()[0].free == cash
    # The same client id returns the first order, nothing is placed twice.
    assert again.submit(OrderRequest("e", "BTCUSDT", "buy", "market", 9.0)).filled == 2.0
    assert len(again.fills("BTCUSDT")) == 1


def test_refusals_name_what_is_wrong(url: str) -> None:
    broker = PaperBroker(url)
    with pytest.raises(OrderRejectedError, match="no BTCUSDT order with client id 'nope'"):
        broker.cancel("BTCUSDT", "nope")
    with pytest.raises(OrderRejectedError, match="a stop order and a limit order"):
        broker.submit_oco(
            OrderRequest("x", "BTCUSDT", "sell", "limit", 1.0, price=1.0),
            OrderRequest("y", "BTCUSDT", "sell", "limit", 1.0, price=2.0),
        )
    with pytest.raises(ConfigError, match="slippage_bps must lie in"):
        PaperBroker(url, slippage_bps=-1)
    with pytest.raises(ConfigError, match="closed before it was opened"):
        broker.close_bar("BTCUSDT", T0, 1.0, 1.0, 1.0)
    with pytest.raises(ConfigError, match="client_id"):
        OrderRequest("../../etc/passwd", "BTCUSDT", "buy", "market", 1.0)
    assert broker.order("ETHUSDT", "x") is None


def test_state_on_postgresql(postgres_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        for table in ("paper_orders", "paper_fills", "paper_account"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()
    broker = PaperBroker(postgres_url, fee_bps=10)
    _long_with_exits(broker)
    broker.on_bar("BTCUSDT", T0, 100.0, 101.0, 99.0, 100.0)
    broker.on_bar("BTCUSDT", T0 + HOUR, 100.0, 110.5, 99.0, 100.0)  # the target
    broker.close()
    again = PaperBroker(postgres_url, fee_bps=10)
    assert again.order("BTCUSDT", "t").status == "filled"  # type: ignore[union-attr]
    assert again.order("BTCUSDT", "s").status == "canceled"  # type: ignore[union-attr]
    assert again.positions() == [] and len(again.fills("BTCUSDT")) == 2
    assert again.balances()[0].free == pytest.approx(100_000.0 + 2 * 10.0 - 0.002 * 210.0)
    again.close()
