"""One job interface, two backends: :class:`JobQueue`, the in-process pool, and the factory.

Reading (``get``, ``list``, ``counts``) and cancelling go through the job store for both
backends; only how a job reaches a runner differs (a thread here, a broker message for
Celery).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from threading import Lock, Thread
from types import TracebackType
from typing import Any

from loguru import logger

from trademl.errors import ConfigError, JobStateError, LimitExceededError
from trademl.jobs.info import JobError, JobInfo, JobState
from trademl.jobs.runner import RunPolicy, execute, is_local, owner_alive, process_owner
from trademl.jobs.store import JobStore, StoredJob
from trademl.jobs.tasks import JOB_KINDS, JobContext, job_context


@dataclass(frozen=True)
class SubmitLimits:
    """Bounds a submit is checked against: queued jobs per kind, payload size (JSON bytes)
    and a backtest grid's combinations."""

    max_queued: int = 100
    max_payload_bytes: int = 262_144
    backtest_max_grid: int = 256


class JobQueue(ABC):
    """Submit, watch, cancel and retry background jobs; the state lives in a :class:`JobStore`.

    >>> queue = open_queue()  # doctest: +SKIP
    >>> job_id = queue.submit("sleep", {"seconds": 2})  # doctest: +SKIP
    >>> queue.wait(job_id).state  # doctest: +SKIP
    <JobState.SUCCEEDED: 'succeeded'>
    """

    backend: str = ""
    limits: SubmitLimits = SubmitLimits()

    def __init__(self, store: JobStore, policy: RunPolicy) -> None:
        self.store = store
        self.policy = policy

    # -- the interface -------------------------------------------------------------------------

    def submit(self, kind: str, payload: dict[str, Any] | None = None) -> str:
        """Queue a ``kind`` job (see ``trademl.jobs.JOB_KINDS``) and return its id.

        The kind and the payload are checked first (a :class:`~trademl.errors.ConfigError`
        names what is wrong, and nothing is stored): a payload must be a JSON object, and
        ``train`` / ``backtest`` configs are validated as ``trademl train`` would.
        """
        task = JOB_KINDS.get(kind)
        plain = _plain_payload(payload, self.limits.max_payload_bytes)
        if task.check is not None:
            with job_context(JobContext(self.policy.home, self.limits.backtest_max_grid)):
                task.check(plain)
        queued = self.store.count(kind, JobState.QUEUED)
        if queued >= self.limits.max_queued:
            raise LimitExceededError(
                f"{queued} {kind} jobs are queued, the most this queue takes "
                "(TRADEML_JOBS_MAX_QUEUED); try again when some have started"
            )
        job = self.store.create(kind, plain, queue=self._queue_name(), owner=self._new_owner())
        self._enqueue(job.id, 1)
        return job.id

    def get(self, job_id: str) -> JobInfo:
        """The job ``job_id``; raises :class:`~trademl.errors.JobNotFoundError`."""
        return self.store.get(job_id)

    def list(self, limit: int = 50, state: JobState | str | None = None) -> list[JobInfo]:
        """The newest ``limit`` jobs (1 to 1000), newest first, optionally only in ``state``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ConfigError(f"limit: expected an integer from 1 to 1000, got {limit!r}")
        if state is not None and state not in {s.value for s in JobState}:
            raise ConfigError(
                f"state: expected one of {', '.join(s.value for s in JobState)}, got {state!r}"
            )
        return self.store.list(limit, state)

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (for metrics)."""
        return self.store.counts()

    def cancel(self, job_id: str) -> JobInfo:
        """Cancel a job: a queued one at once; a running one stops at its next progress
        report (``cancel_requested`` is set meanwhile). Cancelling a cancelled job is a no-op;
        a finished job raises :class:`~trademl.errors.JobStateError`."""
        return self.store.cancel(job_id)

    def retry(self, job_id: str) -> JobInfo:
        """Queue a failed, retryable job again (same id and payload, attempts reset)."""
        job = self.store.stored(job_id)
        if job.info.state is not JobState.FAILED or not job.info.retryable:
            why = "not retryable" if job.info.state is JobState.FAILED else job.info.state.value
            raise JobStateError(
                f"job {job_id} is {why}; only failed, retryable jobs can be retried"
            )
        dispatch = self.store.requeue(
            job, message="queued again (retry)", reset_attempts=True, owner=self._new_owner()
        )
        if dispatch is None:
            raise JobStateError(f"job {job_id} changed while it was being retried; try again")
        self._enqueue(job_id, dispatch)
        return self.get(job_id)

    def wait(self, job_id: str, timeout_s: float | None = None, poll_s: float = 0.2) -> JobInfo:
        """Poll until the job is finished or ``timeout_s`` passed; return its latest state."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            info = self.get(job_id)
            if info.state.finished or (deadline is not None and time.monotonic() >= deadline):
                return info
            time.sleep(poll_s)

    def close(self, wait: bool = True) -> None:
        """Release the queue's threads and connections; ``wait`` for the jobs running in this
        process to finish (in-process only; a server shutting down passes ``False``)."""
        self.store.close()

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # -- what a backend provides ---------------------------------------------------------------

    @abstractmethod
    def _enqueue(self, job_id: str, dispatch: int) -> None:
        """Hand the job to a runner."""

    def _queue_name(self) -> str | None:
        return None

    def _new_owner(self) -> str | None:
        return None


def _plain_payload(payload: dict[str, Any] | None, max_bytes: int) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ConfigError(
            f"payload: expected a JSON object (a mapping), got {type(payload).__name__}"
        )
    try:
        text = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise ConfigError(f"payload: not JSON-serialisable: {type(error).__name__}") from None
    if len(text.encode()) > max_bytes:
        raise ConfigError(
            f"payload: {len(text.encode()):,} bytes as JSON; at most {max_bytes:,} "
            "(TRADEML_JOBS_MAX_PAYLOAD_BYTES)"
        )
    plain = json.loads(text)
    assert isinstance(plain, dict)
    return plain


class InProcessQueue(JobQueue):
    """Jobs run on ``workers`` threads inside this process; state in the job store.

    When constructed, it marks the jobs that a process which has since died left queued or
    running as failed and retryable, so that no job stays "running" forever. The threads are
    daemons: a process that exits with jobs running does not wait for them (the next queue
    opened on the store reports them interrupted).
    """

    backend = "inprocess"

    def __init__(self, store: JobStore, policy: RunPolicy, workers: int = 1) -> None:
        super().__init__(store, policy)
        self.workers = workers
        self._waiting: SimpleQueue[tuple[str, int] | None] = SimpleQueue()
        self._threads: list[Thread] = []
        self._lock = Lock()
        self._owner = process_owner()
        fail_interrupted(store, policy)

    def _new_owner(self) -> str | None:
        return self._owner

    def _enqueue(self, job_id: str, dispatch: int) -> None:
        with self._lock:
            # Started on first use: a reader (the CLI's `jobs list`) needs no threads.
            while len(self._threads) < self.workers:
                thread = Thread(target=self._work, name="trademl-job", daemon=True)
                thread.start()
                self._threads.append(thread)
        self._waiting.put((job_id, dispatch))

    def _work(self) -> None:
        while (item := self._waiting.get()) is not None:
            try:
                # A job cancelled while it waited is refused by its claim, so cancel needs no
                # access to this queue.
                execute(self.store, *item, self.policy)
            except Exception as error:  # the store unreachable: keep serving later jobs
                logger.opt(exception=error).error("job {}: runner crashed", item[0])

    def close(self, wait: bool = True) -> None:
        """Stop: jobs not started yet fail (retryable); running ones finish first if ``wait``."""
        with self._lock:
            threads, self._threads = self._threads, []
            pending = []
            while True:
                try:
                    item = self._waiting.get_nowait()
                except Empty:
                    break
                if item is not None:
                    pending.append(item[0])
            for _ in threads:
                self._waiting.put(None)
        error = JobError("the queue was closed before the job started", "Interrupted")
        for job_id in pending:
            self.store.finish(
                job_id,
                self._owner,
                JobState.FAILED,
                message=error.message,
                error=error,
                retryable=True,
                expect=JobState.QUEUED,
            )
        if wait:
            for thread in threads:
                thread.join()
        super().close(wait)


def fail_interrupted(store: JobStore, policy: RunPolicy) -> list[str]:
    """Mark in-process jobs whose process has died failed and retryable; return their ids."""
    failed = []
    for job in store.active():
        if job.queue is not None or not job.owner:
            continue  # a Celery job: its workers recover it
        if job.info.state is JobState.QUEUED and not is_local(job.owner):
            continue  # no heartbeat while queued: only its own host can tell it is lost
        if owner_alive(job.owner, job.heartbeat_at, policy.lost_after_s):
            continue
        if _fail_lost(store, job):
            failed.append(job.info.id)
    if failed:
        logger.warning("{} interrupted job(s) marked failed (retryable): {}", len(failed), failed)
    return failed


def _fail_lost(store: JobStore, job: StoredJob) -> bool:
    error = JobError(
        f"interrupted: the process that ran this job ({job.owner}) ended before it "
        "finished; retry it",
        "Interrupted",
    )
    return store.finish(
        job.info.id,
        job.owner,
        JobState.FAILED,
        message=error.message,
        error=error,
        retryable=True,
        expect=job.info.state,
    )
