"""No job stays "running" when the process running it dies: an in-process queue's process
killed mid-job, a Celery pool process killed, and a whole Celery worker killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.support.jobs import SESSION_QUEUE, Worker, finished, job_settings, running_with_progress

from trademl.jobs import JobState, open_queue
from trademl.jobs.info import JobError
from trademl.jobs.runner import RunPolicy, execute
from trademl.jobs.store import JobStore

SUBMIT_AND_WAIT = textwrap.dedent(
    """
    import sys, time
    from trademl.config import Settings
    from trademl.jobs import open_queue

    queue = open_queue(Settings(home=sys.argv[1], jobs_heartbeat_s=0.5, celery_broker_url=None))
    print(queue.submit("sleep", {"seconds": 2, "steps": 40}), flush=True)
    print(queue.submit("echo", {"behind": "the sleeper"}), flush=True)
    time.sleep(120)
    """
)


def test_inprocess_jobs_of_a_killed_process_fail_retryable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADEML_")}
    process = subprocess.Popen(
        [sys.executable, "-c", SUBMIT_AND_WAIT, str(home)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    assert process.stdout is not None
    running, queued = process.stdout.readline().strip(), process.stdout.readline().strip()
    with open_queue(job_settings(home)) as watcher:
        running_with_progress(watcher, running)
        assert watcher.get(queued).state is JobState.QUEUED
    process.kill()
    process.wait()

    with open_queue(job_settings(home)) as queue:  # a restart
        for job_id in (running, queued):
            info = queue.get(job_id)
            assert info.state is JobState.FAILED and info.retryable, info
            assert info.error is not None and info.error.type == "Interrupted"
            assert f":{process.pid}:" in info.error.message and "interrupted" in info.error.message
        assert queue.retry(running).state in (JobState.QUEUED, JobState.RUNNING)
        info = finished(queue, running)
        assert info.state is JobState.SUCCEEDED and info.attempts == 1


def test_celery_job_survives_its_pool_process_being_killed(redis_worker: Worker) -> None:
    with open_queue(redis_worker.settings) as queue:
        job_id = queue.submit("sleep", {"seconds": 1.5, "steps": 15})
        running_with_progress(queue, job_id)
        owner = queue.store.stored(job_id).owner
        assert owner is not None
        os.kill(int(owner.split(":")[1]), signal.SIGKILL)  # the prefork child running it
        info = finished(queue, job_id)
        assert info.state is JobState.SUCCEEDED, info
        assert info.attempts == 2
        assert queue.store.stored(job_id).owner != owner


def test_celery_job_of_a_killed_worker_runs_again_on_a_restarted_one(
    redis_worker: Worker,
) -> None:
    # A worker of its own, on its own queue, killed whole (main process and pool): a machine
    # dying. The shared worker's store is reused, so its sweeps see the job too.
    settings = redis_worker.settings.model_copy(update={"celery_queue": f"{SESSION_QUEUE}-kill"})
    worker = Worker.start(settings)
    with open_queue(settings) as queue:
        job_id = queue.submit("sleep", {"seconds": 1.5, "steps": 15})
        running_with_progress(queue, job_id)
        worker.kill()
        # Still marked running, or already found lost and queued again by the shared worker's
        # sweep (it sees the silent heartbeat first when the machine is loaded): never finished.
        assert queue.get(job_id).state in (JobState.RUNNING, JobState.QUEUED)
        restarted = Worker.start(settings)
        try:
            info = finished(queue, job_id)
        finally:
            restarted.stop()
        assert info.state is JobState.SUCCEEDED, info
        assert info.attempts == 2 and info.result == {"slept_s": 1.5}


def test_stale_and_duplicate_deliveries_do_nothing(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    policy = RunPolicy(heartbeat_s=0.5, max_attempts=2)
    job = store.create("echo", {}, queue="q")
    assert execute(store, job.id, 2, policy) is None  # a dispatch not sent yet
    assert execute(store, job.id, 1, policy) is JobState.SUCCEEDED
    assert execute(store, job.id, 1, policy) is None  # redelivered after it finished
    assert store.get(job.id).attempts == 1
    store.close()


def test_a_job_that_keeps_killing_its_worker_fails_retryable(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    policy = RunPolicy(heartbeat_s=0.01, max_attempts=2)  # lost after 0.06 s of silence
    job = store.create("echo", {}, queue="q")
    for dead in ("elsewhere:1:1", "elsewhere:2:2"):  # two starts on workers that vanished
        assert store.claim(store.stored(job.id), dead)
    time.sleep(0.1)
    assert execute(store, job.id, 1, policy) is None
    info = store.get(job.id)
    assert info.state is JobState.FAILED and info.retryable and info.attempts == 2
    assert info.error == JobError(
        "the worker running this job was lost 2 times (killed, out of memory?); not starting "
        "it again",
        "WorkerLost",
    )
    store.close()
