"""A loop on the paper broker over real bars, killable mid-order (run by test_kill_restart.py).

``python kill_worker.py JOURNAL_URL PAPER_URL CSV MARKER MODE``: replays the last bars of the
CSV; with MODE ``before`` or ``after`` the first entry order pauses just before or just after
the venue accepts it (``exits``: just before its stop and target are sent), writes MARKER and
waits to be killed; with ``none`` it runs through.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

BARS = 48
SIGNAL_AT = 20  # the bar (from the start of the replay) that signals a long


def main(journal_url: str, paper_url: str, csv: str, marker: str, mode: str) -> None:
    from trademl.data.sources.files import read_candle_file
    from trademl.trading.broker import OrderRequest
    from trademl.trading.journal import TradeJournal
    from trademl.trading.loop import LoopConfig, TradingLoop, replay
    from trademl.trading.paper import PaperBroker
    from trademl.trading.signal import BarSignal

    candles = read_candle_file(csv).iloc[-BARS:]
    signal_bar = candles.index[SIGNAL_AT]

    def signals(window: pd.DataFrame) -> BarSignal:
        stamp, close = window.index[-1], float(window["close"].iloc[-1])
        side = 1 if stamp == signal_bar else 0
        return BarSignal(stamp, close, side, close * 0.97, close * 1.03, "intraday")

    paper = PaperBroker(paper_url, fee_bps=10, slippage_bps=5)

    class Pausing:
        """The paper venue, pausing around the first entry submission."""

        def __init__(self) -> None:
            self.name, self.capabilities = paper.name, paper.capabilities

        def __getattr__(self, name: str) -> Any:
            return getattr(paper, name)

        def submit(self, request: OrderRequest) -> Any:
            entry = request.client_id.endswith("-e")
            if entry and mode == "before":
                _pause(marker)
            order = paper.submit(request)
            if entry and mode == "after":
                _pause(marker)
            return order

        def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> Any:
            if mode == "exits":
                _pause(marker)
            return paper.submit_oco(stop, target)

    journal = TradeJournal(journal_url)
    config = LoopConfig("kill-test", "BTCUSDT", "1h", "test", "paper", fee_bps=10, slippage_bps=5)
    loop = TradingLoop(Pausing(), journal, signals, config, initial_equity=100_000.0)
    loop.reconcile()
    replay(loop, paper, candles)
    journal.close()
    paper.close()


def _pause(marker: str) -> None:
    Path(marker).write_text("paused")
    while True:  # until SIGKILL
        time.sleep(0.05)


if __name__ == "__main__":
    main(*sys.argv[1:6])
