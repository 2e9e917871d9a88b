"""Item 8 of issue 14 against a real server (``trademl serve``) whose jobs go to a real Celery
worker (``trademl worker`` on Redis): path traversal in every path field of a train or
backtest job config is a 4xx at submit; the same configs written to the job store and the
broker behind the API's back fail on the worker, naming the field and quoting no file; no
file outside TRADEML_HOME changes, no answer is a 5xx, and neither the API key nor the
broker's password is in any answer or in the server's or the worker's log."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from tests.security.conftest import Server, serve
from tests.security.test_attacks import snapshot
from tests.support.jobs import REDIS_URL, Worker, job_settings, require_redis

from trademl.jobs import JobState, open_queue
from trademl.jobs.celery_queue import CeleryQueue, send

pytestmark = pytest.mark.integration

KEY = "celery-attack-KEY-3b8f0e"
HEADERS = {"X-API-Key": KEY}
# Redis accepts any password for its password-less ``default`` user: the URL carries one
# that no answer or log line may repeat.
REDIS_PASSWORD = "Redis-Pw-DISTINCT-a41c9"
CANARY_TEXT = "CANARY-CELERY-CONTENT-6e2d\n"
# What the worker would quote if it read the file: a YAML-looking line of the canary and
# the first line of /etc/passwd.
LEAKS = ("CANARY-CELERY-CONTENT", "root:x:0:0")
QUEUE = f"trademl-security-{os.getpid()}"


def broker_url() -> tuple[str, str | None]:
    """The test Redis URL with a ``default:<password>`` user when it has none, and the
    password the URL carries (``None`` when the given one has its own user part)."""
    parts = urlsplit(REDIS_URL)
    if "@" in parts.netloc:
        return REDIS_URL, None
    netloc = f"default:{REDIS_PASSWORD}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc)), REDIS_PASSWORD


@dataclass
class Target:
    """The server under attack, its worker, its home and a canary folder beside it."""

    server: Server
    worker: Worker
    home: Path
    canary: Path
    secrets: list[str]
    before: dict[str, tuple[int, int]]
    bodies: list[str] = field(default_factory=list)  # every answer's body, for the grep

    def request(
        self, client: httpx.Client, method: str, path: str, body: Any = None
    ) -> httpx.Response:
        url = f"http://{self.server.base}{path}"
        response = client.request(method, url, headers=HEADERS, json=body)
        self.bodies.append(response.text)
        assert response.status_code < 500, f"{method} {path}: {response.text}"
        return response


def _clean_redis(url: str, queue: str) -> None:
    """Drop the module's queue and kombu's bindings of it."""
    import redis

    client = redis.Redis.from_url(url)
    client.delete(queue)
    for key in client.scan_iter(f"_kombu.binding*.{queue}"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    url, password = broker_url()
    require_redis(url)
    folder = tmp_path_factory.mktemp("celery-attack")
    home = folder / "home"
    (home / "runs" / "ok").mkdir(parents=True)
    (home / "configs").mkdir()
    canary = folder / "canary"
    (canary / "runs" / "ok").mkdir(parents=True)
    for name in ("x", "x.yaml", "config.yaml", "runs/ok/predictions.parquet", "market.duckdb"):
        (canary / name).write_text(CANARY_TEXT)
    # A link inside runs/ that points out of home, at the canary.
    (home / "runs" / "link").symlink_to(canary, target_is_directory=True)
    before = snapshot(canary)
    worker = Worker.start(job_settings(home, url, QUEUE))
    env = {
        "TRADEML_API_KEY": KEY,
        "TRADEML_CELERY_BROKER_URL": url,
        "TRADEML_CELERY_QUEUE": QUEUE,
        "TRADEML_TRACKING": "false",
        "TRADEML_LOG_LEVEL": "DEBUG",
    }
    try:
        with serve(home, env, folder / "server.log") as server:
            secrets = [KEY, *([password] if password else [])]
            yield Target(server, worker, home, canary, secrets, before)
    finally:
        worker.stop()
        _clean_redis(url, QUEUE)


def traversals(target: Target) -> dict[str, tuple[str, str]]:
    """Ways out of TRADEML_HOME, each as (a file to read, a folder to write)."""
    return {
        "etc": ("/etc/passwd", "/etc/trademl-attack"),
        "absolute": (str(target.canary / "x.yaml"), str(target.canary / "runs" / "ok")),
        "dotdot": ("../canary/x.yaml", "../canary/runs/ok"),
        "runs dotdot": ("runs/../../canary/x.yaml", "runs/../../canary/runs/ok"),
        "symlink": ("runs/link/x.yaml", "runs/link/runs/ok"),
    }


def attacks(read: str, write: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every path field of a train or backtest config set to ``read`` (a file it names) or
    ``write`` (a folder it writes): field -> (kind, config). A ``features`` value is a file
    only with a .yaml suffix (else a preset name: see the test of that below)."""
    features = read if read.endswith(".yaml") else f"{read}.yaml"
    train = {
        "data": {"symbol": "BTCUSDT", "timeframe": "1h"},
        "features": "minimal",
        "models": [{"kind": "naive"}],
        "validation": {"params": {"test_size": 100}},
        "output": "runs/attack",
    }
    return {
        "train output": ("train", {**train, "output": write}),
        "train features": ("train", {**train, "features": features}),
        "backtest run": ("backtest", {"run": write, "output": "runs/bt"}),
        "backtest train": ("backtest", {"train": read, "output": "runs/bt"}),
        "backtest output": ("backtest", {"run": "runs/ok", "output": write}),
    }


