"""A training run as an MLflow run: params, per-fold and pooled out-of-sample metrics, tags,
artifacts, the pipeline model, its registration and its model card."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from trademl.atomic import atomic_path
from trademl.config import RunConfig, Settings
from trademl.data.timeframes import Timeframe
from trademl.features.horizons import resolve_horizon
from trademl.pipeline import PipelineModel
from trademl.preparation import Prepared
from trademl.run_outputs import RunResult
from trademl.tracking.card import model_card
from trademl.tracking.client import connect, redact
from trademl.tracking.gate import Evidence, check_gate_config
from trademl.tracking.pipeline import log_pipeline
from trademl.tracking.registry import default_name, register_trained
from trademl.tracking.runs import base_tags, log_folder, log_outcome, tracked_run

TRACKING_FILE = "tracking.json"
CARD_FILE = "model_card.md"
RUN_ARTIFACTS = [
    "config.yaml",
    "predictions.parquet",
    "folds.csv",
    "summary.csv",
    "summary.md",
    "run.json",
    CARD_FILE,
    TRACKING_FILE,
]
_ID_COLUMNS = {"fold", "target", "horizon", "horizon_bars", "model", "baseline", "folds"}


@dataclass(frozen=True)
class Tracked:
    """Where a training run was recorded and what the registry made of it."""

    run_id: str
    experiment: str
    model_name: str | None
    model_version: int | None
    alias: str | None
    reason: str | None


def experiment_for(trigger: str, settings: Settings) -> str:
    """Manual runs go to the training experiment; scheduled and triggered ones to retraining."""
    if trigger == "manual":
        return settings.mlflow_experiment_training
    return settings.mlflow_experiment_retraining


def preflight(cfg: RunConfig, settings: Settings, trigger: str) -> None:
    """Fail before any training: an unreachable backend, a bad trigger or gate metric."""
    base_tags("train", trigger)
    timeframe = Timeframe.parse(cfg.data.timeframe).name
    horizons = {str(h): resolve_horizon(h, timeframe) for h in cfg.labels.horizons}
    # A gated target the run does not validate fails here, before any training.
    check_gate_config(cfg.registry.gate, horizons, cfg.labels.kinds)
    connect(settings)


def registered_name(cfg: RunConfig) -> str:
    """The registry name of the run's pipeline model."""
    return cfg.registry.name or default_name(cfg.data.label, cfg.data.timeframe, cfg.output)


def _metric_points(summary: pd.DataFrame, folds: pd.DataFrame) -> list[tuple[str, Any, int]]:
    points: list[tuple[str, Any, int]] = []
    for frame, prefix in ((summary, ""), (folds, "fold.")):
        metrics = [
            c
            for c in frame.columns
            if c not in _ID_COLUMNS and pd.api.types.is_numeric_dtype(frame[c])
        ]
        for row in frame.to_dict("records"):
            step = int(row["fold"]) if prefix else 0
            stem = f"{prefix}{row['target']}.{row['horizon']}.{row['model']}"
            points += [(f"{stem}.{metric}", row[metric], step) for metric in metrics]
    return points


def track_training(
    cfg: RunConfig,
    result: RunResult,
    pipeline: PipelineModel,
    prepared: Prepared,
    *,
    settings: Settings,
    trigger: str = "manual",
) -> Tracked:
    """Record a finished training run in MLflow and register its pipeline model.

    Writes ``model_card.md`` and ``tracking.json`` (run id, model name and version) into the
    run's output folder as well, so a backtest of that folder can name its training run.
    """
    # The set the models read: the config's plus the HAR columns of residual models.
    feature_set = prepared.feature_set
    primary = cfg.models[0].name or cfg.models[0].kind
    horizons = dict(prepared.horizons)
    name = registered_name(cfg)
    meta = json.loads((result.output / "run.json").read_text())
    common = {
        "symbol": cfg.data.label,
        "timeframe": cfg.data.timeframe,
        "horizons": ",".join(f"{k}={v}" for k, v in horizons.items()),
        "feature_set": feature_set.name,
        "feature_set_version": str(feature_set.version),
        "feature_set_fingerprint": prepared.fingerprint,
        "data_hash": prepared.data_hash,
        "primary_model": primary,
    }
    tags = {**base_tags("train", trigger), **common, "registered_model": name}
    experiment = experiment_for(trigger, settings)
    with tracked_run(experiment, run_name=name, tags=tags, settings=settings) as (client, run_id):
        points = _metric_points(result.summary, result.folds)
        log_outcome(client, run_id, cfg.model_dump(mode="json"), points)
        columns = list(prepared.X.columns)
        # The pipeline the run saved, naming the MLflow run that records it.
        pipeline = replace(pipeline, metadata={**pipeline.metadata, "run_id": run_id})
        logged = log_pipeline(pipeline, prepared.candles, [m.kind for m in cfg.models])
        decision = None
        sources = {target: choice.source for target, choice in result.choices.items()}
        if cfg.registry.enabled:
            version_tags = {
                **common,
                "trigger": trigger,
                "git_commit": tags["git_commit"],
                "trademl_version": tags["trademl_version"],
                "horizons_bars": json.dumps(horizons),
                "alpha": str(cfg.uncertainty.alpha),
                "warmup_bars": str(pipeline.warmup_bars),
                # What serves each target: the gate judges the served forecasts.
                "sources": json.dumps(sources),
            }
            description = (
                f"{cfg.data.label} {cfg.data.timeframe}: {primary} on feature set "
                f"{feature_set.name} v{feature_set.version}, horizons {tags['horizons']}, "
                f"trained on {meta['first_bar']} → {meta['last_bar']} "
                f"(data {prepared.data_hash[:12]}), run {run_id}"
            )
            decision = register_trained(
                logged.model_uri,
                name,
                candidate=Evidence(
                    result.predictions,
                    primary,
                    horizons,
                    cfg.uncertainty.alpha,
                    "this run",
                    sources,
                ),
                gate=cfg.registry.gate,
                description=description,
                tags=version_tags,
                settings=settings,
            )
            client.set_tag(run_id, "registered_version", str(decision.version))
        card = model_card(
            cfg,
            result.summary,
            meta,
            name=name if decision else None,
            version=decision.version if decision else None,
            run_id=run_id,
            feature_columns=columns,
            gate_reason=decision.reason if decision else None,
            choices=result.choices,
            gate=decision.gate if decision else None,
        )
        tracked = Tracked(
            run_id,
            experiment,
            decision.name if decision else None,
            decision.version if decision else None,
            decision.alias if decision else None,
            decision.reason if decision else None,
        )
        _write(result.output, card, tracked, settings)
        log_folder(client, run_id, result.output, RUN_ARTIFACTS)
    return tracked


def _write(output: Path, card: str, tracked: Tracked, settings: Settings) -> None:
    with atomic_path(output / CARD_FILE) as temp:
        Path(temp).write_text(card)
    record = {
        "run_id": tracked.run_id,
        "experiment": tracked.experiment,
        "model_name": tracked.model_name,
        "model_version": tracked.model_version,
        "alias": tracked.alias,
        "reason": tracked.reason,
        "tracking_uri": redact(settings.mlflow_uri),
    }
    with atomic_path(output / TRACKING_FILE) as temp:
        Path(temp).write_text(json.dumps(record, indent=2))
