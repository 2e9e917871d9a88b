"""``trademl serve``: the HTTP and WebSocket API on uvicorn; ``trademl dashboard``: the same
server, with its dashboard (``/ui``) opened in a browser once it answers."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
import webbrowser
from typing import Annotated

import typer

from trademl.config import get_settings

HostOption = Annotated[
    str | None, typer.Option("--host", help="Address to bind (TRADEML_SERVE_HOST).")
]
PortOption = Annotated[
    int | None, typer.Option("--port", min=1, max=65535, help="Port (TRADEML_SERVE_PORT).")
]
_UVICORN_LEVELS = {"TRACE": "trace", "DEBUG": "debug", "WARNING": "warning", "ERROR": "error"}


def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes (TRADEML_SERVE_WORKERS)."),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = False,
) -> None:
    """Serve predictions, signals, indicators, jobs and the registry over HTTP and WebSocket.

    With no arguments it serves, on 127.0.0.1:8000, every model of the registry under
    TRADEML_HOME that carries one of TRADEML_SERVE_ALIASES (the first found); a model with
    none of them is not served unless TRADEML_SERVE_LATEST_UNPROMOTED is set. API docs at
    /docs, the dashboard at /ui.
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


def dashboard_url(host: str, port: int) -> str:
    """The dashboard's URL on a server bound to ``host``:``port`` (a wildcard bind is reached
    on the loopback address)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/ui"


def _open_when_answering(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url.removesuffix("/ui") + "/health", timeout=2):
                webbrowser.open(url)
                return
        except OSError:
            time.sleep(0.5)


def dashboard(
    host: HostOption = None,
    port: PortOption = None,
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the dashboard in a browser.")
    ] = True,
) -> None:
    """Serve the API with its web dashboard and open the dashboard (/ui) in a browser.

    The same server as `trademl serve` (one worker): Market, Live, Backtests, Models,
    Monitoring and Jobs pages in English, Russian or Spanish. Promotions, rollbacks and
    training from the pages need signing in with the API key (TRADEML_API_KEY).
    """
    settings = get_settings()
    url = dashboard_url(host or settings.serve_host, port or settings.serve_port)
    typer.echo(f"dashboard: {url}")
    if open_browser:
        threading.Thread(target=_open_when_answering, args=(url,), daemon=True).start()
    serve(host=host, port=port, workers=1, access_log=False)
