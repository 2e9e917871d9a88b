"""``trademl serve`` with no arguments but a port serves the registry under TRADEML_HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
from tests.serving.conftest import API_KEY, MODEL, Served
from tests.support.api import free_port, wait_until_answering


def test_serve_command_answers_over_http(served: Served) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TRADEML_HOME": str(served.home),
        "TRADEML_API_KEY": API_KEY,
        "TRADEML_MODEL_RELOAD_S": "0",
        # The session's versions stay unpromoted (see conftest): serve the latest, as the
        # fixture's own settings do.
        "TRADEML_SERVE_LATEST_UNPROMOTED": "true",
    }
    for name in ("TRADEML_STORE_URL", "TRADEML_MLFLOW_TRACKING_URI", "TRADEML_JOBS_URL"):
        env.pop(name, None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from trademl.cli.app import main; main()",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(
            server, f"{base}/ready", lambda: server.stdout.read() if server.stdout else ""
        )
        response = httpx.post(
            f"{base}/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"]["name"] == MODEL
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "Traceback" not in output
