"""MLflow runs: params from a flattened config, metrics with NaN and inf set aside (never a
lost run), the tags every run carries, and searching runs back.

>>> best_run("direction.intraday.lgbm.log_loss", mode="min")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from trademl import __version__
from trademl.config import Settings, get_settings
from trademl.errors import ConfigError, NotFoundError, TrackingError
from trademl.tracking.client import connect, experiment_id, fluent

if TYPE_CHECKING:
    from mlflow import MlflowClient

MAX_PARAM_LENGTH = 6000
MAX_KEY_LENGTH = 250
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
NONFINITE_TAG = "nonfinite_metrics"
TRIGGERS = ("manual", "scheduled", "drift", "performance")


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys; values as strings cut to MLflow's length limits.

    >>> flatten({"data": {"symbol": "BTCUSDT"}, "models": [{"kind": "lgbm"}]})
    {'data.symbol': 'BTCUSDT', 'models.0.kind': 'lgbm'}
    """
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple) and value and isinstance(value[0], Mapping):
            for position, item in enumerate(value):
                flat.update(flatten(item, f"{name}.{position}."))
        else:
            text = str(list(value) if isinstance(value, tuple) else value)
            flat[name[:MAX_KEY_LENGTH]] = text[:MAX_PARAM_LENGTH]
    return flat


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the trademl source tree, or ``"unknown"`` (an installed wheel)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else "unknown"


def base_tags(kind: str, trigger: str = "manual") -> dict[str, str]:
    """Tags of every trademl run: its kind, trigger, trademl version and git commit."""
    if trigger not in TRIGGERS:
        raise ConfigError(f"trigger {trigger!r}: expected one of {', '.join(TRIGGERS)}")
    commit = git_commit()
    tags = {
        "run_kind": kind,
        "trigger": trigger,
        "trademl_version": __version__,
        "git_commit": commit,
    }
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log ``params`` in batches of MLflow's size."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + PARAMS_PER_BATCH])


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], *, step: int = 0
) -> list[str]:
    """Log the finite ``metrics``; return the names of the others (NaN, inf), not logged.

    A NaN (an AUC on one class, a Sharpe ratio of no trades) says "undefined", not a number:
    logging it would fail on some backends and plot as garbage on others.
    """
    return log_metric_points(client, run_id, [(k, v, step) for k, v in metrics.items()])


