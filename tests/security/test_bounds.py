"""Item 6 of issue 14, the job half: payload size, queued jobs per kind and a backtest grid's
combinations are bounded by settings, with a clear 4xx/429 when exceeded."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from tests.security.conftest import API_KEY, HEADERS

from trademl.config import Settings
from trademl.serving import create_app


def app(home: Path, **bounds: object) -> TestClient:
    settings = Settings(
        home=home,
        api_key=API_KEY,  # type: ignore[arg-type]
        tracking=False,
        model_reload_s=0,
        **bounds,  # type: ignore[arg-type]
    )
    return TestClient(create_app(settings))


def test_a_payload_over_the_bound_is_refused(home: Path) -> None:
    with app(home, jobs_max_payload_bytes=10_000) as client:
        big = {"kind": "echo", "payload": {"blob": "x" * 20_000}}
        response = client.post("/api/v1/jobs", json=big, headers=HEADERS)
        assert response.status_code == 422, response.text
        assert "TRADEML_JOBS_MAX_PAYLOAD_BYTES" in response.json()["error"]["message"]
        assert client.get("/api/v1/jobs", headers=HEADERS).json()["jobs"] == []


def test_queued_jobs_per_kind_are_bounded(home: Path) -> None:
    with app(home, jobs_max_queued=2, jobs_workers=1) as client:
        sleep = {"kind": "sleep", "payload": {"seconds": 30, "steps": 300}}
        ids = [client.post("/api/v1/jobs", json=sleep, headers=HEADERS) for _ in range(4)]
        # One runs, two wait: the fourth finds the queue of its kind full.
        assert [r.status_code for r in ids[:3]] == [202, 202, 202]
        assert ids[3].status_code == 429, ids[3].text
        assert ids[3].json()["error"]["type"] == "LimitExceededError"
        assert (
            client.post("/api/v1/jobs", json={"kind": "echo"}, headers=HEADERS).status_code == 202
        )
        for response in ids[:3]:
            client.delete(f"/api/v1/jobs/{response.json()['id']}", headers=HEADERS)


def test_a_backtest_grid_over_the_bound_is_refused(home: Path) -> None:
    with app(home, backtest_max_grid=100) as client:
        grid = {"reward_risk": list(range(20)), "atr_stop": list(range(10))}
        config = {"run": "runs/x", "output": "runs/bt", "grid": grid}
        response = client.post("/api/v1/backtest", json={"config": config}, headers=HEADERS)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"].startswith("grid: 20 x 10 = 200 combinations")
