"""Helpers of the job suite: backend settings, a real ``trademl worker`` subprocess, polling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from trademl.config import Settings
from trademl.jobs import JobInfo, JobQueue, JobState, open_queue

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("TRADEML_TEST_REDIS", "redis://127.0.0.1:6379/15")
RABBITMQ_URL = os.environ.get("TRADEML_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
# Heartbeats every half second: lost workers are noticed within seconds, not minutes.
HEARTBEAT_S = 0.5
SESSION_QUEUE = f"trademl-test-{os.getpid()}"


def service_missing(name: str, error: Exception) -> None:
    """Fail under CI (a missing service is a broken CI), skip locally."""
    message = f"{name} is not reachable: {error}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_redis(url: str = REDIS_URL) -> None:
    """Skip (fail under CI) unless the Redis at ``url`` answers a ping."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as error:
        service_missing("Redis", error)


def job_settings(home: Path, broker: str | None = None, queue: str = SESSION_QUEUE) -> Settings:
    """Settings of one backend, independent of the caller's TRADEML_* environment."""
    return Settings(
        home=home,
        jobs_url=None,
        jobs_workers=1,
        jobs_heartbeat_s=HEARTBEAT_S,
        jobs_max_attempts=3,
        celery_broker_url=broker,
        celery_queue=queue,
    )


@dataclass
class Worker:
    """A ``trademl worker`` subprocess in its own process group."""

    settings: Settings
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, settings: Settings, *, concurrency: int = 1) -> Worker:
        home = settings.home
        home.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("TRADEML_")}
        env.update(
            TRADEML_HOME=str(home),
            TRADEML_TEST_DATA=os.environ.get("TRADEML_TEST_DATA", str(settings.test_data)),
            TRADEML_CELERY_BROKER_URL=settings.celery_broker_url or "",
            TRADEML_CELERY_QUEUE=settings.celery_queue,
            TRADEML_JOBS_HEARTBEAT_S=str(settings.jobs_heartbeat_s),
            TRADEML_LOG_LEVEL="INFO",
        )
        log = home / f"worker-{settings.celery_queue}-{time.monotonic_ns()}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "trademl", "worker", f"--concurrency={concurrency}"],
                cwd=home,  # away from the repository's .env
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = cls(settings, process, log)
        worker.wait_ready()
        return worker

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until the worker runs a job (an ``echo``)."""
        with open_queue(self.settings) as queue:
            job_id = queue.submit("echo", {"ready": True})
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"trademl worker exited early:\n{self.tail()}")
                if queue.get(job_id).state is JobState.SUCCEEDED:
                    return
                time.sleep(0.1)
        self.kill()
        pytest.fail(f"trademl worker not ready after {timeout_s}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children): a machine dying."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(
    queue: JobQueue, job_id: str, check: Callable[[JobInfo], bool], timeout_s: float = 20.0
) -> JobInfo:
    """Poll until ``check(info)`` holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = queue.get(job_id)
        if check(info):
            return info
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} never got there: {info}")
        time.sleep(0.02)


def finished(queue: JobQueue, job_id: str, timeout_s: float = 20.0) -> JobInfo:
    """Wait for a final state."""
    return wait_for(queue, job_id, lambda info: info.state.finished, timeout_s)


def running_with_progress(queue: JobQueue, job_id: str) -> JobInfo:
    """Wait until the job runs and has reported some progress."""
    return wait_for(queue, job_id, lambda i: i.state is JobState.RUNNING and i.progress > 0)
