"""The Celery backend: jobs travel as broker messages (Redis or RabbitMQ) to ``trademl worker``
processes, which write their state to the shared job store.

A message carries only ``(job_id, dispatch)``; everything else is in the store, so no result
backend is needed and a stale or duplicate message is recognised and dropped.

What happens when a worker dies mid-job (documented in the README, tested for real):

- its messages are acknowledged only after the job finishes (``acks_late``), and a pool
  process that dies makes Celery hand the message back at once (``task_reject_on_worker_lost``);
- a worker starting up, and every worker every few heartbeats, looks for running jobs whose
  process is gone (same host: the pid is dead; another host: the heartbeat is stale) and sends
  them again under a new dispatch number, so a Redis broker's visibility timeout (an hour by
  default) is not waited for;
- either way the job runs again from the start (``attempts`` becomes 2), and after
  ``TRADEML_JOBS_MAX_ATTEMPTS`` starts it fails, retryable, instead of looping.

Cancelling a queued job does not revoke its message: the worker that receives it finds the
job cancelled in the store and drops it (a revoke would warn without a result backend, and
keeps every revoked id in every worker's memory). A running job stops at its next progress
report, as in-process.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from loguru import logger

from trademl.config import Settings
from trademl.errors import ConfigError, JobQueueError
from trademl.jobs.info import JobError, JobState
from trademl.jobs.queue import JobQueue
from trademl.jobs.runner import RunPolicy, execute, owner_alive
from trademl.jobs.store import JobStore
from trademl.redact import redact, redact_url

TASK_NAME = "trademl.jobs.execute"
# Tasks Celery beat sends (see trademl.tracking.policy.celery_beat): each queues the job kind of
# the same name, so a scheduled cycle is a job like any other (progress, result, history).
BEAT_TASKS = {"trademl.retrain": "retrain", "trademl.watch": "watch"}
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")


def task_id(job_id: str, dispatch: int) -> str:
    """The Celery task id of one dispatch of a job."""
    return f"{job_id}.{dispatch}"


def make_celery_app(settings: Settings) -> Celery:
    """A Celery app for ``settings.celery_broker_url``, with the ``trademl.jobs.execute`` task."""
    url = settings.celery_broker_url or ""
    if url.partition("://")[0] not in BROKER_SCHEMES:
        raise ConfigError(
            f"TRADEML_CELERY_BROKER_URL: expected a redis:// or amqp:// URL, got {redact_url(url)!r}"
        )
    app = Celery("trademl", broker=url, set_as_current=False)
    app.conf.update(
        # Acknowledge after the job ran, and hand a message back when the pool process running
        # it dies, so a killed worker never loses a job; take one message at a time so a long
        # job does not hold others hostage.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # How long the pool waits for a dead process's last words before declaring it lost;
        # nothing is sent back (the store has the state), so the 10 s default only delays the
        # redelivery.
        worker_lost_wait=1.0,
        task_ignore_result=True,
        task_default_queue=settings.celery_queue,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5.0,
        broker_transport_options={"visibility_timeout": settings.celery_visibility_timeout_s},
        # A broker outage must not stop a running training job: a duplicate delivery finds
        # the job owned by a live process and is dropped.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        # trademl logs with loguru to stderr; Celery would re-log each line as a warning.
        worker_redirect_stdouts=False,
    )
    policy = RunPolicy(settings.jobs_heartbeat_s, settings.jobs_max_attempts, settings.home)
    jobs_url = settings.jobs_store_url

    @app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
    def execute_job(job_id: str, dispatch: int) -> str | None:
        state = execute(worker_store(jobs_url), job_id, dispatch, policy)
        return state.value if state else None

    for task, kind in BEAT_TASKS.items():
        app.task(name=task)(_beat_task(app, settings, policy, kind))
    return app


def _beat_task(app: Celery, settings: Settings, policy: RunPolicy, kind: str) -> Any:
    """A beat task: queue a ``kind`` job for the registered model ``name`` (and, for a
    retrain, its window), the payload checked as any submit's."""

    def queue_job(name: str, window: int | None = None) -> str:
        payload: dict[str, Any] = {"name": name}
        if kind == "retrain":
            payload["trigger"] = "scheduled"
            if window is not None:
                payload["window"] = window
        store = worker_store(settings.jobs_store_url)
        return CeleryQueue(store, policy, app, settings.celery_queue).submit(kind, payload)

    queue_job.__name__ = f"queue_{kind}"
    return queue_job


_stores: dict[tuple[int, str], JobStore] = {}


def worker_store(url: str) -> JobStore:
    """One job store per worker process (database connections do not survive a fork)."""
    key = (os.getpid(), url)
    if key not in _stores:
        _stores[key] = JobStore(url)
    return _stores[key]


