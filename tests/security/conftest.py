"""The attacker's fixtures: a service home with a file just outside it that no request may
read, and an API with a key on an in-process job queue."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.support.api import free_port, wait_until_answering

from trademl.config import Settings
from trademl.serving import create_app

API_KEY = "security-suite-key-7f3a"
HEADERS = {"X-API-Key": API_KEY}
# Lines of a file outside every allowed root: no response, error or log may ever quote them.
SECRET_LINES = (
    "root:$6$SECRET-SHADOW-LINE-91c2e$:19000:0:99999:7:::\ntoken: SECRET-YAML-VALUE-5d1b\n"
)


@dataclass
class Outside:
    """Files outside TRADEML_HOME that a config may try to name."""

    secret: Path  # a YAML-ish file with distinctive secret lines
    folder: Path  # a folder holding it and a fake run


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    folder = tmp_path / "outside"
    folder.mkdir()
    secret = folder / "secret.yaml"
    secret.write_text(SECRET_LINES)
    (folder / "config.yaml").write_text(SECRET_LINES)
    (folder / "predictions.parquet").write_text(SECRET_LINES)
    return Outside(secret, folder)


def assert_no_secret(text: str) -> None:
    """No line of the secret file appears in ``text``."""
    assert "SECRET-SHADOW-LINE" not in text and "SECRET-YAML-VALUE" not in text, text


@pytest.fixture
def api(home: Path) -> Iterator[TestClient]:
    """The app on a fresh home (TRADEML_HOME, as its job tasks read it), with an API key, no
    tracking and an in-process job queue."""
    settings = Settings(
        home=home,
        api_key=API_KEY,  # type: ignore[arg-type]
        tracking=False,
        model_reload_s=0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


# The serving suite's session model (real BTCUSDT 1h, registered in a SQLite registry), for
# the attacks that need a model served: the WebSocket flood and the path-carrying fields.
from tests.serving.conftest import served  # noqa: E402, F401


@dataclass
class Server:
    """A ``trademl serve`` process (uvicorn on 127.0.0.1) and its captured log."""

    base: str  # host:port
    log: Path


@contextlib.contextmanager
def serve(home: Path, env: dict[str, str], log: Path) -> Iterator[Server]:
    """Run ``trademl serve`` on ``home`` with the ``TRADEML_*`` variables of ``env``, its
    stdout and stderr written to ``log``; stopped on exit."""
    port = free_port()
    environ = dict(os.environ)
    for name in ("TRADEML_MLFLOW_TRACKING_URI", "TRADEML_JOBS_URL", "TRADEML_STORE_URL"):
        environ.pop(name, None)
    environ.update(TRADEML_HOME=str(home), TRADEML_MODEL_RELOAD_S="0", **env)
    command = [sys.executable, "-c", "from trademl.cli.app import main; main()", "serve"]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--access-log"],
            env=environ,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"127.0.0.1:{port}"
    try:
        wait_until_answering(process, f"http://{base}/health", log.read_text)
        yield Server(base, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
