"""The backtest of a panel run: every symbol's out-of-sample predictions → signals, all
simulated in one kernel call (:func:`~trademl.backtest.panel.run_backtest_panel`), metrics per
symbol and for the equal-weight portfolio of the symbols' accounts, beside buy-and-hold.

The kernel takes one bar index for every asset: a symbol's prices on bars of the panel's
timeline where it did not trade (another market's hours, before its first bar) are held flat
at its last close, with no signal, so its own trades and equity are those of its own bars;
``max_bars`` then counts timeline bars.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from trademl.atomic import atomic_path
from trademl.backtest.config import BacktestConfig
from trademl.backtest.metrics import backtest_metrics, buy_and_hold
from trademl.backtest.outcome import BacktestRun, choose_model, traded_span
from trademl.backtest.panel import PanelSignals, run_backtest_panel
from trademl.backtest.report import write_metrics_json
from trademl.backtest.strategies import strategy_signals
from trademl.config import Settings, load_run_config
from trademl.data.candles import PRICE_COLUMNS
from trademl.data.ingest import open_default_store, read_series

PORTFOLIO = "portfolio"  # the equal-weight account of every symbol in the metrics table


def backtest_panel(cfg: BacktestConfig, run_dir: Path, settings: Settings) -> BacktestRun:
    """Backtest a panel run's out-of-sample predictions (called by
    :func:`trademl.backtest.runner.backtest`; paths resolved, output held).

    Writes ``trades.csv`` (an ``asset`` column first), ``metrics.json`` (the portfolio's
    metrics and buy-and-hold's, each symbol's under ``meta.per_symbol``) and
    ``metrics_by_symbol.csv``.
    """
    run_config = load_run_config(run_dir / "config.yaml")
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    model, horizon_bars = choose_model(cfg, run_config)
    timeframe = run_config.data.timeframe
    symbols = list(run_config.data.members)
    candles: dict[str, pd.DataFrame] = {}
    signals = {}
    with open_default_store(settings) as store:
        for symbol in symbols:
            own = predictions[predictions.index.get_level_values("symbol") == symbol]
            own = own.droplevel("symbol")
            frame = read_series(
                store, symbol, timeframe, *traded_span(own.index, timeframe, horizon_bars)
            )
            frame.attrs.update(symbol=symbol, timeframe=timeframe)
            candles[symbol] = frame
            signals[symbol] = strategy_signals(
                cfg.strategy.kind,
                frame,
                own,
                preset=cfg.strategy.preset,
                horizon=horizon_bars,
                model=model,
                **cfg.strategy.params,
            )
    index = pd.DatetimeIndex(sorted(set().union(*(c.index for c in candles.values()))))
    prices = _wide_prices(candles, index)
    panel_signals = _wide_signals(signals, index)
    result = run_backtest_panel(
        prices,
        panel_signals,
        fee_bps=cfg.costs.fee_bps,
        slippage_bps=cfg.costs.slippage_bps,
        risk_fraction=cfg.sizing.risk_fraction,
        initial_equity=cfg.sizing.initial_equity,
    )
    initial = cfg.sizing.initial_equity
    rows: dict[str, dict[str, Any]] = {}
    holds: dict[str, pd.Series] = {}
    for symbol in symbols:
        own_bars = pd.DatetimeIndex(candles[symbol].index)
        periods = _periods_per_year(own_bars)
        equity = result.equity[symbol].loc[own_bars]
        trades = result.trades[result.trades["asset"] == symbol]
        hold = buy_and_hold(candles[symbol], initial)
        holds[symbol] = hold.reindex(index).ffill().fillna(initial)
        rows[symbol] = {
            **backtest_metrics(trades, equity, periods_per_year=periods),
            **_prefixed(_hold_metrics(hold, trades, periods)),
        }
    periods = _periods_per_year(index)
    portfolio = result.equity.mean(axis=1)  # equal-weight: one account per symbol, same start
    metrics = backtest_metrics(result.trades, portfolio, periods_per_year=periods)
    hold_portfolio = pd.concat(holds, axis=1).mean(axis=1)
    baseline = _hold_metrics(hold_portfolio, result.trades, periods)
    rows[PORTFOLIO] = {**metrics, **_prefixed(baseline)}
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / "trades.csv") as temp:
        result.trades.to_csv(temp, index=False)
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("symbol")
    with atomic_path(output / "metrics_by_symbol.csv") as temp:
        table.to_csv(temp)
    meta = {
        "symbol": run_config.data.label,
        "symbols": symbols,
        "timeframe": timeframe,
        "model": model,
        "horizon_bars": horizon_bars,
        "strategy": cfg.strategy.model_dump(mode="json"),
        "costs": cfg.costs.model_dump(mode="json"),
        "sizing": cfg.sizing.model_dump(mode="json"),
        "portfolio": "equal weight of one account per symbol, each starting at initial_equity",
        "per_symbol": {s: rows[s] for s in symbols},
    }
    write_metrics_json(output / "metrics.json", metrics, baseline, meta)
    logger.info("panel backtest of {} symbols written to {}", len(symbols), output)
    return BacktestRun(output, result.trades, portfolio, metrics, baseline)


def _wide_prices(candles: dict[str, pd.DataFrame], index: pd.DatetimeIndex) -> dict[str, Any]:
    """Open/high/low/close frames (bars × symbols); a symbol's missing bars held flat at its
    last close (its first open before it starts)."""
    close = pd.DataFrame({s: c["close"] for s, c in candles.items()}).reindex(index)
    first_open = pd.Series({s: float(c["open"].iloc[0]) for s, c in candles.items()})
    flat = close.ffill().fillna(first_open)
    wide = {}
    for key in PRICE_COLUMNS:
        values = pd.DataFrame({s: c[key] for s, c in candles.items()}).reindex(index)
        wide[key] = values.fillna(flat)
    return wide


def _wide_signals(signals: dict[str, Any], index: pd.DatetimeIndex) -> PanelSignals:
    """Each symbol's signal arrays placed on the panel's bars (no signal elsewhere)."""
    shape = (len(index), len(signals))
    side = np.zeros(shape, dtype=np.int8, order="F")
    stop = np.full(shape, np.nan, order="F")
    target = np.full(shape, np.nan, order="F")
    max_bars = np.zeros(shape, dtype=np.int64, order="F")
    size = np.ones(shape, order="F")
    for column, own in enumerate(signals.values()):
        rows = index.get_indexer(own.index)
        side[rows, column] = own.side
        stop[rows, column] = own.stop
        target[rows, column] = own.target
        max_bars[rows, column] = own.max_bars
        size[rows, column] = own.size
    return PanelSignals(side, stop, target, max_bars, size)


def _periods_per_year(index: pd.DatetimeIndex) -> float:
    years = (index[-1] - index[0]).total_seconds() / (365.25 * 86_400)
    return len(index) / years if years > 0 else float(len(index))


def _hold_metrics(hold: pd.Series, trades: pd.DataFrame, periods: float) -> dict[str, Any]:
    """Buy-and-hold's metrics: one position held throughout (as the single-symbol backtest)."""
    values = backtest_metrics(trades.iloc[0:0], hold, periods_per_year=periods)
    values.update(exposure=1.0, total_r=math.nan, n_trades=1)
    return values


def _prefixed(values: dict[str, Any]) -> dict[str, Any]:
    return {f"buy_and_hold.{key}": value for key, value in values.items()}
