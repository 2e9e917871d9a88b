"""Running one job, the same way in a pool thread and in a Celery worker.

:func:`execute` claims the job in the store (one compare-and-set, so a duplicate or stale
delivery does nothing), runs its task with a ``report`` callable, keeps a heartbeat while it
runs, and writes the outcome. A job's ``owner`` names the process running it
(``host:pid:start-time``): a process on the same host can tell for sure whether the owner is
gone; for another host, a heartbeat silent for six intervals counts as gone.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from trademl.errors import ConfigError, JobNotFoundError, TradeMLError
from trademl.jobs.info import JobCancelled, JobError, JobState
from trademl.jobs.store import JobStore, StoredJob, utc_now
from trademl.jobs.tasks import JOB_KINDS, JobContext, job_context
from trademl.json_values import jsonable
from trademl.redact import redact

LOST_AFTER_HEARTBEATS = 6
REPORT_EVERY_S = 0.1


@dataclass(frozen=True)
class RunPolicy:
    """How often a running job proves it is alive, how many starts a job gets, and the
    ``TRADEML_HOME`` under which its config's paths resolve (the process settings' if None)."""

    heartbeat_s: float = 10.0
    max_attempts: int = 3
    home: Path | None = None

    @property
    def lost_after_s(self) -> float:
        """A job on another host whose heartbeat is this old counts as lost."""
        return self.heartbeat_s * LOST_AFTER_HEARTBEATS


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_owner() -> str:
    """This process as a job owner: ``host:pid:start-ticks`` (start ticks guard pid reuse)."""
    pid = os.getpid()
    fields = _proc_stat(pid)
    started = fields[19] if fields and len(fields) > 19 else ""
    return f"{socket.gethostname()}:{pid}:{started}"


def is_local(owner: str | None) -> bool:
    """Whether ``owner`` names a process on this host."""
    return bool(owner) and str(owner).partition(":")[0] == socket.gethostname()


def owner_alive(owner: str | None, heartbeat_at: datetime | None, lost_after_s: float) -> bool:
    """Whether the process named by ``owner`` may still be running its job."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return (
            heartbeat_at is not None and (utc_now() - heartbeat_at).total_seconds() < lost_after_s
        )
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, run by another user
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: the signal check is all there is
    # A killed process not yet reaped by its parent is a zombie; a different start time means
    # the pid was reused by a new process.
    return fields[0] != "Z" and (not started or len(fields) <= 19 or fields[19] == started)


def execute(store: JobStore, job_id: str, dispatch: int, policy: RunPolicy) -> JobState | None:
    """Run job ``job_id`` if this delivery (``dispatch``) may; return its final state, or
    ``None`` when this delivery had nothing to do (stale, duplicate, already finished)."""
    try:
        job = store.stored(job_id)
    except JobNotFoundError:
        logger.warning("job {} is not in the job store; message dropped", job_id)
        return None
    if job.dispatch != dispatch or job.info.state.finished:
        return None
    if not _takeover_allowed(store, job, policy):
        return None
    owner = process_owner()
    if not store.claim(job, owner):
        return None
    return _run(store, job, owner, policy)


def _takeover_allowed(store: JobStore, job: StoredJob, policy: RunPolicy) -> bool:
    """For a job marked running (a redelivery): start it again only if its owner is gone."""
    info = job.info
    if info.state is JobState.QUEUED:
        return not info.cancel_requested
    if owner_alive(job.owner, job.heartbeat_at, policy.lost_after_s):
        return False  # a duplicate delivery while the first one still runs
    if info.cancel_requested:
        store.finish(
            info.id, job.owner, JobState.CANCELLED, message="cancelled; its worker was lost"
        )
        return False
    if info.attempts >= policy.max_attempts:
        error = JobError(
            f"the worker running this job was lost {info.attempts} times (killed, out of "
            "memory?); not starting it again",
            "WorkerLost",
        )
        store.finish(
            info.id, job.owner, JobState.FAILED, message=error.message, error=error, retryable=True
        )
        return False
    logger.warning("job {}: its worker ({}) was lost; starting it again", info.id, job.owner)
    return True


def _run(store: JobStore, job: StoredJob, owner: str, policy: RunPolicy) -> JobState:
    job_id = job.info.id

    last_write = 0.0

    def report(progress: float, message: str = "") -> None:
        nonlocal last_write
        value = min(max(float(progress), 0.0), 1.0)
        now = time.monotonic()
        # A chatty task must not turn the shared store into a hot spot: write (and look for a
        # cancel) at most every REPORT_EVERY_S, and always at the first and the last step.
        if now - last_write < REPORT_EVERY_S and 0.0 < value < 1.0:
            return
        last_write = now
        if store.report(job_id, owner, value, message):
            raise JobCancelled(job_id)

    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(store, job_id, owner, policy.heartbeat_s, stop), daemon=True
    )
    beat.start()
    outcome: dict[str, Any]
    try:
        with job_context(JobContext(policy.home)):
            result = JOB_KINDS.get(job.info.kind).run(job.info.payload, report)
        value = jsonable(result)
        outcome = {
            "state": JobState.SUCCEEDED,
            "message": "done",
            "result": value if isinstance(value, dict) else {"value": value},
        }
    except JobCancelled:
        outcome = {"state": JobState.CANCELLED, "message": "cancelled while running"}
    except Exception as error:
        if isinstance(error, TradeMLError):
            logger.warning("job {} ({}) failed: {}", job_id, job.info.kind, error)
        else:
            logger.opt(exception=error).warning("job {} ({}) failed", job_id, job.info.kind)
        # Bad input fails the same way again; anything else (network, a lost service, a bug
        # fixed since) may not.
        retryable = not isinstance(error, ConfigError)
        outcome = {
            "state": JobState.FAILED,
            # The reason lives in the error alone, which listings leave out.
            "message": f"failed ({type(error).__name__})",
            "error": JobError(redact(error) or type(error).__name__, type(error).__name__),
            "retryable": retryable,
        }
    finally:
        stop.set()
        beat.join()
    if not store.finish(job_id, owner, **outcome):
        logger.warning("job {} was taken over while it ran; its outcome is dropped", job_id)
    return JobState(outcome["state"])


def _heartbeat(
    store: JobStore, job_id: str, owner: str, every_s: float, stop: threading.Event
) -> None:
    while not stop.wait(every_s):
        try:
            store.heartbeat(job_id, owner)
        except Exception as error:  # a store hiccup must not kill the job
            logger.warning("job {}: heartbeat not written: {}", job_id, error)
