"""Item 2 of issue 14: reading jobs needs the key whenever the server has one, and listings
leave payloads, results and errors out."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from tests.security.conftest import HEADERS
from tests.support.api import finished_job

from trademl.config import Settings
from trademl.serving import create_app


def test_job_reads_need_the_key(api: TestClient) -> None:
    payload = {"note": "a client's private payload"}
    job_id = api.post("/api/v1/jobs", json={"kind": "echo", "payload": payload}, headers=HEADERS)
    job_id = job_id.json()["id"]
    assert finished_job(api, job_id, HEADERS)["result"] == {"payload": payload}
    for path in ("/api/v1/jobs", f"/api/v1/jobs/{job_id}", "/api/v1/jobs/nope"):
        missing = api.get(path)
        assert missing.status_code == 401, missing.text
        wrong = api.get(path, headers={"X-API-Key": "wrong"})
        assert wrong.status_code == 403, wrong.text
        assert "private payload" not in missing.text + wrong.text


def test_listings_leave_payloads_results_and_errors_out(api: TestClient) -> None:
    echo = api.post(
        "/api/v1/jobs", json={"kind": "echo", "payload": {"x": "PAYLOAD-1"}}, headers=HEADERS
    ).json()["id"]
    fail = api.post(
        "/api/v1/jobs", json={"kind": "fail", "payload": {"message": "ERROR-2"}}, headers=HEADERS
    ).json()["id"]
    finished_job(api, echo, HEADERS)
    assert finished_job(api, fail, HEADERS)["error"]["message"] == "ERROR-2"
    listed = api.get("/api/v1/jobs", headers=HEADERS)
    assert listed.status_code == 200
    jobs = listed.json()["jobs"]
    assert {job["id"] for job in jobs} == {echo, fail}
    for job in jobs:
        assert not {"payload", "result", "error"} & set(job)
    assert "PAYLOAD-1" not in listed.text and "ERROR-2" not in listed.text


def test_a_keyless_development_server_reads_openly(home: Path) -> None:
    settings = Settings(home=home, tracking=False, model_reload_s=0)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/jobs").status_code == 200
        assert client.get("/api/v1/jobs/nope").status_code == 404
