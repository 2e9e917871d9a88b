"""Item 8 of issue 14 against a real server (``trademl serve``, uvicorn on 127.0.0.1): slow
clients do not hold up other requests; oversized and deeply nested bodies are a 4xx, never a
5xx; path traversal in every path-carrying field (symbol, model name, job id, job payload
fields) is a 4xx and touches no file outside TRADEML_HOME."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from tests.security.conftest import Server, serve
from tests.serving.conftest import STORE_END, Served
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from trademl.data.stores import open_store

KEY = "attack-suite-KEY-51d0"
HEADERS = {"X-API-Key": KEY}
MAX_BODY = 64 * 1024
CANARY_TEXT = "CANARY-CONTENT-9d1e\n"
PREDICT = {"symbol": "BTCUSDT", "timeframe": "1h"}


@dataclass
class Target:
    """The server under attack, its home and a canary folder beside the home."""

    server: Server
    home: Path
    canary: Path

    def url(self, path: str) -> str:
        return f"http://{self.server.base}{path}"


@pytest.fixture(scope="module")
def target(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("attack")
    home = folder / "home"
    # The session's registry, read through its own home: the attacks may write only here.
    (home / "runs").mkdir(parents=True)
    canary = folder / "canary"
    (canary / "runs" / "ok").mkdir(parents=True)
    for name in ("x", "config.yaml", "runs/ok/predictions.parquet", "market.duckdb"):
        (canary / name).write_text(CANARY_TEXT)
    store_url = f"duckdb:///{(home / 'market.duckdb').as_posix()}"
    with open_store(store_url) as store:
        store.write(served.candles[served.candles.index < STORE_END], "BTCUSDT", "1h")
    env = {
        "TRADEML_STORE_URL": store_url,
        "TRADEML_MLFLOW_TRACKING_URI": served.settings.mlflow_uri,
        "TRADEML_API_KEY": KEY,
        "TRADEML_SERVE_LATEST_UNPROMOTED": "true",
        "TRADEML_MAX_BODY_BYTES": str(MAX_BODY),
    }
    with serve(home, env, folder / "server.log") as server:
        yield Target(server, home, canary)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below ``folder`` with its mtime and size."""
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in [folder, *folder.rglob("*")]
    }


def traversals(target: Target) -> list[str]:
    """Ways out of TRADEML_HOME towards the canary (relative to home and to runs/)."""
    return [
        "../canary/x",
        "../../canary/x",
        "../../../canary/runs/ok",
        str(target.canary / "x"),
        str(target.canary),
        "..\\..\\canary\\x",
        "%2e%2e/%2e%2e/canary/x",
        "....//....//canary/x",
        "~/../../canary",
        "x\x00/../../canary",
        "/etc/passwd",
    ]


def ws_refusal(url: str) -> str:
    """How the server refused a stream: ``close <code>``, or ``status <code>`` at the
    handshake (a path that matches no route); ``open`` when it did not."""
    try:
        with connect(url) as stream:
            stream.recv(timeout=10)
    except ConnectionClosed as closed:
        return f"close {closed.rcvd.code if closed.rcvd else None}"
    except InvalidStatus as refused:
        return f"status {refused.response.status_code}"
    return "open"


def assert_4xx(response: httpx.Response, what: str) -> None:
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.text}"


