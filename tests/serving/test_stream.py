"""The WebSocket stream: the current prediction on connect, a prediction for each new bar
written to the store, heartbeats, a policy close for an unknown symbol."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect
from tests.serving.conftest import STORE_END, Served

from trademl.data.ingest import open_default_store


def next_of(socket: WebSocketTestSession, kind: str, limit: int = 50) -> dict[str, Any]:
    for _ in range(limit):
        message: dict[str, Any] = socket.receive_json()
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message in {limit}")


def test_prediction_for_each_new_bar_and_heartbeats(client: TestClient, served: Served) -> None:
    with client.websocket_connect("/ws/BTCUSDT?timeframe=1h") as socket:
        first = next_of(socket, "prediction")
        last = pd.Timestamp(first["bar_timestamp"])
        assert first["symbol"] == "BTCUSDT" and "intraday" in first["horizons"]
        heartbeat = next_of(socket, "heartbeat")
        assert pd.Timestamp(heartbeat["last_bar"]) == last
        new = served.candles[served.candles.index > last].iloc[:1]
        assert new.index[0] >= STORE_END
        with open_default_store(served.settings) as store:
            store.write(new, "BTCUSDT", "1h")
        message = next_of(socket, "prediction")
        assert pd.Timestamp(message["bar_timestamp"]) == new.index[0]
        assert message["close"] == pytest.approx(float(new["close"].iloc[0]))
    # The REST answer for the same bar is the same prediction (served from the cache).
    rest = client.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"}).json()
    assert rest["bar_timestamp"] == message["bar_timestamp"]
    assert rest["horizons"] == message["horizons"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/ws/DOGEUSDT?timeframe=1h", "DOGEUSDT"),
        ("/ws/BTCUSDT?timeframe=fortnight", "fortnight"),
        ("/ws/BTCUSDT", "timeframe"),
        ("/ws/BTCUSDT?timeframe=1h&horizon=weekly", "weekly"),
    ],
)
def test_bad_stream_requests_close_with_a_policy_code(
    client: TestClient, path: str, reason: str
) -> None:
    with client.websocket_connect(path) as socket, pytest.raises(WebSocketDisconnect) as closed:
        socket.receive_json()
    assert closed.value.code == 1008 and reason in closed.value.reason
