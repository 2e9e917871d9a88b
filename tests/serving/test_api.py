"""Every endpoint answers, against a model trained on real BTCUSDT candles; predictions equal
the pipeline model's own on the same candles."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.serving.conftest import MODEL, STORE_END, Served

from trademl.data.ingest import open_default_store
from trademl.features import build_features, warmup_bars
from trademl.tracking.pipeline import load_pipeline


def candle_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Candles as the API takes them."""
    return [
        {"timestamp": ts.isoformat(), **{c: float(row[c]) for c in frame.columns}}
        for ts, row in frame.iterrows()
    ]


def window(served: Served, bars: int, end: pd.Timestamp = STORE_END) -> pd.DataFrame:
    candles = served.candles[served.candles.index < end]
    return candles.iloc[-bars:]


def test_health_ready_and_docs(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] and body["store"]["reachable"] and body["tracking"]["reachable"]
    assert [m["name"] for m in body["models"]] == [MODEL]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/predict", "/api/v1/predict/batch", "/api/v1/signals/{symbol}"} <= set(paths)


def test_predict_from_store_is_cached_and_stores_nothing(
    client: TestClient, served: Served
) -> None:
    with open_default_store(served.settings) as store:
        before = store.series_info("BTCUSDT", "1h")
    first = client.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["source"] == "store" and body["model"]["name"] == MODEL
    intraday = body["horizons"]["intraday"]
    assert intraday["bars"] == 6 and 0 <= intraday["p_up"] <= 1
    assert intraday["low"] < body["close"] < intraday["high"]
    assert intraday["high_interval"]["lower"] <= intraday["high_interval"]["upper"]
    again = client.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "60m"})
    assert again.json()["horizons"] == body["horizons"]
    with open_default_store(served.settings) as store:
        assert store.series_info("BTCUSDT", "1h") == before


def test_predict_says_what_serves_each_target(client: TestClient, served: Served) -> None:
    response = client.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
    assert response.status_code == 200, response.text
    body = response.json()
    trained = next(r for r in served.runs if r.model_version == body["model"]["version"])
    kinds = ("direction", "max_high", "min_low")
    # The run's own out-of-sample tests chose, per target, the learned model or a baseline.
    expected = {kind: trained.choices[f"{kind}_6"].source for kind in kinds}
    assert body["horizons"]["intraday"]["served_by"] == expected
    for kind in kinds:
        choice = trained.choices[f"{kind}_6"]
        assert (expected[kind] == "lgbm") == all(c.better(0.05) for c in choice.comparisons)
        assert expected[kind] == "lgbm" or expected[kind].startswith("naive_")


def test_predict_equals_pipeline_predict_on_the_same_candles(
    client: TestClient, served: Served
) -> None:
    # A longer history than the window: the served prediction reads its last window_bars only,
    # and equals the batch prediction over all of them.
    candles = window(served, served.window_bars + 30)
    response = client.post(
        "/api/v1/predict",
        json={
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "horizon": "intraday",
            "candles": candle_rows(candles),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "request"
    assert pd.Timestamp(body["bar_timestamp"]) == candles.index[-1]
    pipeline, _ = load_pipeline(MODEL, body["model"]["version"], served.settings)
    expected = pipeline.predict(candles).iloc[-1]
    got = body["horizons"]["intraday"]
    for key in ("p_up", "confidence", "high", "low"):
        assert got[key] == pytest.approx(expected[f"intraday__{key}"], rel=1e-12)
    assert got["high_interval"]["upper"] == pytest.approx(expected["intraday__high_hi"])


def test_predict_batch_answers_each_item(client: TestClient, served: Served) -> None:
    candles = candle_rows(window(served, served.window_bars))
    items = [
        {"symbol": "BTCUSDT", "timeframe": "1h"},
        {"symbol": "BTCUSDT", "timeframe": "1h", "candles": candles},
        {"symbol": "NOPE", "timeframe": "1h"},
        {"symbol": "BTCUSDT", "timeframe": "1h", "horizon": "swing"},
    ]
    response = client.post("/api/v1/predict/batch", json={"items": items})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [200, 200, 404, 422]
    assert results[2]["error"]["type"] == "NotFoundError"
    assert "swing" in results[3]["error"]["message"]


def test_signal_is_consistent_with_the_prediction(client: TestClient) -> None:
    response = client.get("/api/v1/signals/BTCUSDT", params={"timeframe": "1h", "reward_risk": 0.5})
    assert response.status_code == 200, response.text
    signal = response.json()
    assert signal["side"] in ("long", "short", "flat") and signal["horizon"] == "intraday"
    if signal["side"] == "long":
        assert signal["stop"] < signal["entry"] < signal["target"]
    elif signal["side"] == "short":
        assert signal["target"] < signal["entry"] < signal["stop"]
    if signal["side"] != "flat":
        assert signal["reward_risk"] >= 0.5
    flat = client.get("/api/v1/signals/BTCUSDT", params={"timeframe": "1h", "reward_risk": 100})
    assert flat.json()["side"] == "flat" and flat.json()["stop"] is None


def test_indicators_equal_build_features(client: TestClient, served: Served) -> None:
    two = {"name": "x", "version": 1, "features": [{"indicator": "rsi"}, {"indicator": "atr"}]}
    minimal_warmup = warmup_bars("minimal", "1h")
    candles = window(served, max(warmup_bars(two, "1h"), minimal_warmup) + 10)  # type: ignore[arg-type]
    response = client.post(
        "/api/v1/indicators",
        json={
            "timeframe": "1h",
            "candles": candle_rows(candles),
            "indicators": [{"name": "rsi", "params": {"timeperiod": 14}}, {"name": "atr"}],
            "tail": 10,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    candles.attrs["timeframe"] = "1h"
    expected = build_features(candles, two).iloc[-10:]  # type: ignore[arg-type]
    assert list(body["columns"]) == list(expected.columns)
    np.testing.assert_allclose(body["columns"]["rsi_14"], expected["rsi_14"].to_numpy())
    preset = client.post(
        "/api/v1/indicators",
        json={"timeframe": "1h", "candles": candle_rows(candles), "preset": "minimal"},
    )
    assert preset.status_code == 200 and preset.json()["warmup_bars"] == minimal_warmup
    columns = preset.json()["columns"]
    first = columns[next(c for c in columns if c.startswith("sma_50"))]  # level or vs close
    assert first[0] is None and first[-1] is not None  # null during the warm-up
    catalog = client.get("/api/v1/indicators").json()
    assert {"rsi", "atr"} <= {i["name"] for i in catalog["indicators"]}
    assert "minimal" in {p["name"] for p in catalog["presets"]}


def test_models_and_metrics(client: TestClient) -> None:
    models = client.get("/api/v1/models").json()["models"]
    assert [m["name"] for m in models] == [MODEL]
    assert models[0]["served"]["symbol"] == "BTCUSDT"
    client.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
    text = client.get("/metrics").text
    assert 'trademl_http_requests_total{method="POST",route="/api/v1/predict"' in text
    assert f'trademl_predictions_total{{model="{MODEL}"' in text
    assert "trademl_served_model_version" in text and "trademl_jobs" in text
