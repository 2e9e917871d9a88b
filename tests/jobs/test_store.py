"""The job store on SQLite and on a real PostgreSQL: one winner when runners race for a job."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path

import pytest
from tests.support.jobs import finished, job_settings

from trademl.jobs import JobState, JobStore, open_queue


@pytest.fixture(params=["sqlite", "postgresql"])
def jobs_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_racing_claims_have_one_winner(jobs_url: str) -> None:
    store = JobStore(jobs_url)
    store_again = JobStore(jobs_url)  # a second process would open its own: create is idempotent
    job = store.create("echo", {"n": 1}, queue="q")
    seen = store.stored(job.id)
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda n: store.claim(seen, f"racer:{n}:"), range(16)))
    assert sum(wins) == 1
    info = store_again.get(job.id)
    assert info.state is JobState.RUNNING and info.attempts == 1
    assert info.created_at.tzinfo is not None and info.started_at is not None
    assert info.started_at.utcoffset() == UTC.utcoffset(None)
    store.close()
    store_again.close()


def test_inprocess_queue_on_the_store(jobs_url: str, tmp_path: Path) -> None:
    settings = job_settings(tmp_path / "home").model_copy(update={"jobs_url": jobs_url})
    with open_queue(settings) as queue:
        job_id = queue.submit("echo", {"where": "sql"})
        assert finished(queue, job_id).result == {"payload": {"where": "sql"}}
        assert queue.counts()["succeeded"] >= 1
