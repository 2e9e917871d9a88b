"""``trademl serve``: the HTTP and WebSocket API on uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from trademl.config import get_settings

_UVICORN_LEVELS = {"TRACE": "trace", "DEBUG": "debug", "WARNING": "warning", "ERROR": "error"}


def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (TRADEML_SERVE_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port (TRADEML_SERVE_PORT).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes (TRADEML_SERVE_WORKERS)."),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = False,
) -> None:
    """Serve predictions, signals, indicators, jobs and the registry over HTTP and WebSocket.

    With no arguments it serves, on 127.0.0.1:8000, every model the registry under
    TRADEML_HOME holds (its champion, else its latest version). API docs at /docs.
    """
    import uvicorn

    settings = get_settings()
    # One OpenMP thread per worker: LightGBM's spinning pool otherwise burns every core for
    # one-row predictions. Set before the workers import LightGBM.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    uvicorn.run(
        "trademl.serving.app:serve_app",
        factory=True,
        host=host or settings.serve_host,
        port=port or settings.serve_port,
        workers=workers or settings.serve_workers,
        access_log=access_log,
        log_level=_UVICORN_LEVELS.get(settings.log_level, "info"),
    )