def log_metric_points(
    client: MlflowClient, run_id: str, points: list[tuple[str, Any, int]]
) -> list[str]:
    """Log ``(name, value, step)`` points, finite ones only; return the names left out."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    items, skipped = [], []
    for name, value, step in points:
        try:
            number = float(value)
        except (TypeError, ValueError):
            skipped.append(name)
            continue
        if math.isfinite(number):
            items.append(Metric(_metric_key(name), number, stamp, step))
        else:
            skipped.append(name)
    for start in range(0, len(items), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=items[start : start + METRICS_PER_BATCH])
    return skipped


def _metric_key(name: str) -> str:
    # MLflow allows alphanumerics, underscores, dashes, periods, spaces and slashes.
    safe = "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)
    return safe[:MAX_KEY_LENGTH]


def note_nonfinite(client: MlflowClient, run_id: str, names: list[str]) -> None:
    """Record metrics left out for being NaN or inf in a tag (comma separated)."""
    if names:
        client.set_tag(run_id, NONFINITE_TAG, ",".join(sorted(set(names)))[:8000])


def log_outcome(
    client: MlflowClient,
    run_id: str,
    config: Mapping[str, Any],
    points: list[tuple[str, Any, int]],
) -> None:
    """Log ``config`` as flattened params and the metric ``points`` (``(name, value, step)``);
    the points left out for being NaN or inf are named in the :data:`NONFINITE_TAG` tag."""
    log_params(client, run_id, flatten(config))
    note_nonfinite(client, run_id, log_metric_points(client, run_id, points))


@contextlib.contextmanager
def tracked_run(
    experiment: str,
    *,
    run_name: str,
    tags: Mapping[str, str],
    settings: Settings | None = None,
) -> Iterator[tuple[MlflowClient, str]]:
    """An active MLflow run in ``experiment``: FINISHED on exit, FAILED if the body raises."""
    import mlflow
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    with fluent(settings) as client:
        try:
            experiment_number = experiment_id(client, experiment, settings)
            # Nested under a run the caller opened (a notebook, a job), never replacing it.
            active = mlflow.start_run(
                experiment_id=experiment_number,
                run_name=run_name,
                tags=dict(tags),
                nested=mlflow.active_run() is not None,
            )
        except MlflowException as error:
            raise TrackingError(
                f"MLflow refused to start a run in {experiment!r}: {error}"
            ) from None
        run_id = active.info.run_id
        try:
            yield client, run_id
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run(status="FINISHED")


def log_folder(client: MlflowClient, run_id: str, folder: Path, names: list[str]) -> None:
    """Log the files ``names`` of ``folder`` that exist as run artifacts."""
    for name in names:
        path = folder / name
        if path.exists():
            client.log_artifact(run_id, str(path))


# -- search ------------------------------------------------------------------------------------


def search_runs(
    filter_string: str = "",
    *,
    experiments: list[str] | None = None,
    order_by: list[str] | None = None,
    max_results: int = 100,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Runs matching an MLflow filter (``tags.symbol = 'BTCUSDT' and metrics.x < 0.69``).

    Parameters
    ----------
    filter_string : str
        MLflow search syntax over ``params.``, ``metrics.``, ``tags.``, ``attributes.``.
    experiments : list of str or None
        Experiment names; default the training, backtest and retraining experiments.
    order_by : list of str or None
        E.g. ``["metrics.sharpe DESC"]``; newest first by default.
    max_results : int
        At most this many runs.
    settings : Settings or None
        The tracking backend.

    Returns
    -------
    pandas.DataFrame
        One row per run: ``run_id``, ``experiment``, ``status``, ``start_time`` and the
        ``params.*``, ``metrics.*`` and ``tags.*`` columns.
    """
    settings = settings or get_settings()
    client = connect(settings)
    names = experiments or [
        settings.mlflow_experiment_training,
        settings.mlflow_experiment_backtests,
        settings.mlflow_experiment_retraining,
    ]
    found = {name: client.get_experiment_by_name(name) for name in names}
    ids = {str(e.experiment_id): name for name, e in found.items() if e is not None}
    if not ids:
        return pd.DataFrame(columns=["run_id", "experiment", "status", "start_time"])
    from mlflow.exceptions import MlflowException

    try:
        runs = client.search_runs(
            list(ids),
            filter_string=filter_string,
            order_by=order_by or ["attributes.start_time DESC"],
            max_results=max_results,
        )
    except MlflowException as error:
        raise ConfigError(f"runs filter {filter_string!r}: {error.message}") from None
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "experiment": ids[run.info.experiment_id],
            "status": run.info.status,
            "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
        }
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def best_run(
    metric: str,
    *,
    mode: Literal["min", "max"] = "max",
    filter_string: str = "",
    experiments: list[str] | None = None,
    settings: Settings | None = None,
) -> pd.Series:
    """The run with the best ``metric`` (a name as logged, without ``metrics.``).

    Raises
    ------
    NotFoundError
        No run logged ``metric``.
    """
    order = "ASC" if mode == "min" else "DESC"
    key = metric.removeprefix("metrics.")
    clause = f"metrics.`{key}` > -1e308"
    runs = search_runs(
        f"{filter_string} and {clause}" if filter_string else clause,
        experiments=experiments,
        order_by=[f"metrics.`{key}` {order}"],
        max_results=1,
        settings=settings,
    )
    if runs.empty:
        raise NotFoundError(f"no run logged the metric {key!r}")
    return runs.iloc[0]


def get_run(run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """One run as a mapping: ids, status, tags, params, metrics and top-level artifacts.

    Raises
    ------
    NotFoundError
        No run ``run_id``.
    """
    from mlflow.exceptions import MlflowException

    client = connect(settings)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise NotFoundError(f"run {run_id!r} does not exist; see `trademl runs list`") from None
    experiment = client.get_experiment(run.info.experiment_id)
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment": experiment.name,
        "status": run.info.status,
        "tags": dict(run.data.tags),
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "artifacts": [a.path for a in client.list_artifacts(run_id)],
    }