def assert_refusal(message: str, name: str, what: str) -> None:
    """The message names the field (``output: ...``) and quotes no file."""
    assert message.startswith(f"{name.split()[-1]}: "), f"{what}: {message}"
    for leak in LEAKS:
        assert leak not in message, f"{what}: {message}"


def test_every_path_field_is_refused_at_submit(target: Target) -> None:
    with httpx.Client(timeout=30) as client:
        for how, (read, write) in traversals(target).items():
            for name, (kind, config) in attacks(read, write).items():
                what = f"{name} = {how}"
                for path, body in (
                    ("/api/v1/jobs", {"kind": kind, "payload": {"config": config}}),
                    (f"/api/v1/{kind}", {"config": config}),
                ):
                    response = target.request(client, "POST", path, body)
                    assert 400 <= response.status_code < 500, f"{what}: {response.text}"
                    assert_refusal(response.json()["error"]["message"], name, f"{what} {path}")
        listed = target.request(client, "GET", "/api/v1/jobs?limit=1000").json()["jobs"]
        assert [job for job in listed if job["kind"] != "echo"] == []  # none stored
    assert snapshot(target.canary) == target.before


def test_a_path_given_as_a_preset_name_is_never_read(target: Target) -> None:
    """``features: /etc/passwd`` names a preset (no .yaml suffix), not a file: the API may
    queue it, and the worker fails it without opening the file."""
    config = {
        "data": {"symbol": "BTCUSDT", "timeframe": "1h"},
        "features": "/etc/passwd",
        "models": [{"kind": "naive"}],
        "validation": {"params": {"test_size": 100}},
        "output": "runs/preset-attack",
    }
    with httpx.Client(timeout=30) as client:
        body = {"kind": "train", "payload": {"config": config}}
        response = target.request(client, "POST", "/api/v1/jobs", body)
        if response.status_code == 202:
            info = wait_finished(target, client, response.json()["id"], "features preset")
            assert info["state"] == "failed" and info["error"]["type"] == "ConfigError", info
            message = info["error"]["message"]
        else:
            assert 400 <= response.status_code < 500, response.text
            message = response.json()["error"]["message"]
    assert "/etc/passwd" in message and "neither a preset" in message, message
    assert not any(leak in message for leak in LEAKS), message
    assert snapshot(target.canary) == target.before


def wait_finished(target: Target, client: httpx.Client, job_id: str, what: str) -> dict[str, Any]:
    """The job's answer once it is final (two minutes at most)."""
    deadline = time.monotonic() + 120
    while True:
        info: dict[str, Any] = target.request(client, "GET", f"/api/v1/jobs/{job_id}").json()
        if JobState(info["state"]).finished:
            return info
        assert time.monotonic() < deadline, f"{what} never finished: {info}\n{target.worker.tail()}"
        time.sleep(0.1)


def test_the_worker_refuses_what_bypasses_the_api(target: Target) -> None:
    """Jobs written straight to the job store and the broker, as a compromised client of
    either could, skipping the submit check: the worker fails each, naming the field."""
    sent: dict[str, str] = {}
    with open_queue(target.worker.settings) as queue:
        assert isinstance(queue, CeleryQueue)
        for how, (read, write) in traversals(target).items():
            for name, (kind, config) in attacks(read, write).items():
                job = queue.store.create(kind, {"config": config}, queue=QUEUE)
                send(queue.app, job.id, 1, QUEUE)
                sent[job.id] = f"{name} = {how}"
    with httpx.Client(timeout=30) as client:
        for job_id, what in sent.items():
            info = wait_finished(target, client, job_id, what)
            assert info["state"] == "failed", f"{what}: {info}"
            assert info["error"]["type"] == "ConfigError", f"{what}: {info}"
            assert info["retryable"] is False, f"{what}: {info}"
            assert_refusal(info["error"]["message"], what.split(" = ")[0], what)
            assert info.get("result") is None, f"{what}: {info}"
    assert snapshot(target.canary) == target.before
    assert not (target.home / "runs" / "attack").exists()
    assert not Path("/etc/trademl-attack").exists()


def test_no_secret_or_file_content_in_any_answer_or_log(target: Target) -> None:
    with httpx.Client(timeout=30) as client:  # a few more answers: errors and listings
        target.request(client, "GET", "/api/v1/jobs?limit=1000")
        target.request(client, "GET", "/api/v1/jobs/not-a-job")
        target.request(client, "POST", "/api/v1/jobs", {"kind": "echo", "payload": {}})
        target.request(client, "GET", "/health")
    logs = {
        "server": target.server.log.read_text(errors="replace"),
        "worker": target.worker.log.read_text(errors="replace"),
    }
    assert "is outside the folders a job may" in logs["worker"]  # it logged its refusals
    for where, text in {**logs, **dict(enumerate(target.bodies))}.items():
        for secret in [*target.secrets, *LEAKS]:
            assert secret not in text, f"{secret!r} in {where}"
    assert snapshot(target.canary) == target.before
