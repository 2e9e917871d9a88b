"""The configured MLflow backend: URI, reachability within a timeout, experiments.

Every function of :mod:`trademl.tracking` goes through :func:`connect`, so an unreachable
backend fails fast with a :class:`~trademl.errors.TrackingError` instead of MLflow's own
retries (minutes for a database that does not answer).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from trademl.config import Settings, get_settings
from trademl.errors import ConfigError, TrackingError
from trademl.redact import redact as shared_redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Backends already checked in this process: the check costs a connection, not worth repeating.
_reachable: set[str] = set()
_lock = threading.Lock()
_fluent_lock = threading.RLock()


def redact(uri: str) -> str:
    """``uri`` without its password, for messages (the shared :func:`trademl.redact.redact`)."""
    return shared_redact(uri)


def check_reachable(uri: str, timeout_s: float) -> None:
    """Raise :class:`TrackingError` unless the backend at ``uri`` answers within ``timeout_s``.

    SQLite: the folder of the file is created. PostgreSQL/MySQL: one connection with a
    connect timeout. HTTP(S) tracking server: ``GET /health``.
    """
    scheme = uri.split(":", 1)[0].lower()
    if scheme == "sqlite":
        path = uri.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return
    if scheme.startswith(("postgresql", "postgres", "mysql", "mariadb")):
        _check_database(uri, timeout_s)
        return
    if scheme in ("http", "https"):
        _check_server(uri, timeout_s)
        return
    raise ConfigError(
        f"TRADEML_MLFLOW_TRACKING_URI={redact(uri)!r}: expected sqlite:///path, "
        "postgresql://..., mysql://... or an http(s):// tracking server"
    )


def _check_database(uri: str, timeout_s: float) -> None:
    import sqlalchemy as sa

    from trademl.data.stores.sql_store import normalise_url

    engine = sa.create_engine(
        normalise_url(uri), connect_args={"connect_timeout": max(1, math.ceil(timeout_s))}
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
        raise TrackingError(
            f"MLflow backend {redact(uri)} is unreachable within {timeout_s:g}s: {redact(reason)}"
        ) from None
    finally:
        engine.dispose()


def _check_server(uri: str, timeout_s: float) -> None:
    import httpx

    try:
        response = httpx.get(uri.rstrip("/") + "/health", timeout=timeout_s)
    except httpx.HTTPError as error:
        raise TrackingError(
            f"MLflow tracking server {redact(uri)} is unreachable within {timeout_s:g}s: {redact(str(error))}"
        ) from None
    if response.status_code >= 400:
        raise TrackingError(
            f"MLflow tracking server {redact(uri)} answered HTTP {response.status_code} to /health"
        )


def connect(settings: Settings | None = None) -> MlflowClient:
    """An :class:`mlflow.MlflowClient` on the configured backend, checked reachable.

    Bounds MLflow's HTTP requests by ``settings.mlflow_timeout_s`` without retries. The
    process-wide fluent API is left alone: see :func:`fluent`.

    Raises
    ------
    TrackingError
        The backend does not answer within ``settings.mlflow_timeout_s``.
    """
    settings = settings or get_settings()
    uri = settings.mlflow_uri
    timeout = settings.mlflow_timeout_s
    # MLflow reads these per request; without them an unreachable server is retried for minutes.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(timeout)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with _lock:
        if uri not in _reachable:
            check_reachable(uri, timeout)
            _reachable.add(uri)
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def fluent(settings: Settings | None = None) -> Iterator[MlflowClient]:
    """Point MLflow's process-wide fluent API (``start_run``, ``log_model``,
    ``register_model``) at the configured backend for the duration of the block.

    The fluent API reads one global tracking URI, so blocks are serialised by a process-wide
    re-entrant lock: a server refreshing its models or a job thread on another backend can
    never redirect a run being logged. Everything else uses explicit clients from
    :func:`connect` and needs no lock.
    """
    import mlflow

    settings = settings or get_settings()
    with _fluent_lock:
        client = connect(settings)
        # Left pointing at this backend afterwards (never reset to MLflow's default, a
        # ./mlflow.db in the working directory): the last backend used is the best guess for
        # a user's own mlflow calls in the same process.
        mlflow.set_tracking_uri(settings.mlflow_uri)
        mlflow.set_registry_uri(settings.mlflow_uri)
        yield client


def experiment_id(client: MlflowClient, name: str, settings: Settings | None = None) -> str:
    """The id of experiment ``name``, created with the configured artifact location if new."""
    settings = settings or get_settings()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = settings.mlflow_artifacts
    if "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).resolve().as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=f"{location}/{name}"))
    except Exception:
        # Another process created it between the lookup and the create.
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)
