"""Live versus backtest on the shared BTCUSDT 1h data: the loop on the paper broker, bar by
bar, makes exactly the engine's trades (times, prices, quantities, P&L)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.data.sources.files import read_candle_file
from trademl.trading.parity import replay_parity
from trademl.trading.signal import signal_params


def causal_predictions(candles: pd.DataFrame, bars: int = 24) -> pd.DataFrame:
    """Max/min predictions from the trailing ``bars`` (causal): the recent range as the next
    range, momentum as the probability of an up move."""
    close = candles["close"]
    momentum = close.pct_change(bars // 2)
    return pd.DataFrame(
        {
            "intraday__high_log": np.log(candles["high"].rolling(bars).max() / close),
            "intraday__low_log": np.log(candles["low"].rolling(bars).min() / close),
            "intraday__p_up": 0.5 + (momentum * 10).clip(-0.4, 0.4),
        }
    )


@pytest.fixture(scope="module")
def candles(data_dir: Path) -> pd.DataFrame:
    return read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-2_000:]


@pytest.mark.parametrize("reward_risk", [1.0])
def test_replay_makes_the_backtests_trades(
    candles: pd.DataFrame, tmp_path: Path, reward_risk: float
) -> None:
    params = signal_params(reward_risk=reward_risk)
    report = replay_parity(
        candles,
        causal_predictions(candles),
        "intraday",
        params,
        fee_bps=10,
        slippage_bps=5,
        folder=tmp_path,
    )
    assert report.bars == len(candles)
    assert report.mismatches == []
    assert report.trades >= 30
    reasons = set(report.backtest_trades["exit_reason"])
    assert {"stop", "target"} <= reasons  # both exits, and the tie rule, are exercised
    assert report.max_price_difference == 0.0
    assert report.max_pnl_difference == 0.0
    closed = report.backtest_trades["exit_reason"] != "end"
    loop_pnl = report.loop_trades["pnl"].sum()
    assert loop_pnl == pytest.approx(report.backtest_trades.loc[closed, "pnl"].sum())


def test_a_difference_is_reported(candles: pd.DataFrame) -> None:
    """The comparison can fail: a trade moved by one bar is named."""
    from trademl.trading.parity import compare_trades

    report = replay_parity(
        candles.iloc[:600],
        causal_predictions(candles.iloc[:600]),
        "intraday",
        signal_params(reward_risk=1.0),
    )
    assert report.trades > 0
    moved = report.loop_trades.copy()
    moved.loc[0, "entry_time"] = moved.loc[0, "entry_time"] + pd.Timedelta(hours=1)
    moved.loc[1, "exit_price"] = moved.loc[1, "exit_price"] * 1.001
    mismatches, price_gap, _ = compare_trades(moved, report.backtest_trades)
    assert any("trade 0: entry_time" in m for m in mismatches)
    assert any("trade 1: exit_price" in m for m in mismatches)
    assert price_gap > 0
