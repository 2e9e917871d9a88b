"""``trademl jobs ...`` and ``trademl worker`` as a user types them (in-process backend)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADEML_CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("TRADEML_JOBS_URL", raising=False)


def test_submit_list_show_retry_cancel(cli) -> None:
    done = cli("jobs", "submit", "sleep", "--payload", '{"seconds": 0.1, "steps": 2}')
    assert done.code == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["result"] == {"slept_s": 0.1}

    failed = cli("jobs", "submit", "fail", "--payload", '{"message": "no data"}')
    assert failed.code == 1
    failed_id = json.loads(failed.stdout)["id"]

    listed = cli("jobs", "list", "--state", "failed")
    assert listed.code == 0 and failed_id in listed.stdout and job["id"] not in listed.stdout
    shown = json.loads(cli("jobs", "show", job["id"]).stdout)
    assert shown == job
    retried = cli("jobs", "retry", failed_id)
    assert retried.code == 0 and json.loads(retried.stdout)["error"]["message"] == "no data"

    refused = cli("jobs", "cancel", job["id"])
    assert refused.code == 9 and "already succeeded" in refused.stderr


def test_bad_input_is_one_line_and_nonzero(cli) -> None:
    unknown = cli("jobs", "submit", "nope")
    assert unknown.code == 2 and "unknown job kind 'nope'" in unknown.stderr
    bad_json = cli("jobs", "submit", "echo", "--payload", "{x")
    assert bad_json.code == 2 and "--payload: not valid JSON" in bad_json.stderr
    missing = cli("jobs", "show", "0" * 32)
    assert missing.code == 6 and f"job '{'0' * 32}' not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    no_broker = cli("worker")
    assert no_broker.code == 2 and "TRADEML_CELERY_BROKER_URL" in no_broker.stderr


def test_submit_config_sends_the_files_mapping(cli, home, tmp_path) -> None:
    # The CLI reads the file (its user's own); the job gets the mapping, and its paths resolve
    # under TRADEML_HOME as every job's do.
    config = tmp_path / "backtest.yaml"
    config.write_text(f"run: runs/x\noutput: {tmp_path / 'elsewhere'}\n")
    refused = cli("jobs", "submit", "backtest", "--config", config)
    assert refused.code == 2
    assert "output: " in refused.stderr and "outside the folders a job may write" in refused.stderr
    missing = cli("jobs", "submit", "backtest", "--config", tmp_path / "nope.yaml")
    assert missing.code == 2 and "--config: " in missing.stderr
