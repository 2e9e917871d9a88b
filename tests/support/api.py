"""Helpers of the API suites (serving, security): a free port, a ``trademl serve`` process
waited for until it answers (or any server command, :func:`cli_server`), and a job polled over
HTTP until it finishes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient

from trademl.jobs import JobState


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_answering(
    process: subprocess.Popen[Any], url: str, output: Callable[[], str], timeout_s: float = 60
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's ``output()`` if the process
    exits first, and after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, output()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {timeout_s:g} s"
        time.sleep(0.25)


def finished_job(
    client: TestClient, job_id: str, headers: Mapping[str, str], timeout_s: float = 30
) -> dict[str, Any]:
    """``GET /api/v1/jobs/{job_id}`` until the job is in a final state or ``timeout_s`` passed;
    the last body."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=dict(headers)).json()
        if JobState(job["state"]).finished or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.05)


@dataclass
class CliServer:
    """A ``trademl`` server command running on 127.0.0.1: its base URL, and its output once it
    has stopped."""

    url: str
    output: str = ""


@contextmanager
def cli_server(arguments: list[str], env: Mapping[str, str]) -> Iterator[CliServer]:
    """Run ``trademl ARGUMENTS --port P`` until the block ends (SIGINT then), waiting until
    ``/health`` answers; fails when it does not stop cleanly or printed a traceback."""
    port = free_port()
    command = "from trademl.cli.app import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", command, *arguments, "--port", str(port)],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = CliServer(f"http://127.0.0.1:{port}")
    try:
        wait_until_answering(
            process, f"{server.url}/health", lambda: process.stdout.read() if process.stdout else ""
        )
        yield server
    finally:
        process.send_signal(signal.SIGINT)
        server.output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, server.output
    assert "Traceback" not in server.output, server.output
