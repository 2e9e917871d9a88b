"""The loop's risk limits, kill switch, dry run and emulated exits, on real BTCUSDT bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from trademl.data.sources.files import read_candle_file
from trademl.errors import ConfigError, RiskLimitError
from trademl.trading.broker import Capabilities, OcoBroker
from trademl.trading.brokers import check_spec, open_broker
from trademl.trading.journal import TradeJournal
from trademl.trading.loop import LoopConfig, TradingLoop, replay
from trademl.trading.paper import PaperBroker
from trademl.trading.risk import RiskLimits
from trademl.trading.signal import BarSignal


@pytest.fixture(scope="module")
def candles(data_dir: Path) -> pd.DataFrame:
    return read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-120:]


def every_tenth_bar_long(window: pd.DataFrame) -> BarSignal:
    """A long with a 1% stop and target on every tenth bar."""
    stamp, close = window.index[-1], float(window["close"].iloc[-1])
    side = 1 if len(window) % 10 == 0 else 0
    return BarSignal(stamp, close, side, close * 0.99, close * 1.01, "intraday")


def _loop(tmp_path: Path, broker: Any = None, **config: Any) -> tuple[TradingLoop, PaperBroker]:
    paper = PaperBroker(f"sqlite:///{tmp_path / 'paper.sqlite'}", fee_bps=10)
    journal = TradeJournal(f"sqlite:///{tmp_path / 'journal.sqlite'}")
    settings = LoopConfig("t", "BTCUSDT", "1h", "test", "paper", fee_bps=10, **config)
    loop = TradingLoop(
        broker or paper, journal, every_tenth_bar_long, settings, initial_equity=10_000.0
    )
    return loop, paper


def test_trades_close_and_equity_follows_their_pnl(tmp_path: Path, candles: pd.DataFrame) -> None:
    loop, paper = _loop(tmp_path)
    replay(loop, paper, candles)
    closed = loop.journal.intents("t", ("closed",))
    assert len(closed) >= 5
    assert {i.exit_reason for i in closed} <= {"stop", "target"}
    assert loop.journal.loop("t").equity == pytest.approx(
        10_000.0 + sum(i.pnl or 0 for i in closed)
    )
    # Risk per trade: the loss at the stop, before costs, is 1% of the equity at entry.
    first = closed[0]
    risk = first.quantity * abs(first.entry_price - first.stop)  # type: ignore[operator]
    assert risk == pytest.approx(100.0)


def test_limits_refuse_entries(tmp_path: Path, candles: pd.DataFrame) -> None:
    loop, paper = _loop(tmp_path, limits=RiskLimits(max_position=1_000.0))
    replay(loop, paper, candles)
    refused = loop.journal.intents("t", ("refused",))
    assert refused and "above trade_max_position 1000" in refused[0].reason
    assert paper.fills("BTCUSDT") == []


def test_orders_per_minute_and_daily_loss(tmp_path: Path, candles: pd.DataFrame) -> None:
    loop, paper = _loop(tmp_path, limits=RiskLimits(max_orders_per_minute=3))
    replay(loop, paper, candles)
    # One trade is three orders (entry, stop, target): the second entry is refused.
    assert len(loop.journal.intents("t", ("closed", "open"))) == 1
    refused = loop.journal.intents("t", ("refused",))
    assert refused and "orders in the last minute" in refused[0].reason


def test_a_days_loss_stops_entries_that_day(tmp_path: Path, candles: pd.DataFrame) -> None:
    loop, paper = _loop(tmp_path)
    replay(loop, paper, candles)
    losing = [i for i in loop.journal.intents("t", ("closed",)) if (i.pnl or 0.0) < 0]
    assert losing
    day = losing[0].exit_time
    assert day is not None
    with pytest.raises(RiskLimitError, match="beyond trade_max_daily_loss"):
        RiskLimits(max_daily_loss=0.01).check_entry(loop.journal, "t", 1.0, day)
    RiskLimits(max_daily_loss=1e9).check_entry(loop.journal, "t", 1.0, day)  # within


def test_kill_switch_cancels_flattens_and_stops(tmp_path: Path, candles: pd.DataFrame) -> None:
    loop, paper = _loop(tmp_path)
    replay(loop, paper, candles.iloc[:11])  # the long of bar 10 is pending
    replay(loop, paper, candles.iloc[:12])  # entered, stop and target resting
    assert len(paper.open_orders("BTCUSDT")) == 2 and paper.positions()
    loop.journal.set_switch(True, "test")
    loop._switch_checked = float("-inf")  # look at once (a replay looks once a second)
    replay(loop, paper, candles.iloc[:14])
    assert loop.stopped
    (closing,) = paper.open_orders("BTCUSDT")  # stop and target cancelled, a market sell left
    assert (closing.request.side, closing.request.kind) == ("sell", "market")
    row = candles.iloc[13]
    paper.on_bar(
        "BTCUSDT", candles.index[13], *(float(row[c]) for c in ("open", "high", "low", "close"))
    )
    assert paper.positions() == []  # the flatten order filled at the next bar's open
    kinds = [e["kind"] for e in loop.journal.events("t")]
    assert "kill" in kinds
    (intent,) = loop.journal.intents("t")
    assert intent.state == "killed"


def test_dry_run_sends_nothing(tmp_path: Path, candles: pd.DataFrame) -> None:
    loop, paper = _loop(tmp_path, dry_run=True)
    replay(loop, paper, candles)
    assert paper.fills("BTCUSDT") == [] and paper.open_orders() == []
    dry = [e for e in loop.journal.events("t") if e["kind"] == "dry_run"]
    assert dry and dry[0]["detail"]["side"] == "buy" and dry[0]["detail"]["quantity"] > 0
    assert loop.journal.orders("t") == []


class NoStops:
    """The paper venue seen as one without stop orders: the loop emulates both exits."""

    name = "nostops"
    capabilities = Capabilities()

    def __init__(self, paper: PaperBroker) -> None:
        self.paper = paper

    def __getattr__(self, name: str) -> Any:
        if name == "submit_oco":
            raise AttributeError(name)
        return getattr(self.paper, name)


def test_exits_are_emulated_where_the_venue_has_no_stops(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    paper = PaperBroker(f"sqlite:///{tmp_path / 'venue.sqlite'}", fee_bps=10)
    venue = NoStops(paper)
    assert not isinstance(venue, OcoBroker)
    loop, _ = _loop(tmp_path, broker=venue)
    replay(loop, paper, candles)
    closed = loop.journal.intents("t", ("closed",))
    assert closed and all(i.exits == "emulated" for i in closed)
    roles = {o.role for o in loop.journal.orders("t")}
    assert roles <= {"entry", "stop", "target"}
    exits = [o for o in loop.journal.orders("t") if o.role != "entry"]
    assert exits and all(o.kind == "market" for o in exits)  # at market, after the bar


def test_broker_specs(tmp_path: Path) -> None:
    assert check_spec("paper") == ("paper", "")
    assert check_spec("ccxt:binance") == ("ccxt", "binance")
    for bad in ("ccxt:", "ccxt:../../x", "paper; rm -rf /", "mt4", "ccxt:Binance"):
        with pytest.raises(ConfigError, match="expected paper, dex or ccxt"):
            check_spec(bad)
    from trademl.config import Settings

    broker = open_broker("paper", Settings(home=tmp_path))
    assert isinstance(broker, PaperBroker)
    broker.close()


def test_an_entry_still_open_a_bar_later_is_cancelled(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    """A real venue's cycle (close, then the next open at the close): an entry the venue has
    not filled by the next close is cancelled, not chased."""
    paper = PaperBroker(f"sqlite:///{tmp_path / 'venue.sqlite'}")
    loop, _ = _loop(tmp_path, broker=NoStops(paper))  # no bars reach this venue: no fill
    window = candles.iloc[:10]
    loop.on_bar_close(window)  # bar 10: a long
    loop.on_bar_open(candles.index[10], float(window["close"].iloc[-1]))
    (entry,) = loop.journal.orders("t")
    assert (entry.role, entry.state) == ("entry", "new")
    loop.on_bar_close(candles.iloc[:11])
    assert paper.order("BTCUSDT", entry.client_id).status == "canceled"  # type: ignore[union-attr]
    (intent,) = loop.journal.intents("t")
    assert (intent.state, intent.reason) == ("skipped", "canceled")
    assert paper.positions() == []