def test_path_traversal_in_every_path_carrying_field(target: Target) -> None:
    before = snapshot(target.canary)
    with httpx.Client(timeout=30) as client:
        for value in traversals(target):
            asked: dict[str, Any] = {
                "predict symbol": ("POST", "/api/v1/predict", {**PREDICT, "symbol": value}),
                "predict model": ("POST", "/api/v1/predict", {**PREDICT, "model": value}),
                "signals symbol": ("GET", f"/api/v1/signals/{quote(value, safe='')}", None),
                "signals model": ("GET", f"/api/v1/signals/BTCUSDT?model={quote(value)}", None),
                "promote name": ("POST", f"/api/v1/models/{quote(value, safe='')}/promote", {}),
                "rollback name": ("POST", f"/api/v1/models/{quote(value, safe='')}/rollback", {}),
                "job id": ("GET", f"/api/v1/jobs/{quote(value, safe='')}", None),
                "cancel job id": ("DELETE", f"/api/v1/jobs/{quote(value, safe='')}", None),
                "job kind": ("POST", "/api/v1/jobs", {"kind": value, "payload": {}}),
                "train config as a name": (
                    "POST",
                    "/api/v1/jobs",
                    {"kind": "train", "payload": {"config": value}},
                ),
                "indicators preset": (
                    "POST",
                    "/api/v1/indicators",
                    {"candles": [], "preset": value},
                ),
            }
            config = {
                "data": {"symbol": "BTCUSDT", "timeframe": "1h"},
                "features": "minimal",
                "models": [{"kind": "naive"}],
                "output": "runs/attack",
            }
            for field in ("output", "features"):
                asked[f"train {field}"] = (
                    "POST",
                    "/api/v1/train",
                    {"config": {**config, field: value}},
                )
            for field in ("run", "train", "output"):
                backtest = {"run": "runs/ok", "output": "runs/bt", field: value}
                asked[f"backtest {field}"] = ("POST", "/api/v1/backtest", {"config": backtest})
            for what, (method, path, body) in asked.items():
                response = client.request(
                    method,
                    target.url(path),
                    headers=HEADERS,
                    content=None if body is None else json.dumps(body),
                )
                assert_4xx(response, f"{what} = {value!r}")
                assert CANARY_TEXT.strip() not in response.text  # no file's content answered
            batch = {"items": [{**PREDICT, "symbol": value}, {**PREDICT, "model": value}]}
            answer = client.post(target.url("/api/v1/predict/batch"), json=batch)
            assert answer.status_code == 200
            assert all(400 <= item["status"] < 500 for item in answer.json()["results"])
            refusal = ws_refusal(f"ws://{target.server.base}/ws/{quote(value, safe='')}")
            assert refusal in ("close 1008", "status 403", "status 404"), (value, refusal)
    assert snapshot(target.canary) == before


def test_oversized_and_deeply_nested_bodies_are_4xx(target: Target) -> None:
    url = target.url("/api/v1/predict")
    jobs = target.url("/api/v1/jobs")
    json_type = {"content-type": "application/json"}
    with httpx.Client(timeout=30) as client:
        big = json.dumps({**PREDICT, "horizon": "x" * (MAX_BODY + 1)})
        assert client.post(url, content=big, headers=json_type).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
            yield big.encode()[: MAX_BODY // 2]
            yield big.encode()[MAX_BODY // 2 :]

        response = client.post(url, content=chunks(), headers=json_type)
        assert response.status_code == 413, response.text
        for depth in (100, 900, 5_000, 30_000):
            lists = "[" * depth + "]" * depth
            objects = '{"a":' * depth + "1" + "}" * depth
            bodies = {
                "list": lists,
                "object": objects,
                "candles": json.dumps(PREDICT)[:-1] + f', "candles": {lists}}}',
                "job payload": f'{{"kind": "train", "payload": {objects}}}',
                "job config": f'{{"kind": "train", "payload": {{"config": {objects}}}}}',
            }
            for what, body in bodies.items():
                if len(body) > MAX_BODY:
                    continue
                for endpoint in (url, jobs, target.url("/api/v1/train")):
                    answer = client.post(endpoint, content=body, headers={**json_type, **HEADERS})
                    assert_4xx(answer, f"{what} nested {depth} deep to {endpoint}")
        assert client.post(url, json=PREDICT).status_code == 200  # and the server still serves


def test_slow_clients_do_not_block_other_requests(target: Target) -> None:
    host, port = target.server.base.split(":")
    stop = threading.Event()
    held: list[socket.socket] = []

    def dribble(sock: socket.socket) -> None:
        # A body announced at 200 bytes, sent one byte every 50 ms.
        try:
            for byte in json.dumps(PREDICT).ljust(200).encode():
                if stop.is_set():
                    return
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            return

    threads = []
    for index in range(16):
        sock = socket.create_connection((host, int(port)))
        held.append(sock)
        if index % 2:  # holds the connection open after half a request line
            sock.sendall(b"POST /api/v1/pre")
            continue
        head = (
            "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 200\r\n\r\n"
        )
        sock.sendall(head.encode())
        thread = threading.Thread(target=dribble, args=(sock,), daemon=True)
        thread.start()
        threads.append(thread)
    try:
        latencies = []
        with httpx.Client(timeout=10) as client:
            for _ in range(40):
                started = time.perf_counter()
                assert client.get(target.url("/health")).status_code == 200
                assert client.post(target.url("/api/v1/predict"), json=PREDICT).status_code == 200
                latencies.append(time.perf_counter() - started)
        assert max(latencies) < 2.0, f"requests waited behind slow clients: {max(latencies):.2f} s"
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        for sock in held:
            sock.close()
