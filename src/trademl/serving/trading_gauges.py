"""Prometheus gauges of the live loops, read from the trade journal when scraped: exposure
(signed notional of each open position at its entry price), realised P&L and equity per loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from trademl.trading.journal import TradeJournal


class TradingCollector(Collector):
    """``trademl_trading_exposure``, ``trademl_trading_realised_pnl`` and
    ``trademl_trading_equity``, from the journal ``journal()`` returns (None: no samples)."""

    def __init__(self, journal: Callable[[], TradeJournal | None]) -> None:
        self._journal = journal

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, one sample per loop (a journal that cannot be read gives none)."""
        exposure = GaugeMetricFamily(
            "trademl_trading_exposure",
            "Signed notional of the open position at its entry price (quote asset)",
            labels=["loop", "symbol"],
        )
        pnl = GaugeMetricFamily(
            "trademl_trading_realised_pnl",
            "Net P&L of the loop's closed trades (quote asset)",
            labels=["loop"],
        )
        equity = GaugeMetricFamily(
            "trademl_trading_equity", "The loop's realised equity (quote asset)", labels=["loop"]
        )
        try:
            journal = self._journal()
            loops = journal.loops() if journal is not None else []
            open_trades = journal.intents(states=("open", "exiting")) if journal else []
        except Exception:  # a scrape never fails on the journal
            loops, open_trades = [], []
        for record in loops:
            pnl.add_metric([record.name], record.equity - record.initial_equity)
            equity.add_metric([record.name], record.equity)
            held = [i for i in open_trades if i.loop == record.name]
            value = sum(i.side * (i.quantity or 0.0) * (i.entry_price or 0.0) for i in held)
            exposure.add_metric([record.name, record.symbol], value)
        yield exposure
        yield pnl
        yield equity
