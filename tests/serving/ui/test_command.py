"""``trademl dashboard``: the server of ``trademl serve`` with the dashboard, on an empty home."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from tests.support.api import free_port, wait_until_answering

from trademl.cli.serve import dashboard_url


def test_dashboard_url_reaches_a_wildcard_bind_on_loopback() -> None:
    assert dashboard_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/ui"
    assert dashboard_url("::1", 9000) == "http://[::1]:9000/ui"


def test_dashboard_command_serves_the_pages(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TRADEML_HOME": str(tmp_path / "home"), "TRADEML_MODEL_RELOAD_S": "0"}
    for name in ("TRADEML_STORE_URL", "TRADEML_MLFLOW_TRACKING_URI", "TRADEML_JOBS_URL"):
        env.pop(name, None)
    command = "from trademl.cli.app import main; main()"
    server = subprocess.Popen(
        [sys.executable, "-c", command, "dashboard", "--no-open", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(
            server, f"{base}/health", lambda: server.stdout.read() if server.stdout else ""
        )
        empty = httpx.get(f"{base}/ui/market", timeout=10, headers={"Accept-Language": "es"})
        assert empty.status_code == 404 and "the store holds no candles yet" in empty.text
        assert '<html lang="es">' in empty.text and "Mercado" in empty.text
        models = httpx.get(f"{base}/ui/models", timeout=10)
        assert models.status_code == 200 and "No model is registered yet" in models.text
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert f"dashboard: {base}/ui" in output and "Traceback" not in output
