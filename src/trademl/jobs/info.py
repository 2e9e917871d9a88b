"""What a job is, as every backend reports it: :class:`JobInfo`, its states and its error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Where a job is in its life; ``succeeded``, ``failed`` and ``cancelled`` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the final states."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobError:
    """Why a job failed: the message and the exception's class name (``type``)."""

    message: str
    type: str


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of one job, read from the job store.

    Attributes
    ----------
    id : str
        The job id (32 hex characters).
    kind : str
        The task that runs it (``train``, ``backtest``, ``echo``...).
    state : JobState
        queued, running, succeeded, failed or cancelled.
    progress : float
        0 to 1, as last reported by the task; ``message`` says what it was doing.
    payload : dict
        The task's input, as submitted.
    result : dict or None
        What a succeeded task returned (JSON types only).
    error : JobError or None
        Why a failed job failed.
    retryable : bool
        Whether :meth:`~trademl.jobs.JobQueue.retry` may run a failed job again: true when
        the failure may not repeat (a lost worker, a network error), false for bad input.
    attempts : int
        How many times the job was started since it was submitted or last retried; more than
        one when a worker was lost mid-job and the job was started again.
    cancel_requested : bool
        A cancel was asked while it ran; the task stops at its next progress report.
    """

    id: str
    kind: str
    state: JobState
    progress: float
    message: str
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    retryable: bool
    cancel_requested: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON types only (timestamps as ISO 8601 strings), for an API response."""

        def stamp(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "progress": self.progress,
            "message": self.message,
            "payload": self.payload,
            "result": self.result,
            "error": {"message": self.error.message, "type": self.error.type}
            if self.error
            else None,
            "created_at": stamp(self.created_at),
            "started_at": stamp(self.started_at),
            "finished_at": stamp(self.finished_at),
            "attempts": self.attempts,
            "retryable": self.retryable,
            "cancel_requested": self.cancel_requested,
        }


class JobCancelled(Exception):  # noqa: N818 - a signal to the task, not an error
    """Raised inside a task, at a progress report, when its job was cancelled."""
