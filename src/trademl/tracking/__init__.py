"""Experiment tracking and the model registry, on MLflow: the outer layer around the core.

Every ``trademl train``, ``tune`` and ``backtest`` is an MLflow run; a training run's pipeline
model (features + label spec + fitted models) is registered, promoted through a gate against
the naive baselines and the champion, and rolled back, each decision recorded with its reason.
"""

from trademl.tracking.client import connect, experiment_id
from trademl.tracking.gate import Evidence, GateResult, evaluate_gate
from trademl.tracking.pipeline import load_pipeline
from trademl.tracking.recorders import MLflowRecorder, recorder_for
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
    "MLflowRecorder",
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
    "recorder_for",
    "resolve_version",
    "rollback",
    "search_runs",
]
