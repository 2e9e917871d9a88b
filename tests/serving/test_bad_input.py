"""Bad input answers a 4xx in the one JSON error shape, with a clear message, and stores
nothing: malformed JSON, wrong types, unknown symbol or horizon, invalid timeframe, candles
breaking the contract, oversized bodies, missing or wrong API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from tests.serving.conftest import HEADERS, Served
from tests.serving.test_api import candle_rows, window

from trademl.data.ingest import open_default_store
from trademl.serving import create_app


def error_of(response: Response, status: int, type_: str | None = None) -> dict[str, Any]:
    """The error of a response in the one shape, checked."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"type", "message", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in error["message"]
    if type_ is not None:
        assert error["type"] == type_, error
    return dict(error)


@pytest.fixture
def unchanged(served: Served, client: TestClient) -> Iterator[None]:
    """The store and the job store are the same after the test as before."""

    def snapshot() -> tuple[Any, ...]:
        with open_default_store(served.settings) as store:
            series = store.list_series()
        return (
            series,
            client.get("/api/v1/jobs", params={"limit": 1000}, headers=HEADERS).json()["counts"],
        )

    before = snapshot()
    yield
    assert snapshot() == before


PREDICT = "/api/v1/predict"


@pytest.mark.usefixtures("unchanged")
def test_predict_bad_input(client: TestClient, served: Served) -> None:
    base = {"symbol": "BTCUSDT", "timeframe": "1h"}
    error = error_of(client.post(PREDICT, json={**base, "symbol": "DOGEUSDT"}), 404)
    assert "DOGEUSDT" in error["message"] and "BTCUSDT 1h" in error["message"]
    error = error_of(client.post(PREDICT, json={**base, "timeframe": "5m"}), 404)
    assert "timeframe 5m" in error["message"]
    error = error_of(client.post(PREDICT, json={**base, "timeframe": "hourly"}), 422)
    assert "hourly" in error["message"]
    error_of(client.post(PREDICT, json={"symbol": "BTCUSDT"}), 422, "ValidationError")
    error = error_of(client.post(PREDICT, json={**base, "horizon": "weekly"}), 422)
    assert "weekly" in error["message"] and "intraday" in error["message"]
    error = error_of(client.post(PREDICT, json={**base, "surprise": 1}), 422, "ValidationError")
    assert "surprise" in error["message"]
    malformed = client.post(
        PREDICT, content=b'{"symbol": "BTCUSDT", ', headers={"content-type": "application/json"}
    )
    error_of(malformed, 400, "MalformedJSON")
    error_of(client.post(PREDICT, json=[1, 2]), 422, "ValidationError")
    error_of(client.post(PREDICT, json={**base, "symbol": 5}), 422, "ValidationError")


@pytest.mark.usefixtures("unchanged")
def test_candles_wrong_types_and_contract(client: TestClient, served: Served) -> None:
    rows = candle_rows(window(served, 60))
    base = {"symbol": "BTCUSDT", "timeframe": "1h"}

    def with_row(index: int, **changes: Any) -> dict[str, Any]:
        changed = [dict(r) for r in rows]
        changed[index].update(changes)
        return {**base, "candles": changed}

    # Strict types: false is not a number, "1" is not a price.
    error = error_of(client.post(PREDICT, json=with_row(3, open=False)), 422, "ValidationError")
    assert "candles.3.open" in error["message"]
    error_of(client.post(PREDICT, json=with_row(3, close="27000")), 422, "ValidationError")
    error_of(client.post(PREDICT, json=with_row(3, timestamp="yesterday")), 422)
    high = rows[5]["close"] - 10
    error = error_of(client.post(PREDICT, json=with_row(5, high=high)), 422, "DataValidationError")
    assert error["rule"] == "ohlc_consistency" and "row 6" in error["message"]
    error = error_of(client.post(PREDICT, json=with_row(7, volume=-1.0)), 422)
    assert error["rule"] == "negative_volume"
    unsorted = with_row(9, timestamp=rows[2]["timestamp"])
    assert error_of(client.post(PREDICT, json=unsorted), 422)["rule"] in (
        "unsorted_timestamp",
        "duplicate_timestamp",
    )
    few = error_of(client.post(PREDICT, json={**base, "candles": rows[:10]}), 422)
    assert few["rule"] == "too_few_bars"
    assert f"needs at least {served.window_bars} candles" in few["message"]
    assert "got 10" in few["message"]
    # One short of the window is still too few; the window itself predicts.
    short = {**base, "candles": candle_rows(window(served, served.window_bars - 1))}
    assert error_of(client.post(PREDICT, json=short), 422)["rule"] == "too_few_bars"
    enough = {**base, "candles": candle_rows(window(served, served.window_bars))}
    assert client.post(PREDICT, json=enough).status_code == 200
    daily = [dict(r, timestamp=f"2023-01-{i + 1:02d}T00:00:00Z") for i, r in enumerate(rows[:31])]
    daily += [
        dict(r, timestamp=f"2023-02-{i + 1:02d}T00:00:00Z") for i, r in enumerate(rows[31:59])
    ]
    assert (
        error_of(client.post(PREDICT, json={**base, "candles": daily}), 422)["rule"] == "timeframe"
    )


