"""What the routes depend on, each named once: the serving state and the API-key check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from trademl.config import Settings
from trademl.jobs import JobQueue
from trademl.monitoring.journal import Journal
from trademl.monitoring.writer import LogWriter
from trademl.serving.errors import ApiError
from trademl.serving.feeds import StreamHub
from trademl.serving.host import ModelHost
from trademl.serving.metrics import Metrics
from trademl.serving.predict import PredictionService
from trademl.serving.store import StoreReader

API_KEY_HEADER = "X-API-Key"


@dataclass
class ServingState:
    """Everything an app serves from; kept on ``app.state.serving``."""

    settings: Settings
    host: ModelHost
    store: StoreReader
    predictions: PredictionService
    metrics: Metrics
    streams: StreamHub
    queue: JobQueue | None = None
    owns_queue: bool = False
    # Every answered prediction is committed here before the answer leaves (None: not logged).
    log: LogWriter | Journal | None = None
    extras: dict[str, object] = field(default_factory=dict)

    def job_queue(self) -> JobQueue:
        """The job queue (opened at start-up)."""
        if self.queue is None:
            raise ApiError(503, "the job queue is not open", "Unavailable")
        return self.queue


async def get_state(request: Request) -> ServingState:
    """The app's serving state (a coroutine: FastAPI runs a sync dependency in the thread pool,
    a hop that costs the cached store path a visible share of its time)."""
    state: ServingState = request.app.state.serving
    return state


State = Annotated[ServingState, Depends(get_state)]

_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The API key.")


def check_api_key(settings: Settings, given: str | None) -> None:
    """Raise a 401 (missing key) or 403 (wrong key, or none configured on the server)."""
    configured = settings.api_key
    if configured is None:
        raise ApiError(
            403,
            "this server has no API key configured (TRADEML_API_KEY), so the endpoints that "
            "need one are disabled",
        )
    if not given:
        raise ApiError(401, f"missing API key: send it in the {API_KEY_HEADER} header")
    if not hmac.compare_digest(given.encode(), configured.get_secret_value().encode()):
        raise ApiError(403, f"wrong API key in the {API_KEY_HEADER} header")


def require_api_key(
    request: Request, key: Annotated[str | None, Security(_key_header)] = None
) -> None:
    """Dependency: the request carries the server's API key."""
    check_api_key(request.app.state.serving.settings, key)


ApiKey = Depends(require_api_key)


def require_api_key_if_configured(
    request: Request, key: Annotated[str | None, Security(_key_header)] = None
) -> None:
    """Dependency: the request carries the server's API key, when the server has one (reads
    of a client's own data: open on a keyless development server, guarded otherwise)."""
    settings = request.app.state.serving.settings
    if settings.api_key is not None:
        check_api_key(settings, key)


ApiKeyIfConfigured = Depends(require_api_key_if_configured)
