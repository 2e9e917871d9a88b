"""Every prediction is in the prediction log before its answer is sent: the polling path
(answered from memory), request candles, batch items, the WebSocket stream (once per bar,
however many sockets) and signals, each row naming the request, the model version and the
horizon; nothing lost when the server stops; nothing logged with the log switched off; and a log
that cannot be written refuses predictions with a 503 that names the problem, no secret shown."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from loguru import logger
from starlette.testclient import WebSocketTestSession
from tests.serving.conftest import MODEL, Served
from tests.support.api import free_port, wait_until_answering

from trademl.config import Settings
from trademl.monitoring.journal import journal_folder
from trademl.monitoring.predictions import PredictionLog
from trademl.serving.app import create_app

POLL = {"symbol": "BTCUSDT", "timeframe": "1h"}
SIGNAL = "/api/v1/signals/BTCUSDT?timeframe=1h"
SIGNAL_PATH = "/api/v1/signals/BTCUSDT"
SECRET = "s3cret-Pw-9f2c"


def read_log(url: str, request_id: str = "", timeout_s: float = 60.0) -> pd.DataFrame:
    """The log's rows of ``request_id``; with the journal (the default) they reach the table
    within a second of the answer once the mover runs (its process starts with the server, and
    a loaded machine starts it late), so wait for them."""
    deadline = time.monotonic() + timeout_s
    while True:
        with PredictionLog(url) as log:
            rows = log.read(MODEL)
        rows = rows[rows["request_id"].str.startswith(request_id)]
        if len(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def logged(served: Served, request_id: str) -> pd.DataFrame:
    return read_log(served.settings.jobs_store_url, request_id)


def log_settings(served: Served, url: str, **changes: Any) -> Settings:
    """The session's settings with the prediction log in its own database."""
    return served.settings.model_copy(update={"prediction_log_url": url, **changes})


def until(socket: WebSocketTestSession, kind: str, limit: int = 50) -> list[dict[str, Any]]:
    """The socket's messages up to the first of type ``kind``."""
    messages: list[dict[str, Any]] = []
    while len(messages) < limit:
        messages.append(socket.receive_json())
        if messages[-1]["type"] == kind:
            return messages
    raise AssertionError(f"no {kind} message in {limit}")


def next_of(socket: WebSocketTestSession, kind: str) -> dict[str, Any]:
    return until(socket, kind)[-1]


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """What trademl logs (every level, unredacted by any sink) while the test runs."""
    lines: list[str] = []
    logger.enable("trademl")
    handler = logger.add(lines.append, level="DEBUG", format="{level} {name} {message}")
    yield lines
    logger.remove(handler)
    logger.disable("trademl")


def test_each_answer_is_logged_before_it_is_sent(client: TestClient, served: Served) -> None:
    polled = client.post("/api/v1/predict", json=POLL)
    assert polled.status_code == 200, polled.text
    body = polled.json()
    # Read at once through another connection: committed before the answer left.
    rows = logged(served, polled.headers["x-request-id"])
    assert len(rows) == len(body["horizons"])
    row = rows.iloc[0]
    assert row["model_version"] == body["model"]["version"] and row["source"] == "store"
    assert row["bar_timestamp"] == pd.Timestamp(body["bar_timestamp"])
    horizon = body["horizons"][row["horizon"]]
    assert row["p_up"] == horizon["p_up"] and row["high"] == horizon["high"]
    # The same bar again, answered from memory: logged again, under its own request id.
    again = client.post("/api/v1/predict", json=POLL)
    assert len(logged(served, again.headers["x-request-id"])) == len(body["horizons"])

    window = served.candles.iloc[-served.window_bars :].reset_index()
    window["timestamp"] = window["timestamp"].map(lambda t: t.isoformat())
    candles = window.to_dict("records")
    sent = client.post(
        "/api/v1/predict",
        json={"symbol": "BTCUSDT", "timeframe": "1h", "horizon": "intraday", "candles": candles},
    )
    assert sent.status_code == 200, sent.text
    rows = logged(served, sent.headers["x-request-id"])
    assert list(rows["horizon"]) == ["intraday"] and list(rows["source"]) == ["request"]

    batch = client.post(
        "/api/v1/predict/batch",
        json={
            "items": [
                {"symbol": "BTCUSDT", "timeframe": "1h"},
                {"symbol": "NOPE", "timeframe": "1h"},
            ]
        },
    )
    assert batch.status_code == 200
    rows = logged(served, batch.headers["x-request-id"])
    assert set(rows["request_id"]) == {
        f"{batch.headers['x-request-id']}-0"
    }  # the failed item logs nothing


