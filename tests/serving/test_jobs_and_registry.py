"""Jobs through the API (submit, poll, cancel), and the registry: a version trained by an API
job is picked up by the reload loop; promotion and rollback through the API change the served
version at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.serving.conftest import HEADERS, MODEL, Served, tiny_config
from tests.support.api import finished_job

from trademl.config import _cached_settings, reload_settings


def test_submit_poll_and_cancel_jobs(client: TestClient) -> None:
    submitted = client.post(
        "/api/v1/jobs", json={"kind": "echo", "payload": {"hello": "world"}}, headers=HEADERS
    )
    assert submitted.status_code == 202
    done = finished_job(client, submitted.json()["id"], HEADERS, 120)
    assert done["state"] == "succeeded" and done["result"] == {"payload": {"hello": "world"}}
    failed = finished_job(
        client,
        client.post("/api/v1/jobs", json={"kind": "fail"}, headers=HEADERS).json()["id"],
        HEADERS,
        120,
    )
    assert failed["state"] == "failed" and failed["error"]["type"] == "RuntimeError"
    slow = client.post(
        "/api/v1/jobs", json={"kind": "sleep", "payload": {"seconds": 60}}, headers=HEADERS
    ).json()
    cancelled = client.delete(f"/api/v1/jobs/{slow['id']}", headers=HEADERS)
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled" or cancelled.json()["cancel_requested"]
    assert finished_job(client, slow["id"], HEADERS, 10)["state"] == "cancelled"
    again = client.delete(f"/api/v1/jobs/{done['id']}", headers=HEADERS)
    assert again.status_code == 409 and again.json()["error"]["type"] == "JobStateError"
    listed = client.get("/api/v1/jobs", params={"state": "succeeded"}, headers=HEADERS).json()
    assert done["id"] in {job["id"] for job in listed["jobs"]}
    assert listed["counts"]["succeeded"] >= 1


def served_version(client: TestClient) -> tuple[int, str | None]:
    model = client.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"}).json()
    return model["model"]["version"], model["model"]["alias"]


@pytest.fixture
def process_home(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Job tasks read the process settings (as a worker does), not the app's: point them at
    the session's home for the test."""
    monkeypatch.setenv("TRADEML_HOME", str(served.home))
    for name in ("TRADEML_STORE_URL", "TRADEML_MLFLOW_TRACKING_URI", "TRADEML_JOBS_URL"):
        monkeypatch.delenv(name, raising=False)
    reload_settings()
    yield
    _cached_settings.cache_clear()  # re-read lazily once monkeypatch restored the environment


@pytest.mark.usefixtures("process_home")
def test_train_job_then_promote_and_rollback(client: TestClient, served: Served) -> None:
    # The session's v1 failed its (impossible) gate: its latest version serves, unpromoted.
    assert served_version(client) == (1, None)
    ready = client.get("/ready").json()
    assert ready["models"][0]["latest_unpromoted"] is True
    job = client.post(
        "/api/v1/train",
        json={"config": tiny_config(served.home / "runs" / "v2", 20)},
        headers=HEADERS,
    )
    assert job.status_code == 202, job.text
    trained = finished_job(client, job.json()["id"], HEADERS, 120)
    assert trained["state"] == "succeeded", trained["error"]
    assert trained["result"]["model_version"] == 2
    # The reload loop (every second here) serves the new latest version without a restart.
    deadline = time.monotonic() + 10
    while served_version(client) != (2, None) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served_version(client) == (2, None)

    def decide(action: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(f"/api/v1/models/{MODEL}/{action}", json=body, headers=HEADERS)
        assert response.status_code == 200, response.text
        return dict(response.json())

    refused = client.post(f"/api/v1/models/{MODEL}/promote", json={"version": 1}, headers=HEADERS)
    assert refused.status_code == 409 and "gate" in refused.json()["error"]["message"]
    # The level of the gate's tests can be replaced for one decision; the record says which.
    lenient = client.post(
        f"/api/v1/models/{MODEL}/promote", json={"version": 1, "level": 0.9}, headers=HEADERS
    )
    assert lenient.status_code == 409 and "p < 0.9" in lenient.json()["error"]["message"]
    for bad in (0, 1.5, "high"):
        response = client.post(
            f"/api/v1/models/{MODEL}/promote", json={"version": 1, "level": bad}, headers=HEADERS
        )
        assert response.status_code == 422 and "level" in response.text
    assert decide("promote", {"version": 1, "force": True})["served"]["version"] == 1
    assert served_version(client) == (1, "champion")
    promoted = decide("promote", {"version": 2, "force": True})
    assert promoted["previous"] == 1 and promoted["served"]["alias"] == "champion"
    assert served_version(client) == (2, "champion")
    rolled = decide("rollback", {"reason": "test"})
    assert rolled["version"] == 1 and rolled["served"]["version"] == 1
    assert served_version(client) == (1, "champion")
    models = client.get("/api/v1/models").json()["models"][0]
    assert models["champion"] == 1 and models["latest"] == 2
    missing = client.post("/api/v1/models/nope/rollback", json={}, headers=HEADERS)
    assert missing.status_code == 404