def send(app: Celery, job_id: str, dispatch: int, queue: str) -> None:
    """Publish one dispatch of a job; raises :class:`JobQueueError` if the broker is down."""
    try:
        app.send_task(
            TASK_NAME,
            args=[job_id, dispatch],
            task_id=task_id(job_id, dispatch),
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as error:  # kombu raises OperationalError, ConnectionError...
        broker = redact_url(str(app.conf.broker_url))
        raise JobQueueError(redact(f"Celery broker {broker} is not reachable: {error}")) from error


class CeleryQueue(JobQueue):
    """Jobs run on ``trademl worker`` processes that consume ``queue`` on the app's broker."""

    backend = "celery"

    def __init__(self, store: JobStore, policy: RunPolicy, app: Celery, queue: str) -> None:
        super().__init__(store, policy)
        self.app = app
        self.queue = queue

    def _queue_name(self) -> str | None:
        return self.queue

    def _enqueue(self, job_id: str, dispatch: int) -> None:
        try:
            send(self.app, job_id, dispatch, self.queue)
        except JobQueueError:
            if dispatch == 1:
                self.store.delete(job_id)  # a submit that failed leaves nothing behind
            else:
                job = self.store.stored(job_id)
                error = JobError("the broker was not reachable to queue it again", "JobQueueError")
                self.store.finish(
                    job_id, job.owner, JobState.FAILED, message=error.message, error=error,
                    retryable=True, expect=JobState.QUEUED,
                )  # fmt: skip
            raise

    def close(self, wait: bool = True) -> None:
        """Release the broker and store connections (jobs run elsewhere: nothing to wait for)."""
        self.app.close()
        super().close(wait)


def resend_lost(store: JobStore, app: Celery, policy: RunPolicy) -> list[str]:
    """Send again the running Celery jobs whose worker is gone; return their ids.

    Several workers may do this at once: the store's compare-and-set lets one of them win.
    """
    resent = []
    for job in store.active():
        info = job.info
        if job.queue is None or info.state is not JobState.RUNNING:
            continue
        if owner_alive(job.owner, job.heartbeat_at, policy.lost_after_s):
            continue
        if info.cancel_requested:
            store.finish(
                info.id, job.owner, JobState.CANCELLED, message="cancelled; its worker was lost"
            )
            continue
        if info.attempts >= policy.max_attempts:
            continue  # the next delivery (or none) fails it; see runner._takeover_allowed
        dispatch = store.requeue(
            job, message=f"its worker was lost; queued again (attempt {info.attempts + 1})",
            reset_attempts=False,
        )  # fmt: skip
        if dispatch is not None:
            send(app, info.id, dispatch, job.queue)
            resent.append(info.id)
    if resent:
        logger.warning("{} job(s) of lost workers sent again: {}", len(resent), resent)
    return resent


def run_worker(
    settings: Settings,
    *,
    concurrency: int = 1,
    queues: list[str] | None = None,
    pool: str = "prefork",
    beat: dict[str, dict[str, object]] | None = None,
) -> None:
    """Run a Celery worker for trademl jobs in this process until it is stopped; with
    ``beat`` entries (:func:`trademl.tracking.policy.celery_beat`), it also runs Celery beat."""
    app = make_celery_app(settings)
    if beat:
        app.conf.beat_schedule = beat
    store = worker_store(settings.jobs_store_url)
    policy = RunPolicy(settings.jobs_heartbeat_s, settings.jobs_max_attempts, settings.home)
    stop = threading.Event()

    def sweep_forever() -> None:
        while True:
            try:
                resend_lost(store, app, policy)
            except Exception as error:  # a store or broker hiccup; try again later
                logger.warning("lost-job sweep failed: {}", error)
            if stop.wait(policy.heartbeat_s * 3):
                return

    @worker_ready.connect(weak=False)  # type: ignore[untyped-decorator]
    def _started(**_: Any) -> None:
        threading.Thread(target=sweep_forever, name="trademl-sweep", daemon=True).start()

    names = ",".join(queues or [settings.celery_queue])
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--queues={names}",
        f"--pool={pool}",
        f"--hostname=trademl-{os.getpid()}@%h",
        f"--loglevel={settings.log_level if settings.log_level != 'SUCCESS' else 'INFO'}",
        # Gossip and mingle synchronise worker state across a cluster at start-up; trademl
        # keeps its state in the job store, and they cost seconds of start-up.
        "--without-gossip",
        "--without-mingle",
    ]
    if beat:
        argv += ["--beat", f"--schedule={settings.home / 'celerybeat-schedule'}"]
    try:
        app.worker_main(argv=argv)
    finally:
        stop.set()
