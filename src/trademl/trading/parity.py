"""Live versus backtest: the same predictions and bars through the live loop on the paper
broker and through the backtest engine, trade by trade."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trademl.backtest.engine import run_backtest
from trademl.backtest.strategies import maxmin_signals
from trademl.config import Settings
from trademl.tracking.pipeline import load_pipeline
from trademl.trading.journal import TradeJournal
from trademl.trading.loop import LoopConfig, PredictionSignals, TradingLoop, replay
from trademl.trading.paper import PaperBroker
from trademl.trading.signal import signal_params

_COMPARED = ("entry_time", "exit_time", "entry_price", "exit_price", "quantity", "pnl")


@dataclass(frozen=True)
class ParityReport:
    """The loop's trades beside the engine's.

    Attributes
    ----------
    loop_trades, backtest_trades : pandas.DataFrame
        Columns ``entry_time, exit_time, side, entry_price, exit_price, exit_reason, quantity,
        pnl``; the engine's last trade closed by the end of the data (``end``) is compared
        with the loop's open position on its entry only.
    mismatches : list of str
        Every difference found (empty: identical).
    max_price_difference : float
        Largest absolute difference of an entry or exit price.
    max_pnl_difference : float
        Largest absolute difference of a trade's P&L.
    bars : int
        Bars replayed.
    """

    loop_trades: pd.DataFrame
    backtest_trades: pd.DataFrame
    mismatches: list[str]
    max_price_difference: float
    max_pnl_difference: float
    bars: int

    @property
    def identical(self) -> bool:
        """Same trades, same times, prices, quantities and P&L."""
        return not self.mismatches

    @property
    def trades(self) -> int:
        """Trades compared."""
        return len(self.backtest_trades)

    def __str__(self) -> str:
        verdict = "identical" if self.identical else f"{len(self.mismatches)} DIFFERENCES"
        loop_pnl = float(self.loop_trades["pnl"].sum())
        engine = self.backtest_trades
        closed = float(engine.loc[engine["exit_reason"] != "end", "pnl"].sum())
        return (
            f"live = backtest: {self.bars} bars replayed through the loop on the paper broker, "
            f"{self.trades} trades compared, {verdict}; max price difference "
            f"{self.max_price_difference:g}, max P&L difference {self.max_pnl_difference:g}; "
            f"P&L of closed trades {loop_pnl:,.2f} (loop) vs {closed:,.2f} (backtest)"
        )


def _loop_trades(journal: TradeJournal, loop: str) -> pd.DataFrame:
    rows = [
        {
            "entry_time": i.entry_time,
            "exit_time": i.exit_time if i.state == "closed" else pd.NaT,
            "side": "long" if i.side > 0 else "short",
            "entry_price": i.entry_price,
            "exit_price": i.exit_price if i.state == "closed" else np.nan,
            "exit_reason": i.exit_reason if i.state == "closed" else "open",
            "quantity": i.quantity,
            "pnl": i.pnl if i.state == "closed" else np.nan,
        }
        for i in journal.intents(loop, ("closed", "open"))
    ]
    columns = ["entry_time", "exit_time", "side", "entry_price", "exit_price", "exit_reason"]
    return pd.DataFrame(rows, columns=[*columns, "quantity", "pnl"])


def compare_trades(loop: pd.DataFrame, engine: pd.DataFrame) -> tuple[list[str], float, float]:
    """(mismatches, max price difference, max P&L difference) of two trade tables."""
    mismatches: list[str] = []
    if len(loop) != len(engine):
        mismatches.append(f"{len(loop)} loop trades against {len(engine)} backtest trades")
    price_gap = pnl_gap = 0.0
    for n, (a, b) in enumerate(zip(loop.itertuples(), engine.itertuples(), strict=False)):
        ended = b.exit_reason == "end"
        for column in _COMPARED:
            if ended and column in ("exit_time", "exit_price", "pnl"):
                continue
            x, y = getattr(a, column), getattr(b, column)
            if column.endswith("_time"):
                if x != y:
                    mismatches.append(f"trade {n}: {column} {x} against {y}")
                continue
            gap = abs(float(x) - float(y))
            if column.endswith("_price"):
                price_gap = max(price_gap, gap)
            if column == "pnl":
                pnl_gap = max(pnl_gap, gap)
            if gap > 1e-9 * max(1.0, abs(float(y))):
                mismatches.append(f"trade {n}: {column} {x!r} against {y!r}")
        ours = (str(a.side), str(a.exit_reason))
        theirs = (str(b.side), "open" if ended else str(b.exit_reason))
        if ours != theirs:
            mismatches.append(f"trade {n}: {'/'.join(ours)} against {'/'.join(theirs)}")
    return mismatches, price_gap, pnl_gap


def replay_parity(
    candles: pd.DataFrame,
    predictions: pd.DataFrame,
    horizon: str,
    params: dict[str, Any],
    *,
    fee_bps: float = 10.0,
    slippage_bps: float = 5.0,
    risk_fraction: float = 0.01,
    initial_equity: float = 100_000.0,
    folder: Path | None = None,
) -> ParityReport:
    """Replay ``candles`` bar by bar through the loop on a fresh paper account, backtest the
    same predictions with the engine, and compare the trades.

    Parameters
    ----------
    candles : pandas.DataFrame
        The bars (a Candles frame).
    predictions : pandas.DataFrame
        Prediction columns ``{horizon}__high_log``, ``__low_log``, ``__p_up`` on (a subset of)
        the candles' timestamps.
    horizon : str
        The horizon traded.
    params : dict
        The max/min rule's parameters (:func:`~trademl.trading.signal.signal_params`).
    fee_bps, slippage_bps, risk_fraction, initial_equity : float
        The costs and sizing of both.
    folder : Path, optional
        Where the paper account and the journal live, replaced by each replay (a temporary
        folder by default).
    """
    aligned = predictions.reindex(candles.index)
    columns = [aligned[f"{horizon}__{name}"] for name in ("high_log", "low_log", "p_up")]
    signals = maxmin_signals(candles, *columns, **params)
    engine = run_backtest(
        candles,
        signals,
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        risk_fraction=risk_fraction,
        initial_equity=initial_equity,
    )
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(folder or scratch)
        root.mkdir(parents=True, exist_ok=True)
        for name in ("paper.sqlite", "journal.sqlite"):  # a fresh account and journal each time
            for path in root.glob(f"{name}*"):
                path.unlink()
        broker = PaperBroker(
            f"sqlite:///{(root / 'paper.sqlite').as_posix()}",
            fee_bps=fee_bps,
            slippage_bps=slippage_bps,
            initial_cash=initial_equity,
        )
        journal = TradeJournal(f"sqlite:///{(root / 'journal.sqlite').as_posix()}")
        try:
            config = LoopConfig(
                "parity",
                str(candles.attrs.get("symbol", "BTCUSDT")),
                "1h",
                "replay",
                "paper",
                risk_per_trade=risk_fraction,
                fee_bps=fee_bps,
                slippage_bps=slippage_bps,
            )
            loop = TradingLoop(
                broker,
                journal,
                PredictionSignals(aligned, horizon, params),
                config,
                initial_equity=initial_equity,
            )
            bars = replay(loop, broker, candles)
            loop_trades = _loop_trades(journal, "parity")
        finally:
            broker.close()
            journal.close()
    backtest_trades = engine.trades[
        [
            "entry_time",
            "exit_time",
            "side",
            "entry_price",
            "exit_price",
            "exit_reason",
            "quantity",
            "pnl",
        ]
    ].copy()
    backtest_trades["side"] = backtest_trades["side"].astype(str)
    backtest_trades["exit_reason"] = backtest_trades["exit_reason"].astype(str)
    mismatches, price_gap, pnl_gap = compare_trades(loop_trades, backtest_trades)
    return ParityReport(loop_trades, backtest_trades, mismatches, price_gap, pnl_gap, bars)


def champion_parity(
    settings: Settings, name: str, version: int, candles: pd.DataFrame, bars: int = 2_000
) -> ParityReport:
    """:func:`replay_parity` of a registered version's own predictions on the last ``bars`` of
    ``candles``, with the settings' fees, slippage and risk per trade (the demo's stage)."""
    pipeline, _ = load_pipeline(name, version, settings)
    window = candles.iloc[-(bars + pipeline.warmup_bars) :]
    predictions = pipeline.predict(window)
    return replay_parity(
        candles.iloc[-bars:],
        predictions,
        next(iter(pipeline.horizons)),
        signal_params(),
        fee_bps=settings.trade_fee_bps,
        slippage_bps=settings.trade_slippage_bps,
        risk_fraction=settings.trade_risk_per_trade,
        initial_equity=settings.paper_initial_cash,
        folder=settings.home / "trading" / "parity",
    )
