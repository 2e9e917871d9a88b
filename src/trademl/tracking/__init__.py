"""Experiment tracking, the pipeline model and the model registry, on MLflow.

Every ``trademl train``, ``tune`` and ``backtest`` is an MLflow run; a training run's pipeline
model (features + label spec + fitted models) is registered, promoted through a gate against
the naive baselines and the champion, and rolled back, each decision recorded with its reason.
"""

from trademl.tracking.client import connect, experiment_id
from trademl.tracking.gate import Evidence, GateResult, evaluate_gate
from trademl.tracking.pipeline import PipelineModel, load_pipeline
from trademl.tracking.registry import (
    VersionInfo,
    check_gate,
    history,
    list_models,
    list_versions,
    promote,
    resolve_version,
    rollback,
)
from trademl.tracking.runs import best_run, search_runs

__all__ = [
    "Evidence",
    "GateResult",
    "PipelineModel",
    "VersionInfo",
    "best_run",
    "check_gate",
    "connect",
    "evaluate_gate",
    "experiment_id",
    "history",
    "list_models",
    "list_versions",
    "load_pipeline",
    "promote",
    "resolve_version",
    "rollback",
    "search_runs",
]