@pytest.mark.usefixtures("unchanged")
def test_oversized_bodies_are_refused_before_parsing(client: TestClient, served: Served) -> None:
    limit = served.settings.max_body_bytes
    big = b'{"symbol": "' + b"x" * limit + b'"}'
    error = error_of(
        client.post(PREDICT, content=big, headers={"content-type": "application/json"}),
        413,
        "BodyTooLarge",
    )
    assert f"{limit:,}" in error["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"symbol": "'
        for _ in range(limit // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    chunked = client.post(PREDICT, content=chunks(), headers={"content-type": "application/json"})
    error_of(chunked, 413, "BodyTooLarge")


@pytest.mark.usefixtures("unchanged")
def test_api_key_on_mutating_endpoints(client: TestClient) -> None:
    config = {"config": {"data": {"symbol": "BTCUSDT"}}}
    for method, path, body in (
        ("POST", "/api/v1/train", config),
        ("POST", "/api/v1/backtest", config),
        ("POST", "/api/v1/jobs", {"kind": "echo"}),
        ("DELETE", "/api/v1/jobs/0123", None),
        ("POST", "/api/v1/models/BTCUSDT_1h_serving_test/promote", {}),
        ("POST", "/api/v1/models/BTCUSDT_1h_serving_test/rollback", {}),
    ):
        missing = client.request(method, path, json=body)
        assert error_of(missing, 401, "Unauthorized")["message"].startswith("missing API key")
        assert missing.headers["www-authenticate"] == "ApiKey"
        wrong = client.request(method, path, json=body, headers={"X-API-Key": "guess"})
        error_of(wrong, 403, "Forbidden")
    # With the key, a bad config is refused at submit (422) and no job is created.
    error = error_of(client.post("/api/v1/train", json=config, headers=HEADERS), 422)
    assert "data" in error["message"]
    error_of(client.post("/api/v1/jobs", json={"kind": "mine"}, headers=HEADERS), 422)
    error_of(client.post("/api/v1/jobs", json={"kind": 3}, headers=HEADERS), 422)
    # Read-only endpoints need no key.
    assert client.get("/api/v1/models").status_code == 200


def test_no_configured_key_disables_mutations_and_auth_all(served: Served) -> None:
    keyless = TestClient(create_app(served.settings.model_copy(update={"api_key": None})))
    error = error_of(keyless.post("/api/v1/jobs", json={"kind": "echo"}, headers=HEADERS), 403)
    assert "TRADEML_API_KEY" in error["message"]
    locked = TestClient(create_app(served.settings.model_copy(update={"api_auth_all": True})))
    assert locked.get("/health").status_code == 200
    error_of(locked.get("/api/v1/models"), 401)
    error_of(locked.post(PREDICT, json={"symbol": "BTCUSDT", "timeframe": "1h"}), 401)
    error_of(locked.get("/metrics", headers={"X-API-Key": "nope"}), 403)


def test_unknown_routes_and_methods(client: TestClient) -> None:
    error_of(client.get("/api/v1/nothing"), 404, "NotFound")
    error_of(client.get(PREDICT), 405, "MethodNotAllowed")
    error_of(client.get("/api/v1/jobs/not-a-job", headers=HEADERS), 404, "JobNotFoundError")
    error_of(client.get("/api/v1/signals/BTCUSDT"), 422)  # timeframe is required
    error_of(client.get("/api/v1/signals/BTCUSDT", params={"timeframe": "1h", "horizon": "x"}), 422)
