"""What a run writes: per-fold and pooled out-of-sample metrics beside the baselines, the wide
predictions frame, rolling coverage, the Markdown summary and the run folder itself."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import yaml

from trademl import __version__
from trademl.atomic import atomic_path
from trademl.config import RunConfig
from trademl.features.cache import FEATURE_CONTRACT
from trademl.features.sets import FeatureSet
from trademl.models.maxmin import MaxMinPredictor
from trademl.models.naive import BASELINE_PREFIX
from trademl.monitoring.profile import MonitoringProfile, build_profile
from trademl.pipeline import RUN_FILE, PipelineModel, save_pipeline, warmup_bars
from trademl.preparation import Prepared
from trademl.validation.coverage import rolling_coverage, worst_window
from trademl.validation.metrics import classification_metrics, interval_coverage, regression_metrics
from trademl.validation.runner import Evaluation
from trademl.validation.selection import TargetChoice
from trademl.validation.summary import markdown_tables


@dataclass(frozen=True)
class RunResult:
    """What a run produced (also written under ``output``), and where MLflow recorded it
    (``run_id`` None when tracking is off; ``model_version`` None when not registered)."""

    output: Path
    folds: pd.DataFrame
    summary: pd.DataFrame
    predictions: pd.DataFrame
    data_hash: str
    seconds: float
    run_id: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    alias: str | None = None
    registry_reason: str | None = None
    # "{kind}_{bars}" -> what serves the target and the tests that chose it.
    choices: dict[str, TargetChoice] = field(default_factory=dict)


def fold_records(
    evaluation: Evaluation, kind: str, horizon: str, bars: int, alpha: float
) -> list[dict[str, Any]]:
    """One row per test fold and model of one target: the fold's span and its out-of-sample
    metrics (with block-bootstrap intervals), baselines flagged."""
    records = []
    for fold, part in evaluation.predictions.groupby("fold"):
        for name in evaluation.models:
            row: dict[str, Any] = {
                "fold": int(str(fold)),
                "target": kind,
                "horizon": horizon,
                "horizon_bars": bars,
                "model": name,
                "baseline": name.startswith(BASELINE_PREFIX),
                "test_start": part.index[0],
                "test_end": part.index[-1],
            }
            row.update(_metrics(part, name, evaluation.task, bars))
            records.append(row)
    return records


def _metrics(
    part: pd.DataFrame,
    name: str,
    task: str,
    bars: int = 1,
    *,
    window: int | None = None,
    nominal: float | None = None,
) -> dict[str, float]:
    # Intervals of accuracy, R², IC and coverage resample blocks of rows (labels `bars` ahead
    # overlap); with `window`, the rolling coverage's window farthest from `nominal`.
    y, prediction = part["target"].to_numpy(), part[name].to_numpy()
    if task == "classification":
        return classification_metrics(y, prediction, horizon=bars)
    values = regression_metrics(y, prediction, horizon=bars)
    if f"{name}__lo" in part:
        lower, upper = part[f"{name}__lo"].to_numpy(), part[f"{name}__hi"].to_numpy()
        coverage = interval_coverage(y, lower, upper, horizon=bars)
        values.update(
            {
                "coverage": coverage["coverage"],
                "coverage_lo": coverage["coverage_lo"],
                "coverage_hi": coverage["coverage_hi"],
                "interval_width": coverage["mean_width"],
            }
        )
        if window is not None and nominal is not None:
            rolling = rolling_coverage(y, lower, upper, window)
            values["coverage_worst_window"] = worst_window(rolling, nominal)
    if f"{name}__mclo" in part:
        mc = interval_coverage(
            y, part[f"{name}__mclo"].to_numpy(), part[f"{name}__mchi"].to_numpy()
        )
        values.update(
            {"coverage_mc_dropout": mc["coverage"], "interval_width_mc_dropout": mc["mean_width"]}
        )
    return values


def summary_table(
    predictions: list[pd.DataFrame], folds: pd.DataFrame, cfg: RunConfig, horizons: dict[str, int]
) -> pd.DataFrame:
    """Pooled out-of-sample metrics over every test row, per target, horizon and model."""
    rows = []
    for frame in predictions:
        kind, bars = frame.attrs["target"], frame.attrs["horizon_bars"]
        horizon = next(name for name, b in horizons.items() if b == bars)
        task = "classification" if kind == "direction" else "regression"
        target_column = f"target__{kind}_{bars}"
        for name in frame.attrs["models"]:
            part = pd.DataFrame(
                {"target": frame[target_column], name: frame[f"{name}__{kind}_{bars}"]}
            )
            for bound in ("lo", "hi", "mclo", "mchi"):
                column = f"{name}__{kind}_{bars}__{bound}"
                if column in frame:
                    part[f"{name}__{bound}"] = frame[column]
            part = part.dropna(subset=["target"])
            row = {
                "target": kind,
                "horizon": horizon,
                "horizon_bars": bars,
                "model": name,
                "baseline": name.startswith(BASELINE_PREFIX),
                "folds": int(frame["fold"].nunique()),
            }
            row.update(
                _metrics(
                    part,
                    name,
                    task,
                    bars,
                    window=cfg.uncertainty.coverage_window,
                    nominal=1.0 - cfg.uncertainty.alpha,
                )
            )
            rows.append(row)
    summary = pd.DataFrame.from_records(rows)
    summary.attrs["alpha"] = cfg.uncertainty.alpha
    return summary


def wide_predictions(evaluation: Evaluation, kind: str, bars: int) -> pd.DataFrame:
    """One target's out-of-sample predictions with columns named ``{model}__{kind}_{bars}``
    (and ``target__{kind}_{bars}``), ready to join with the other targets'."""
    suffix = f"{kind}_{bars}"
    frame = evaluation.predictions.rename(
        columns={
            c: (f"target__{suffix}" if c == "target" else c if c == "fold" else _rename(c, suffix))
            for c in evaluation.predictions.columns
        }
    )
    frame.attrs.update(target=kind, horizon_bars=bars, models=evaluation.models)
    return frame


