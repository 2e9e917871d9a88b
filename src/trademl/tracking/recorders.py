"""Training runs, backtests, parameter sweeps and tuning studies as MLflow runs: the recorder
that the shells wrap around the core."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from loguru import logger

from trademl.backtest.config import BacktestConfig
from trademl.backtest.outcome import BacktestRun
from trademl.config import RunConfig, Settings, get_settings, load_run_config
from trademl.pipeline import PipelineModel
from trademl.preparation import Prepared
from trademl.run_outputs import RunResult
from trademl.tracking.runs import base_tags, log_folder, log_outcome, tracked_run
from trademl.tracking.training import TRACKING_FILE, preflight, track_training

if TYPE_CHECKING:
    # Type only: importing tuning loads Optuna, which recording a training run never needs.
    from trademl.tuning import TuneResult

BACKTEST_ARTIFACTS = [
    "report.html",
    "metrics.json",
    "trades.csv",
    "equity.csv",
    "sweep.csv",
    "sweep.json",
]
TUNING_ARTIFACTS = ["trials.csv", "best.yaml", "summary.json"]


def _training_dir(cfg: BacktestConfig) -> Path:
    if cfg.run is not None:
        return Path(cfg.run)
    return Path(load_run_config(str(cfg.train)).output)


def _source_tags(run_dir: Path) -> dict[str, str]:
    """The training run a backtest read: its MLflow run id and registered version."""
    tags: dict[str, str] = {"source_run_dir": str(run_dir)}
    record = run_dir / TRACKING_FILE
    if record.exists():
        data = json.loads(record.read_text())
        tags["source_run_id"] = str(data.get("run_id"))
        if data.get("model_name"):
            tags["registered_model"] = str(data["model_name"])
            tags["model_version"] = str(data["model_version"])
    else:
        tags["source_run_id"] = "unknown"
    config = run_dir / "config.yaml"
    if config.exists():
        run_config = load_run_config(config)
        tags.update(symbol=run_config.data.label, timeframe=run_config.data.timeframe)
    return tags


def _split(values: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], dict[str, str]]:
    """Numbers become metrics, everything else tags (a best configuration's label)."""
    numbers: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            texts[f"{prefix}{key}"] = str(value)[:8000]
        else:
            numbers[f"{prefix}{key}"] = value
    return numbers, texts


def log_backtest(
    run: BacktestRun,
    cfg: BacktestConfig,
    settings: Settings | None = None,
    *,
    trigger: str = "manual",
) -> str:
    """Record a backtest in the backtests experiment; returns the MLflow run id.

    Tags name the training run it read (``source_run_id``, ``registered_model``,
    ``model_version``); metrics are the strategy's (deflated Sharpe ratio and PBO included
    with a grid) and buy-and-hold's under ``buy_and_hold.``; artifacts are the report, the
    metrics and the trades.
    """
    settings = settings or get_settings()
    source = _source_tags(_training_dir(cfg))
    metrics, texts = _split(run.metrics)
    baseline, _ = _split(run.baseline_metrics, "buy_and_hold.")
    tags = {
        **base_tags("backtest", trigger),
        **source,
        **texts,
        "strategy": cfg.strategy.kind,
    }
    name = f"backtest_{source.get('symbol', '')}_{source.get('timeframe', '')}_{cfg.strategy.kind}"
    experiment = settings.mlflow_experiment_backtests
    with tracked_run(experiment, run_name=name, tags=tags, settings=settings) as (client, run_id):
        points = [(k, v, 0) for k, v in {**metrics, **baseline}.items()]
        log_outcome(client, run_id, cfg.model_dump(mode="json"), points)
        log_folder(client, run_id, run.output, BACKTEST_ARTIFACTS)
    return run_id


def log_sweep(table: pd.DataFrame, cfg: BacktestConfig, settings: Settings | None = None) -> str:
    """Record a parameter sweep: trials, the best's deflated Sharpe ratio, the grid's PBO."""
    settings = settings or get_settings()
    source = _source_tags(_training_dir(cfg))
    summary = {k: table.attrs.get(k) for k in ("n_trials", "deflated_sharpe", "pbo")}
    tags = {
        **base_tags("sweep"),
        **source,
        "strategy": cfg.strategy.kind,
        "grid_best": str(table.attrs.get("best")),
    }
    name = f"sweep_{source.get('symbol', '')}_{source.get('timeframe', '')}_{cfg.strategy.kind}"
    experiment = settings.mlflow_experiment_backtests
    with tracked_run(experiment, run_name=name, tags=tags, settings=settings) as (client, run_id):
        points = [(k, v, 0) for k, v in summary.items()]
        log_outcome(client, run_id, cfg.model_dump(mode="json"), points)
        log_folder(client, run_id, Path(cfg.output), ["sweep.csv", "sweep.json"])
    return run_id


def log_tuning(result: TuneResult, cfg: RunConfig, settings: Settings | None = None) -> str:
    """Record a tuning study in the training experiment: every trial's value as a step."""
    settings = settings or get_settings()
    tags = {
        **base_tags("tune"),
        "symbol": cfg.data.label,
        "timeframe": cfg.data.timeframe,
        "feature_set": cfg.features,
        "study": result.study.study_name,
        "target": result.target,
        "best_kind": result.best_kind,
    }
    name = f"tune_{cfg.data.label}_{cfg.data.timeframe}_{result.target}"
    experiment = settings.mlflow_experiment_training
    with tracked_run(experiment, run_name=name, tags=tags, settings=settings) as (client, run_id):
        points: list[tuple[str, Any, int]] = [
            (f"best.{result.metric}", result.best_value, 0),
            ("n_trials", result.n_trials, 0),
            ("n_complete", result.n_complete, 0),
            ("n_pruned", result.n_pruned, 0),
            ("seconds", result.seconds, 0),
        ]
        if result.stacked_score is not None:
            points.append((f"stacked.{result.metric}", result.stacked_score, 0))
        if "value" in result.trials and "number" in result.trials:
            points += [
                (f"trial.{result.metric}", value, int(number))
                for number, value in zip(
                    result.trials["number"], result.trials["value"], strict=True
                )
            ]
        params = {**cfg.model_dump(mode="json"), "best": result.best_params}
        log_outcome(client, run_id, params, points)
        log_folder(client, run_id, result.output, TUNING_ARTIFACTS)
    return run_id


@dataclass(frozen=True)
class MLflowRecorder:
    """Records what the core produces as MLflow runs: the recorder that the CLI, the job tasks
    and the Python API pass to :func:`trademl.workflow.run`, :func:`trademl.backtest.runner.backtest`
    and :func:`trademl.tuning.tune` when tracking is on.

    Parameters
    ----------
    settings : Settings
        The tracking backend and experiment names.
    trigger : str
        Why the work runs (manual, scheduled, drift, performance): a tag of every run, and
        non-manual training goes to the retraining experiment.
    """

    settings: Settings
    trigger: str = "manual"

    def check(self, cfg: RunConfig) -> None:
        """Fail before training: an unreachable backend, a bad trigger or gate metric."""
        preflight(cfg, self.settings, self.trigger)

    def record_training(
        self, cfg: RunConfig, result: RunResult, pipeline: PipelineModel, prepared: Prepared
    ) -> RunResult:
        """The run recorded and its pipeline registered; ``result`` naming both."""
        tracked = track_training(
            cfg, result, pipeline, prepared, settings=self.settings, trigger=self.trigger
        )
        logger.info("MLflow run {} ({})", tracked.run_id, tracked.reason or "not registered")
        return replace(
            result,
            run_id=tracked.run_id,
            model_name=tracked.model_name,
            model_version=tracked.model_version,
            alias=tracked.alias,
            registry_reason=tracked.reason,
        )

    def record_backtest(self, run: BacktestRun, cfg: BacktestConfig) -> None:
        """See :func:`log_backtest`."""
        log_backtest(run, cfg, self.settings, trigger=self.trigger)

    def record_sweep(self, table: pd.DataFrame, cfg: BacktestConfig) -> None:
        """See :func:`log_sweep`."""
        log_sweep(table, cfg, self.settings)

    def record_tuning(self, result: TuneResult, cfg: RunConfig) -> None:
        """See :func:`log_tuning`."""
        log_tuning(result, cfg, self.settings)


def recorder_for(settings: Settings, trigger: str = "manual") -> MLflowRecorder | None:
    """The MLflow recorder when ``settings.tracking`` is on, else None (nothing recorded)."""
    return MLflowRecorder(settings, trigger) if settings.tracking else None
