"""The FastAPI app factory.

>>> from trademl.serving import create_app
>>> app = create_app()  # doctest: +SKIP
>>> # uvicorn.run(app) or: trademl serve

At start-up the app loads, for every registered model, its ``champion`` (or its latest version
when none was promoted) and opens the job queue; a background loop re-reads the registry every
``TRADEML_MODEL_RELOAD_S`` seconds and swaps in a new version when an alias moved.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

import anyio
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from loguru import logger

from trademl import __version__
from trademl.config import Settings, get_settings
from trademl.jobs import JobQueue, open_queue
from trademl.monitoring.journal import Journal, journal_folder
from trademl.monitoring.predictions import PredictionLog
from trademl.monitoring.writer import LogWriter
from trademl.serving.deps import ServingState, require_api_key
from trademl.serving.docs import docs_urls, install_guarded_docs
from trademl.serving.errors import install_error_handlers
from trademl.serving.feeds import StreamHub
from trademl.serving.host import ModelHost
from trademl.serving.metrics import Metrics
from trademl.serving.middleware import RequestMiddleware
from trademl.serving.predict import PredictionService
from trademl.serving.routes import indicators, jobs, predict, signals, system
from trademl.serving.routes import models as model_routes
from trademl.serving.routes import trading as trading_routes
from trademl.serving.store import StoreReader
from trademl.serving.stream import router as stream_router
from trademl.serving.trading_gauges import TradingCollector
from trademl.serving.ui import router as ui_router

DESCRIPTION = """Predictions, signals, indicators, backtests and training of trademl.

Endpoints that change state (train, backtest, jobs, promote, rollback, cancel) need the
`X-API-Key` header; with `TRADEML_API_AUTH_ALL=true` every endpoint but `/health` does.
Errors share one shape: `{"error": {"type", "message", "request_id"}}`.
"""


def _job_counts(state: ServingState) -> dict[str, int]:
    return state.queue.counts() if state.queue is not None else {}


def create_app(
    settings: Settings | None = None,
    *,
    models: ModelHost | None = None,
    queue: JobQueue | None = None,
) -> FastAPI:
    """Build the API.

    Parameters
    ----------
    settings : Settings or None
        Registry, store, job queue and the serving knobs; the process settings by default.
    models : ModelHost or None
        The models to serve (refreshed from the registry at start-up); a new host by default.
    queue : JobQueue or None
        The job queue; by default one is opened at start-up (and closed at shutdown).
    """
    settings = settings or get_settings()
    host = models or ModelHost(settings)
    store = StoreReader(settings.market_store_url, latest_ttl_s=settings.store_poll_s)
    state = ServingState(
        settings=settings,
        host=host,
        store=store,
        predictions=PredictionService(host, store),
        metrics=Metrics(lambda: {}, lambda: {}),
        streams=StreamHub(
            store,
            poll_s=settings.store_poll_s,
            max_connections=settings.ws_max_connections,
            max_per_client=settings.ws_max_per_client,
        ),
        queue=queue,
    )
    state.metrics = Metrics(
        lambda: {name: s.version for name, s in host.served.items()},
        lambda: _job_counts(state),
    )
    state.metrics.registry.register(
        TradingCollector(lambda: trading_routes.open_journal(state, create=False))
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_start, state)
        async with anyio.create_task_group() as group:
            if settings.model_reload_s > 0:
                group.start_soon(_reload_loop, state)
            try:
                yield
            finally:
                group.cancel_scope.cancel()
        _stop(state)

    app = FastAPI(
        title="trademl",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        **docs_urls(settings.api_auth_all),
    )
    if settings.api_auth_all:
        install_guarded_docs(app)
    app.state.serving = state
    install_error_handlers(app)
    guard = [Depends(require_api_key)] if settings.api_auth_all else []
    app.include_router(system.health_router)
    for router in (
        system.router,
        predict.router,
        signals.router,
        indicators.router,
        jobs.router,
        model_routes.router,
        trading_routes.router,
        stream_router,
    ):
        app.include_router(router, dependencies=guard if router is not stream_router else [])
    # The dashboard checks the key itself (a signed-in session), pages being browser requests.
    app.include_router(ui_router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(
        RequestMiddleware, max_body_bytes=settings.max_body_bytes, metrics=state.metrics
    )
    return app


def _start(state: ServingState) -> None:
    settings = state.settings
    if settings.prediction_log and state.log is None:
        table = PredictionLog(settings.prediction_log_url or settings.jobs_store_url)
        state.log = (
            Journal(table, journal_folder(settings), process=True)
            if settings.prediction_log_mode == "journal"
            else LogWriter(table)
        )
    try:
        state.host.refresh()
    except Exception as error:
        logger.error("no models loaded at start-up: {}", error)
    if state.queue is None:
        try:
            state.queue = open_queue(state.settings)
            state.owns_queue = True
        except Exception as error:
            logger.error("job queue not opened: {}", error)
    served = ", ".join(f"{n} v{s.version}" for n, s in state.host.served.items()) or "no model"
    logger.info("serving {}", served)
    # Everything loaded so far lives as long as the process: a full collection would walk it
    # on every cycle and show up as p99 latency.
    gc.freeze()


async def _reload_loop(state: ServingState) -> None:
    while True:
        await anyio.sleep(state.settings.model_reload_s)
        try:
            await anyio.to_thread.run_sync(state.host.refresh)
        except Exception as error:
            logger.warning("model reload failed: {}", error)


def _stop(state: ServingState) -> None:
    if state.owns_queue and state.queue is not None:
        # Never hold a shutdown on a running training job: it is marked interrupted and
        # retryable by the next queue opened on the same job store.
        state.queue.close(wait=False)
        state.queue = None
    state.store.close()
    trade_journal = state.extras.pop("trade_journal", None)
    if trade_journal is not None:
        trade_journal.close()  # type: ignore[attr-defined]
    if state.log is not None:
        state.log.close()  # commits what is queued
        state.log = None


def serve_app() -> FastAPI:
    """The app as ``trademl serve`` runs it (a uvicorn factory, so each worker builds its own):
    process settings, logging configured, and no per-request feature log line."""
    from trademl.log import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    # build_features logs every computation at INFO: one line per prediction is noise and
    # costs throughput in a server.
    logger.disable("trademl.features.engine")
    return create_app(settings)
