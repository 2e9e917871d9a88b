"""Every HTTP prediction is in the prediction log before its answer is sent: the polling path
(answered from memory), request candles and batch items, each row naming the request, the model
version and the horizon, and nothing lost when the server stops."""

from __future__ import annotations

import pandas as pd
from fastapi.testclient import TestClient
from tests.serving.conftest import MODEL, Served

from trademl.monitoring.predictions import PredictionLog
from trademl.serving.app import create_app


def logged(served: Served, request_id: str) -> pd.DataFrame:
    with PredictionLog(served.settings.jobs_store_url) as log:
        rows = log.read(MODEL)
    return rows[rows["request_id"].str.startswith(request_id)]


def test_each_answer_is_logged_before_it_is_sent(client: TestClient, served: Served) -> None:
    polled = client.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
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
    again = client.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
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


def test_a_restart_loses_no_logged_prediction(served: Served) -> None:
    with TestClient(create_app(served.settings)) as first:
        answered = [
            first.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
            for _ in range(20)
        ]
    ids = {a.headers["x-request-id"] for a in answered}
    # A new server on the same database.
    with (
        TestClient(create_app(served.settings)),
        PredictionLog(served.settings.jobs_store_url) as log,
    ):
        assert ids <= set(log.read(MODEL)["request_id"])
