"""``trademl backtest``: out-of-sample predictions of a training run → signals → trades,
metrics beside buy-and-hold (with the deflated Sharpe ratio), an HTML report; and parameter
sweeps with the deflated Sharpe ratio and the probability of backtest overfitting (CPCV)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from loguru import logger

from trademl.atomic import atomic_path
from trademl.backtest.config import BacktestConfig, load_backtest_config
from trademl.backtest.engine import run_backtest
from trademl.backtest.metrics import backtest_metrics, buy_and_hold
from trademl.backtest.outcome import BacktestRun, choose_model, traded_span
from trademl.backtest.panel_run import backtest_panel
from trademl.backtest.report import write_metrics_json, write_report
from trademl.backtest.signals import Signals
from trademl.backtest.strategies import strategy_signals
from trademl.config import RunConfig, Settings, get_settings, load_run_config
from trademl.data.candles import as_candles
from trademl.data.ingest import open_default_store, read_series
from trademl.data.sources.base import clip_range
from trademl.errors import ConfigError
from trademl.paths import PathPolicy, output_lock, resolve_backtest_paths
from trademl.run_outputs import TrainingRecorder
from trademl.validation.overfitting import (
    deflated_sharpe_ratio,
    pbo_cpcv,
    sharpe_ratio,
)
from trademl.validation.splitters import CombinatorialPurgedCV
from trademl.workflow import run


@dataclass(frozen=True)
class _Inputs:
    run_config: RunConfig
    candles: pd.DataFrame
    predictions: pd.DataFrame
    model: str
    horizon_bars: int
    periods_per_year: float


class BacktestRecorder(TrainingRecorder, Protocol):
    """What records backtests and sweeps outside the core (the tracking layer's recorder); a
    backtest that trains first records that training run too."""

    def record_backtest(self, run: BacktestRun, cfg: BacktestConfig) -> None:
        """Record a finished backtest."""

    def record_sweep(self, table: pd.DataFrame, cfg: BacktestConfig) -> None:
        """Record a finished parameter sweep run on its own."""


def run_folder(
    cfg: BacktestConfig,
    settings: Settings,
    paths: PathPolicy,
    recorder: BacktestRecorder | None = None,
) -> Path:
    """The training run folder a backtest reads: ``run``, or ``train`` trained first."""
    if cfg.train is not None:
        run_dir = run(cfg.train, settings=settings, paths=paths, recorder=recorder).output
    else:
        run_dir = Path(str(cfg.run))
    for name in ("config.yaml", "predictions.parquet"):
        if not (run_dir / name).exists():
            raise ConfigError(
                f"run: {run_dir} holds no {name}; point 'run' at a `trademl train` output folder"
            )
    return run_dir


def _inputs(
    cfg: BacktestConfig,
    settings: Settings,
    paths: PathPolicy,
    run_dir: Path | None = None,
    recorder: BacktestRecorder | None = None,
    given: pd.DataFrame | None = None,
) -> _Inputs:
    run_dir = run_folder(cfg, settings, paths, recorder) if run_dir is None else run_dir
    run_config = load_run_config(run_dir / "config.yaml")
    if run_config.data.symbol is None:
        raise ConfigError(
            f"run: {run_dir} is a panel run ({', '.join(run_config.data.members)}); a parameter "
            "grid sweeps one symbol's run, a panel's backtest takes no grid"
        )
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    timeframe = run_config.data.timeframe
    model, horizon_bars = choose_model(cfg, run_config)
    symbol = run_config.data.symbol
    start, end = traded_span(predictions.index, timeframe, horizon_bars)
    if given is None:
        with open_default_store(settings) as store:
            candles = read_series(store, symbol, timeframe, start, end)
    else:
        candles = as_candles(given, timeframe, what=f"candles of {symbol}")
        candles = clip_range(candles, start, end)
    candles.attrs.update(symbol=symbol, timeframe=timeframe)
    years = (candles.index[-1] - candles.index[0]).total_seconds() / (365.25 * 86_400)
    periods = len(candles) / years if years > 0 else float(len(candles))
    return _Inputs(run_config, candles, predictions, model, horizon_bars, periods)


def _signals(cfg: BacktestConfig, inputs: _Inputs, overrides: dict[str, Any]) -> Signals:
    return strategy_signals(
        cfg.strategy.kind,
        inputs.candles,
        inputs.predictions,
        preset=cfg.strategy.preset,
        horizon=inputs.horizon_bars,
        model=inputs.model,
        **{**cfg.strategy.params, **overrides},
    )


def _simulate(cfg: BacktestConfig, inputs: _Inputs, signals: Signals) -> Any:
    return run_backtest(
        inputs.candles,
        signals,
        fee_bps=cfg.costs.fee_bps,
        slippage_bps=cfg.costs.slippage_bps,
        risk_fraction=cfg.sizing.risk_fraction,
        initial_equity=cfg.sizing.initial_equity,
    )


def backtest(
    config: BacktestConfig | str | Path | dict[str, Any],
    *,
    settings: Settings | None = None,
    paths: PathPolicy | None = None,
    recorder: BacktestRecorder | None = None,
    candles: pd.DataFrame | None = None,
) -> BacktestRun:
    """Backtest a training run's out-of-sample predictions as ``config`` says.

    ``paths`` says where ``run``, ``train`` and ``output`` may be (a job's policy keeps them
    under ``TRADEML_HOME``); anything the user can reach by default. ``recorder`` records the
    backtest (and the training run of ``train``); None records nothing. ``candles`` are the
    run's symbol's bars (read from the store when None; a panel run always reads the store).
    The output folder is held for the whole backtest: a second one naming it meanwhile fails
    at once.
    """
    cfg = config if isinstance(config, BacktestConfig) else load_backtest_config(config)
    policy = paths or PathPolicy.local()
    cfg = resolve_backtest_paths(cfg, policy)
    with output_lock(Path(cfg.output)):
        return _backtest(cfg, settings or get_settings(), policy, recorder, candles)


def _backtest(
    cfg: BacktestConfig,
    settings: Settings,
    paths: PathPolicy,
    recorder: BacktestRecorder | None,
    candles: pd.DataFrame | None = None,
) -> BacktestRun:
    run_dir = None
    if not cfg.grid:
        run_dir = run_folder(cfg, settings, paths, recorder)
        if load_run_config(run_dir / "config.yaml").data.panel:
            done = backtest_panel(cfg, run_dir, settings)  # every symbol in one kernel call
            if recorder is not None:
                recorder.record_backtest(done, cfg)
            return done
    inputs = _inputs(cfg, settings, paths, run_dir, recorder, candles)
    result = _simulate(cfg, inputs, _signals(cfg, inputs, {}))
    metrics = backtest_metrics(
        result.trades, result.equity, periods_per_year=inputs.periods_per_year
    )
    if cfg.grid:
        # With a grid, the configuration backtested is one of many tried: report the deflated
        # Sharpe ratio given them all and the probability of backtest overfitting of the grid.
        table = sweep(cfg, settings=settings, inputs=inputs)
        metrics = {
            **metrics,
            "grid_trials": table.attrs["n_trials"],
            "grid_best": table.attrs["best"],
            "deflated_sharpe_grid": table.attrs["deflated_sharpe"],
            "pbo": table.attrs["pbo"],
            "pbo_method": table.attrs["pbo_method"],
        }
    baseline = buy_and_hold(inputs.candles, cfg.sizing.initial_equity)
    baseline_metrics = backtest_metrics(
        result.trades.iloc[0:0], baseline, periods_per_year=inputs.periods_per_year
    )
    # Buy-and-hold is one position held throughout, not zero trades: trade statistics do not
    # apply to it, and it is always exposed.
    baseline_metrics.update(exposure=1.0, total_r=math.nan, n_trades=1)
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / "trades.csv") as temp:
        result.trades.to_csv(temp, index=False)
    # The curves themselves, for the dashboard (the report holds them only as a chart).
    curves = pd.DataFrame({"strategy": result.equity, "buy_and_hold": baseline})
    with atomic_path(output / "equity.csv") as temp:
        curves.rename_axis("timestamp").to_csv(temp)
    meta = {
        "symbol": inputs.run_config.data.symbol,
        "timeframe": inputs.run_config.data.timeframe,
        "model": inputs.model,
        "horizon_bars": inputs.horizon_bars,
        "strategy": cfg.strategy.model_dump(mode="json"),
        "costs": cfg.costs.model_dump(mode="json"),
        "sizing": cfg.sizing.model_dump(mode="json"),
    }
    write_metrics_json(output / "metrics.json", metrics, baseline_metrics, meta)
    title = f"{meta['symbol']} {meta['timeframe']}: {cfg.strategy.kind} on {inputs.model} (horizon {inputs.horizon_bars} bars)"
    write_report(
        output / "report.html",
        candles=inputs.candles,
        trades=result.trades,
        equity=result.equity,
        metrics=metrics,
        baseline_equity=baseline,
        baseline_metrics=baseline_metrics,
        title=title,
    )
    logger.info("backtest written to {}", output)
    done = BacktestRun(output, result.trades, result.equity, metrics, baseline_metrics)
    if recorder is not None:
        recorder.record_backtest(done, cfg)
    return done


def sweep(
    config: BacktestConfig | str | Path | dict[str, Any],
    *,
    settings: Settings | None = None,
    inputs: _Inputs | None = None,
    paths: PathPolicy | None = None,
    recorder: BacktestRecorder | None = None,
) -> pd.DataFrame:
    """Every combination of ``grid`` backtested; the best's deflated Sharpe ratio given the
    number of combinations tried, and the PBO of the grid by CPCV over per-bar returns.
    ``paths`` and ``recorder`` as in :func:`backtest`."""
    cfg = config if isinstance(config, BacktestConfig) else load_backtest_config(config)
    if not cfg.grid:
        raise ConfigError(
            "grid: a sweep needs a grid of strategy parameters, e.g. {reward_risk: [1, 1.5, 2]}"
        )
    settings = settings or get_settings()
    if inputs is not None:  # inside backtest(): paths resolved, output held, run recorded
        return _sweep(cfg, inputs, None)
    policy = paths or PathPolicy.local()
    cfg = resolve_backtest_paths(cfg, policy)
    with output_lock(Path(cfg.output)):
        return _sweep(cfg, _inputs(cfg, settings, policy, recorder=recorder), recorder)


def _sweep(cfg: BacktestConfig, inputs: _Inputs, recorder: BacktestRecorder | None) -> pd.DataFrame:
    names = list(cfg.grid)
    rows, returns = [], {}
    for values in itertools.product(*(cfg.grid[name] for name in names)):
        overrides = dict(zip(names, values, strict=True))
        result = _simulate(cfg, inputs, _signals(cfg, inputs, overrides))
        metrics = backtest_metrics(
            result.trades, result.equity, periods_per_year=inputs.periods_per_year
        )
        label = ", ".join(f"{k}={v}" for k, v in overrides.items())
        returns[label] = result.equity.pct_change().fillna(0.0).to_numpy()
        rows.append({"config": label, **overrides, **metrics})
    table = pd.DataFrame(rows)
    matrix = np.column_stack(list(returns.values()))
    per_bar_sr = np.array([sharpe_ratio(matrix[:, i]) for i in range(matrix.shape[1])])
    finite = per_bar_sr[np.isfinite(per_bar_sr)]
    best = int(np.nanargmax(np.where(np.isfinite(per_bar_sr), per_bar_sr, -np.inf)))
    variance = float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0
    table.attrs["n_trials"] = len(table)
    table.attrs["best"] = table["config"].iloc[best]
    table.attrs["deflated_sharpe"] = deflated_sharpe_ratio(
        float(per_bar_sr[best]), n_obs=len(matrix), n_trials=len(table), trials_sr_variance=variance
    )
    # PBO by CPCV: half the groups tested per split, the in-sample side purged and embargoed
    # by the holding horizon so a trade open across a boundary never informs the selection.
    groups = cfg.pbo.n_groups
    cpcv = CombinatorialPurgedCV(
        n_groups=groups,
        n_test_groups=groups // 2,
        horizon_bars=inputs.horizon_bars,
        embargo_bars=inputs.horizon_bars,
    )
    table.attrs["pbo"] = pbo_cpcv(matrix, cpcv).pbo if matrix.shape[1] > 1 else float("nan")
    table.attrs["pbo_method"] = (
        f"CPCV over {len(matrix)} bars: {groups} groups, {groups // 2} tested per split "
        f"({math.comb(groups, groups // 2)} splits), purge and embargo {inputs.horizon_bars} bars"
    )
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / "sweep.csv") as temp:
        table.to_csv(temp, index=False)
    write_metrics_json(
        output / "sweep.json",
        {k: table.attrs[k] for k in ("n_trials", "deflated_sharpe", "pbo", "pbo_method")},
        None,
        {"best": table.attrs["best"], "grid": cfg.grid},
    )
    if recorder is not None:  # a sweep inside backtest() is recorded with the backtest
        recorder.record_sweep(table, cfg)
    return table