def test_a_signal_is_logged_under_its_request_id(client: TestClient, served: Served) -> None:
    answer = client.get(
        SIGNAL_PATH, params={"timeframe": "1h", "horizon": "intraday", "preset": "conservative"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    rows = logged(served, answer.headers["x-request-id"])
    assert len(rows) == 1  # the signal's one horizon
    row = rows.iloc[0]
    assert row["request_id"] == answer.headers["x-request-id"]
    assert (row["source"], row["horizon"]) == ("signal", "intraday")
    assert row["model_version"] == body["model"]["version"]
    assert row["bar_timestamp"] == pd.Timestamp(body["bar_timestamp"])
    assert row["p_up"] == body["p_up"] and row["high"] == body["predicted_high"]


@pytest.mark.parametrize("mode", ["journal", "commit"])
def test_a_streamed_bar_is_logged_once_for_all_its_sockets(
    served: Served, tmp_path: Path, mode: str
) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    with (
        TestClient(create_app(log_settings(served, url, prediction_log_mode=mode))) as client,
        client.websocket_connect("/ws/BTCUSDT?timeframe=1h") as first,
        client.websocket_connect("/ws/BTCUSDT?timeframe=1h") as second,
    ):
        messages = [next_of(first, "prediction"), next_of(second, "prediction")]
        # Sent only once logged (committed, or in the journal and moved within moments).
        rows = read_log(url)
    assert messages[0] == messages[1]
    message = messages[0]
    assert len(rows) == len(message["horizons"])  # once, not once per socket
    assert set(rows["source"]) == {"stream"} and rows["request_id"].nunique() == 1
    assert rows["request_id"].iloc[0].startswith("stream-")
    assert set(rows["model_version"]) == {message["model"]["version"]}
    assert set(rows["bar_timestamp"]) == {pd.Timestamp(message["bar_timestamp"])}
    for row in rows.itertuples():
        assert row.p_up == message["horizons"][row.horizon]["p_up"]


def test_with_the_log_off_nothing_is_logged_and_all_is_served(
    served: Served, tmp_path: Path
) -> None:
    database = tmp_path / "log.sqlite"
    settings = log_settings(served, f"sqlite:///{database}", prediction_log=False)
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/predict", json=POLL).status_code == 200
        assert client.get(SIGNAL).status_code == 200
        with client.websocket_connect("/ws/BTCUSDT?timeframe=1h") as socket:
            assert next_of(socket, "prediction")["symbol"] == "BTCUSDT"
    assert not database.exists()  # never even opened


def test_a_dead_log_database_refuses_predictions_without_showing_secrets(
    served: Served, log_lines: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 1: every connection is refused.
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/trademl_log"
    with TestClient(create_app(log_settings(served, url, prediction_log_mode="commit"))) as client:
        assert client.get("/health").status_code == 200  # the server is up
        answers = [client.post("/api/v1/predict", json=POLL), client.get(SIGNAL)]
        with client.websocket_connect("/ws/BTCUSDT?timeframe=1h") as socket:
            received = until(socket, "error")
    for answer in answers:
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["type"] == "StoreError"
        assert (
            "prediction log: cannot write to postgresql://postgres:***@127.0.0.1:1"
            in (error["message"])
        )
        assert error["request_id"] == answer.headers["x-request-id"]
    # The socket gets the error, not an unlogged prediction.
    assert [m["type"] for m in received if m["type"] != "heartbeat"] == ["error"]
    streamed = received[-1]
    assert streamed["error"]["type"] == "StoreError"
    assert "prediction log: cannot write" in streamed["error"]["message"]
    assert any("prediction log" in line for line in log_lines)
    printed = capfd.readouterr()
    for text in [*(a.text for a in answers), str(streamed), *log_lines, printed.out, printed.err]:
        assert SECRET not in text


def test_a_log_file_removed_under_the_server_refuses_predictions(
    served: Served, tmp_path: Path
) -> None:
    folder = tmp_path / "log"
    settings = log_settings(
        served, f"sqlite:///{folder / 'log.sqlite'}", prediction_log_mode="commit"
    )
    with TestClient(create_app(settings)) as (client):
        assert client.post("/api/v1/predict", json=POLL).status_code == 200
        shutil.rmtree(folder)
        # The open connection would write on into the unlinked file: refused instead.
        removed = client.post("/api/v1/predict", json=POLL)
        assert removed.status_code == 503, removed.text
        assert "removed or replaced" in removed.json()["error"]["message"]
        # And so on while the database cannot be opened again.
        later = client.post("/api/v1/predict", json=POLL)
        assert later.status_code == 503 and "prediction log" in later.json()["error"]["message"]


def test_a_restart_loses_no_logged_prediction(served: Served, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    with TestClient(create_app(log_settings(served, url))) as first:
        answered = [first.post("/api/v1/predict", json=POLL) for _ in range(20)]
        answered.append(first.get(SIGNAL))
    # A new server on the same database, after the first one's shutdown.
    with TestClient(create_app(log_settings(served, url))) as second:
        answered.append(second.post("/api/v1/predict", json=POLL))
    with PredictionLog(url) as log:
        rows = log.read(MODEL)
    horizons = len(answered[0].json()["horizons"])
    expected = {a.headers["x-request-id"]: horizons for a in answered[:20] + answered[-1:]}
    expected[answered[20].headers["x-request-id"]] = 1  # the signal's horizon
    # Every answer's rows, each once: nothing lost, nothing written twice.
    assert rows["request_id"].value_counts().to_dict() == expected


def journal_files(settings: Settings) -> list[Path]:
    return sorted(journal_folder(settings).glob("*.jsonl"))


def test_the_journal_holds_an_answer_when_it_is_sent_and_the_table_soon_after(
    served: Served, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    settings = log_settings(served, url)  # the default: the journal
    assert settings.prediction_log_mode == "journal"
    with TestClient(create_app(settings)) as client:
        answer = client.post("/api/v1/predict", json=POLL)
        assert answer.status_code == 200, answer.text
        request_id = answer.headers["x-request-id"]
        # In the journal when the answer arrives ...
        (journal,) = journal_files(settings)
        assert request_id in journal.read_text()
        # ... and in the table within moments, once.
        rows = read_log(url, request_id)
        assert len(rows) == len(answer.json()["horizons"])
    # A clean shutdown moved everything and removed its file.
    assert journal_files(settings) == []
    assert read_log(url, request_id, timeout_s=0)["request_id"].tolist() == [request_id] * len(rows)


def test_a_removed_journal_refuses_predictions(served: Served, tmp_path: Path) -> None:
    settings = log_settings(served, f"sqlite:///{tmp_path / 'log.sqlite'}")
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/predict", json=POLL).status_code == 200
        for journal in journal_files(settings):
            journal.unlink()
        refused = client.post("/api/v1/predict", json=POLL)
        assert refused.status_code == 503, refused.text
        assert "journal" in refused.json()["error"]["message"]


def test_a_dead_log_database_delays_the_move_and_loses_nothing(
    served: Served, tmp_path: Path
) -> None:
    """The journal keeps answering while the database is down; the next server moves it."""
    dead = log_settings(served, f"postgresql://postgres:{SECRET}@127.0.0.1:1/trademl_log")
    with TestClient(create_app(dead)) as client:
        answers = [client.post("/api/v1/predict", json=POLL) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    (left,) = journal_files(dead)  # the shutdown could not move it: kept
    assert all(a.headers["x-request-id"] in left.read_text() for a in answers)


def test_a_killed_server_loses_and_doubles_nothing(served: Served, tmp_path: Path) -> None:
    """SIGKILL a real ``trademl serve`` mid-stream of answers; the next one moves the rest."""
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRADEML_")},
        "TRADEML_HOME": str(served.home),
        "TRADEML_API_KEY": "serving-test-key",
        "TRADEML_MODEL_RELOAD_S": "0",
        "TRADEML_SERVE_LATEST_UNPROMOTED": "true",
        "TRADEML_PREDICTION_LOG_URL": url,
    }
    command = [sys.executable, "-c", "from trademl.cli.app import main; main()", "serve"]
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(server, f"{base}/ready", lambda: "")
        with httpx.Client(base_url=base, timeout=10) as http:
            answers = [http.post("/api/v1/predict", json=POLL) for _ in range(200)]
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # no shutdown: the journal is all there is
        server.wait(10)
    assert all(a.status_code == 200 for a in answers)
    settings = log_settings(served, url)
    assert journal_files(settings)  # left behind by the killed server
    # The next server (same home and log) moves what the dead one left, then its own.
    with TestClient(create_app(settings)) as client:
        last = client.post("/api/v1/predict", json=POLL)
    with PredictionLog(url) as log:
        rows = log.read(MODEL)
    horizons = len(last.json()["horizons"])
    expected = {a.headers["x-request-id"]: horizons for a in [*answers, last]}
    assert rows["request_id"].value_counts().to_dict() == expected
    assert journal_files(settings) == []
