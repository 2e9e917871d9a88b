"""The one job suite, run over every backend: the in-process pool and Celery on a real Redis
(and RabbitMQ for the basic path) with a real ``trademl worker``."""

from __future__ import annotations

import time

import pytest
from tests.support.jobs import finished, running_with_progress

from trademl.errors import (
    ConfigError,
    JobNotFoundError,
    JobStateError,
    UnknownPluginError,
)
from trademl.jobs import JobQueue, JobState


@pytest.mark.parametrize("queue", ["inprocess", "redis", "rabbitmq"], indirect=True)
def test_submitted_job_succeeds_with_its_result(queue: JobQueue) -> None:
    job_id = queue.submit("echo", {"prices": [1.5, 2.0], "symbol": "BTCUSDT"})
    assert len(job_id) == 32
    info = finished(queue, job_id)
    assert info.state is JobState.SUCCEEDED, info
    assert info.result == {"payload": {"prices": [1.5, 2.0], "symbol": "BTCUSDT"}}
    assert info.error is None and info.progress == 1.0 and info.attempts == 1
    assert info.started_at is not None and info.finished_at is not None
    assert info.created_at <= info.started_at <= info.finished_at
    assert job_id in [job.id for job in queue.list(limit=10)]
    assert job_id in [job.id for job in queue.list(limit=1000, state="succeeded")]
    assert queue.counts()["succeeded"] >= 1
    assert info.to_dict()["state"] == "succeeded"


def test_failing_job_is_failed_with_its_message_and_retryable(queue: JobQueue) -> None:
    job_id = queue.submit("fail", {"message": "exchange said no"})
    info = finished(queue, job_id)
    assert info.state is JobState.FAILED
    assert info.error is not None
    assert info.error.message == "exchange said no" and info.error.type == "RuntimeError"
    assert info.retryable and info.result is None
    again = queue.retry(job_id)
    assert again.state in (JobState.QUEUED, JobState.RUNNING, JobState.FAILED)
    info = finished(queue, job_id)
    assert info.state is JobState.FAILED and info.attempts == 1
    ok = queue.submit("echo", {})
    finished(queue, ok)
    with pytest.raises(JobStateError, match="only failed, retryable jobs can be retried"):
        queue.retry(ok)


def test_progress_is_visible_while_running(queue: JobQueue) -> None:
    job_id = queue.submit("sleep", {"seconds": 1.2, "steps": 6})
    seen: set[float] = set()
    deadline = time.monotonic() + 20
    while (info := queue.get(job_id)).state is not JobState.SUCCEEDED:
        assert time.monotonic() < deadline and not info.state.finished, info
        if info.state is JobState.RUNNING and 0 < info.progress < 1:
            seen.add(info.progress)
            assert info.message.startswith("slept ")
        time.sleep(0.02)
    assert len(seen) >= 2, seen
    assert info.result == {"slept_s": 1.2}


def test_cancel_queued_and_running_jobs(queue: JobQueue) -> None:
    # One runner per backend here: the second job waits behind the first.
    running = queue.submit("sleep", {"seconds": 10, "steps": 100})
    running_with_progress(queue, running)
    queued = queue.submit("echo", {"never": "run"})
    assert queue.get(queued).state is JobState.QUEUED
    cancelled = queue.cancel(queued)
    assert cancelled.state is JobState.CANCELLED and cancelled.finished_at is not None

    asked = queue.cancel(running)
    assert asked.state is JobState.RUNNING and asked.cancel_requested
    started = time.monotonic()
    info = finished(queue, running)
    assert info.state is JobState.CANCELLED
    assert time.monotonic() - started < 2, "a running job stops at its next progress report"
    assert info.result is None and info.progress < 1

    # The cancelled job's message (Celery) reaches the worker before this one; it is dropped.
    after = queue.submit("echo", {})
    assert finished(queue, after).state is JobState.SUCCEEDED
    info = queue.get(queued)
    assert info.state is JobState.CANCELLED and info.started_at is None and info.attempts == 0
    assert queue.cancel(queued).state is JobState.CANCELLED  # again: a no-op
    with pytest.raises(JobStateError, match="already succeeded"):
        queue.cancel(after)


def test_bad_input_is_refused_and_nothing_stored(queue: JobQueue) -> None:
    before = queue.counts()
    with pytest.raises(UnknownPluginError, match=r"unknown job kind 'trian'; did you mean 'train'"):
        queue.submit("trian", {"config": {}})
    with pytest.raises(ConfigError, match="payload: expected a JSON object"):
        queue.submit("echo", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not JSON-serialisable"):
        queue.submit("echo", {"when": object()})
    with pytest.raises(ConfigError, match="not JSON-serialisable"):
        queue.submit("echo", {"x": float("nan")})
    with pytest.raises(
        ConfigError, match=r"payload 'seconds': expected a number in \[0.0, 3600.0\], got -1"
    ):
        queue.submit("sleep", {"seconds": -1})
    with pytest.raises(ConfigError, match="payload 'config': expected a config mapping"):
        queue.submit("train", {})
    with pytest.raises(ConfigError, match="models: Field required"):
        queue.submit(
            "train", {"config": {"data": {"symbol": "X", "timeframe": "1h"}, "output": "o"}}
        )
    with pytest.raises(ConfigError, match=r"validation: .*missing parameter\(s\) test_size"):
        # No validation section: refused at submit, not by a worker building the splitter.
        queue.submit(
            "train",
            {
                "config": {
                    "data": {"symbol": "X", "timeframe": "1h"},
                    "models": [{"kind": "lgbm"}],
                    "output": "o",
                }
            },
        )
    with pytest.raises(ConfigError, match="give exactly one of 'run'"):
        queue.submit("backtest", {"config": {"output": "o"}})
    assert queue.counts() == before

    for action in (queue.get, queue.cancel, queue.retry):
        with pytest.raises(JobNotFoundError, match="job 'f00' not found"):
            action("f00")
    with pytest.raises(ConfigError, match="limit: expected an integer from 1 to 1000, got 0"):
        queue.list(limit=0)
    with pytest.raises(ConfigError, match="state: expected one of queued, running"):
        queue.list(state="done")