def _rename(column: str, suffix: str) -> str:
    name, _, bound = column.partition("__")
    return f"{name}__{suffix}" + (f"__{bound}" if bound else "")


def join_predictions(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Every target's wide predictions side by side on one time index, with one ``fold``
    column (the latest fold that tested the row)."""
    joined = pd.concat([f.drop(columns="fold") for f in frames], axis=1).sort_index()
    folds = pd.concat([f["fold"] for f in frames], axis=1).max(axis=1)
    joined.insert(0, "fold", folds.astype("int64"))
    joined.index.name = "timestamp"
    return joined


def write_outputs(
    output: Path,
    cfg: RunConfig,
    predictions: pd.DataFrame,
    folds: pd.DataFrame,
    summary: pd.DataFrame,
    digest: str,
    feature_set: FeatureSet,
    candles: pd.DataFrame,
) -> None:
    """Write a run's folder: feature set, predictions, fold and pooled metrics, rolling
    coverage, the Markdown summary, the config and ``run.json`` (each file atomically)."""
    fingerprint = feature_set.fingerprint()
    output.mkdir(parents=True, exist_ok=True)
    # The set the saved models read (the config's plus any HAR columns): load it with
    # trademl.features.load_feature_set to compute their inputs.
    with atomic_path(output / "feature_set.yaml") as temp:
        Path(temp).write_text(
            yaml.safe_dump(
                feature_set.model_dump(mode="json", exclude_defaults=True), sort_keys=False
            )
        )
    with atomic_path(output / "predictions.parquet") as temp:
        predictions.to_parquet(temp)
    with atomic_path(output / "folds.csv") as temp:
        folds.to_csv(temp, index=False)
    with atomic_path(output / "summary.csv") as temp:
        summary.to_csv(temp, index=False)
    with atomic_path(output / "coverage.parquet") as temp:
        coverage_paths(predictions, cfg.uncertainty.coverage_window).to_parquet(temp)
    with atomic_path(output / "summary.md") as temp:
        Path(temp).write_text(summary_markdown(summary, cfg))
    with atomic_path(output / "config.yaml") as temp:
        Path(temp).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    meta = {
        "trademl_version": __version__,
        "python": platform.python_version(),
        "seed": cfg.seed,
        "data_hash": digest,
        "feature_set": cfg.features,
        "feature_set_fingerprint": fingerprint,
        "symbol": cfg.data.symbol,
        "timeframe": cfg.data.timeframe,
        "first_bar": candles.index[0].isoformat(),
        "last_bar": candles.index[-1].isoformat(),
        "bars": len(candles),
    }
    with atomic_path(output / RUN_FILE) as temp:
        Path(temp).write_text(json.dumps(meta, indent=2))


def coverage_paths(predictions: pd.DataFrame, window: int) -> pd.DataFrame:
    """Rolling coverage of every interval in ``predictions`` (the wide out-of-sample frame).

    Returns
    -------
    pandas.DataFrame
        One row per model, target and out-of-sample row from the ``window``-th on (of the rows
        with a label): ``timestamp``, ``model``, ``target`` (``{kind}_{bars}``), ``coverage``
        over the trailing ``window`` rows, and ``alpha``, the adaptive level used at that row
        (NaN without adaptive intervals).
    """
    frames = []
    for column in predictions.columns:
        if not column.endswith("__lo"):
            continue
        name, _, label = column[: -len("__lo")].partition("__")
        truth = predictions[f"target__{label}"]
        rows = truth.notna() & predictions[column].notna()
        part = predictions.loc[rows]
        values = rolling_coverage(
            part[f"target__{label}"], part[column], part[f"{name}__{label}__hi"], window
        )
        if len(values) == 0:
            continue
        level = part.get(f"{name}__{label}__alpha", pd.Series(np.nan, index=part.index))
        ends = part.index[len(part) - len(values) :]
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "target": label,
                    "coverage": values,
                    "alpha": level.to_numpy()[len(part) - len(values) :],
                },
                index=pd.Index(ends, name="timestamp"),
            )
        )
    columns = ["model", "target", "coverage", "alpha"]
    return pd.concat(frames) if frames else pd.DataFrame(columns=columns)


def summary_markdown(summary: pd.DataFrame, cfg: RunConfig) -> str:
    """The out-of-sample summary as Markdown tables, baselines beside the models."""
    lines = [f"# {cfg.data.label} {cfg.data.timeframe}: out-of-sample results", ""]
    lines += markdown_tables(summary)
    lines.append(
        f"Intervals: nominal coverage {1 - cfg.uncertainty.alpha:.0%}; worst window: the "
        f"rolling coverage over {cfg.uncertainty.coverage_window} rows farthest from nominal. "
        "Confidence intervals: circular block bootstrap over blocks of max(3 h, n^(1/3)) rows "
        "(labels h bars ahead overlap); Wilson's for 1-bar accuracy."
    )
    return "\n".join(lines) + "\n"


class TrainingRecorder(Protocol):
    """What records a training run outside the core (the tracking layer's MLflow recorder).

    :func:`trademl.workflow.run` calls :meth:`check` before any work, so an unreachable
    backend fails at once, and :meth:`record_training` once the run folder is complete.
    """

    def check(self, cfg: RunConfig) -> None:
        """Fail now if the run could not be recorded."""

    def record_training(
        self, cfg: RunConfig, result: RunResult, pipeline: PipelineModel, prepared: Prepared
    ) -> RunResult:
        """Record the finished run; ``result`` with where it was recorded."""


def _profile(cfg: RunConfig, result: RunResult, prepared: Prepared) -> MonitoringProfile | None:
    """The served model's monitoring reference (single-symbol runs; a panel's rows mix
    symbols, whose losses a per-series detector cannot separate)."""
    if not cfg.monitoring.enabled or cfg.data.panel:
        return None
    return build_profile(
        cfg,
        prepared.X,
        prepared.labels,
        result.predictions,
        result.choices,
        arl0=cfg.monitoring.arl0,
        alpha=cfg.uncertainty.alpha,
        seed=cfg.seed,
    )


def finish_run(
    cfg: RunConfig,
    result: RunResult,
    final: MaxMinPredictor,
    prepared: Prepared,
    recorder: TrainingRecorder | None,
    report: Callable[[float, str], None],
) -> RunResult:
    """Save the run's pipeline model beside its outputs, then hand the run to ``recorder``.

    The pipeline (``pipeline.pkl``, its SHA-256 in ``run.json``) is what every later step
    serves: :func:`trademl.pipeline.load_run_pipeline` loads it without MLflow, and the
    tracking layer logs this same object.
    """
    record = result.output / RUN_FILE
    meta = json.loads(record.read_text())
    horizons = dict(prepared.horizons)
    pipeline = PipelineModel(
        # A panel's pipeline predicts for its first symbol unless asked for another.
        symbol=cfg.data.members[0],
        timeframe=cfg.data.timeframe,
        horizons=horizons,
        feature_set=prepared.feature_set,
        label_spec={**cfg.labels.model_dump(mode="json"), "horizons_bars": horizons},
        predictor=final,
        feature_columns=list(prepared.X.columns),
        warmup_bars=warmup_bars(prepared.feature_set, cfg.data.timeframe),
        metadata={**meta, "feature_contract": FEATURE_CONTRACT},
        symbols=cfg.data.members if cfg.data.panel else (),
        monitoring=_profile(cfg, result, prepared),
    )
    meta["pipeline_sha256"] = save_pipeline(pipeline, result.output)
    with atomic_path(record) as temp:
        Path(temp).write_text(json.dumps(meta, indent=2))
    if recorder is None:
        report(1.0, "run written")
        return result
    report(1.0, "recording the run")
    return recorder.record_training(cfg, result, pipeline, prepared)
