"""The job store: one SQL table holding every job's state, the single source of truth.

Whichever process runs a job (an in-process pool thread, a Celery worker on another machine)
writes its state here, and the API reads it from here, so both backends look the same to a
reader. Every change is one guarded ``UPDATE ... WHERE`` (compare-and-set on state, owner and
dispatch number), so two processes racing for one job cannot both win, on SQLite (WAL, with a
busy timeout) and on PostgreSQL alike.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trademl.databases import open_engine
from trademl.errors import JobNotFoundError, JobQueueError, JobStateError
from trademl.jobs.info import JobError, JobInfo, JobState
from trademl.redact import redact, redact_url

_metadata = sa.MetaData()

jobs_table = sa.Table(
    "trademl_jobs",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("error_type", sa.String(128), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("retryable", sa.Boolean, nullable=False, default=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    # Internals: the Celery queue it was sent to, how many times it was (re)sent (a message
    # carrying an older number is stale), which process runs it, and when that process last
    # proved alive.
    sa.Column("queue", sa.String(200), nullable=True),
    sa.Column("dispatch", sa.Integer, nullable=False, default=1),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
)


@dataclass(frozen=True)
class StoredJob:
    """A job with the bookkeeping that backends need and readers do not."""

    info: JobInfo
    queue: str | None
    dispatch: int
    owner: str | None
    heartbeat_at: datetime | None


def utc_now() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; the store only ever writes UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class JobStore:
    """Jobs in a SQL database given by a SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``).

    >>> store = JobStore("sqlite://")
    >>> job = store.create("echo", {"x": 1})
    >>> store.get(job.id).state
    <JobState.QUEUED: 'queued'>
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url)
        try:
            _metadata.create_all(self._engine, checkfirst=True)
        except sa.exc.DBAPIError as error:
            # Another process (the API, a worker) may have created it meanwhile.
            if not self._has_table():
                self._engine.dispose()
                raise JobQueueError(
                    redact(f"job store {redact_url(url)} is not usable: {error}")
                ) from error

    def _has_table(self) -> bool:
        try:
            return sa.inspect(self._engine).has_table(jobs_table.name)
        except sa.exc.DBAPIError:
            return False

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as error:
            raise JobQueueError(
                redact(f"job store {redact_url(self.url)} is not reachable: {error}")
            ) from error

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    # -- reading -------------------------------------------------------------------------------

    def stored(self, job_id: str) -> StoredJob:
        """The job ``job_id`` with its bookkeeping; raises :class:`JobNotFoundError`."""
        with self._begin() as conn:
            row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).first()
        if row is None:
            raise JobNotFoundError(f"job {job_id!r} not found")
        return _stored(row._mapping)

    def get(self, job_id: str) -> JobInfo:
        """The job ``job_id``; raises :class:`JobNotFoundError` when there is none."""
        return self.stored(job_id).info

    def list(self, limit: int = 50, state: JobState | str | None = None) -> list[JobInfo]:
        """The newest ``limit`` jobs, newest first, optionally only those in ``state``."""
        query = sa.select(jobs_table).order_by(jobs_table.c.created_at.desc()).limit(limit)
        if state is not None:
            query = query.where(jobs_table.c.state == JobState(state).value)
        with self._begin() as conn:
            rows = conn.execute(query).all()
        return [_stored(row._mapping).info for row in rows]

    def active(self) -> builtins.list[StoredJob]:
        """Queued and running jobs, oldest first (what crash recovery looks at)."""
        query = (
            sa.select(jobs_table)
            .where(jobs_table.c.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]))
            .order_by(jobs_table.c.created_at)
        )
        with self._begin() as conn:
            return [_stored(row._mapping) for row in conn.execute(query).all()]

    def count(self, kind: str, state: JobState) -> int:
        """How many ``kind`` jobs are in ``state``."""
        query = sa.select(sa.func.count()).where(
            jobs_table.c.kind == kind, jobs_table.c.state == state.value
        )
        with self._begin() as conn:
            return int(conn.execute(query).scalar() or 0)

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state listed, zeros included)."""
        query = sa.select(jobs_table.c.state, sa.func.count()).group_by(jobs_table.c.state)
        with self._begin() as conn:
            found = {state: int(count) for state, count in conn.execute(query).all()}
        return {state.value: found.get(state.value, 0) for state in JobState}

    # -- writing -------------------------------------------------------------------------------

    def create(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        queue: str | None = None,
        owner: str | None = None,
    ) -> JobInfo:
        """Store a new queued job and return it."""
        job_id = uuid.uuid4().hex
        values = {
            "id": job_id,
            "kind": kind,
            "state": JobState.QUEUED.value,
            "payload": payload,
            "progress": 0.0,
            "message": "queued",
            "created_at": utc_now(),
            "attempts": 0,
            "retryable": False,
            "cancel_requested": False,
            "queue": queue,
            "dispatch": 1,
            "owner": owner,
        }
        with self._begin() as conn:
            conn.execute(jobs_table.insert().values(**values))
        return self.get(job_id)

    def delete(self, job_id: str) -> None:
        """Remove a job (used when a submit could not reach the broker)."""
        with self._begin() as conn:
            conn.execute(jobs_table.delete().where(jobs_table.c.id == job_id))

    def _update(self, job_id: str, guard: sa.ColumnElement[bool], **values: Any) -> bool:
        with self._begin() as conn:
            done = conn.execute(
                jobs_table.update().where(jobs_table.c.id == job_id, guard).values(**values)
            )
        return done.rowcount == 1

    def claim(self, job: StoredJob, owner: str) -> bool:
        """Mark ``job`` running by ``owner`` if nobody changed it since it was read."""
        now = utc_now()
        return self._update(
            job.info.id,
            sa.and_(
                jobs_table.c.state == job.info.state.value,
                jobs_table.c.dispatch == job.dispatch,
                _owner_is(job.owner),
                jobs_table.c.cancel_requested.is_(False),
            ),
            state=JobState.RUNNING.value,
            owner=owner,
            attempts=jobs_table.c.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            progress=0.0,
            message="started",
        )

    def report(self, job_id: str, owner: str, progress: float, message: str) -> bool:
        """Record progress of a running job; returns whether its task should stop (a cancel
        was requested, or the job was given to another process meanwhile)."""
        with self._begin() as conn:
            written = conn.execute(
                jobs_table.update()
                .where(jobs_table.c.id == job_id, jobs_table.c.owner == owner)
                .values(progress=progress, message=message, heartbeat_at=utc_now())
            )
            requested = conn.execute(
                sa.select(jobs_table.c.cancel_requested).where(jobs_table.c.id == job_id)
            ).scalar()
        return written.rowcount != 1 or bool(requested)

    def heartbeat(self, job_id: str, owner: str) -> None:
        """Prove that ``owner`` still runs the job."""
        self._update(
            job_id,
            sa.and_(jobs_table.c.owner == owner, jobs_table.c.state == JobState.RUNNING.value),
            heartbeat_at=utc_now(),
        )

    def finish(
        self,
        job_id: str,
        owner: str | None,
        state: JobState,
        *,
        message: str,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
        retryable: bool = False,
        expect: JobState = JobState.RUNNING,
    ) -> bool:
        """Move a job owned by ``owner`` from ``expect`` to the final ``state``."""
        values: dict[str, Any] = {
            "state": state.value,
            "message": message,
            "finished_at": utc_now(),
            "retryable": retryable,
            "result": result,
            "error_message": error.message if error else None,
            "error_type": error.type if error else None,
        }
        if state is JobState.SUCCEEDED:
            values["progress"] = 1.0
        guard = sa.and_(jobs_table.c.state == expect.value, _owner_is(owner))
        return self._update(job_id, guard, **values)

    def cancel(self, job_id: str) -> JobInfo:
        """Cancel a queued job at once, or ask a running one to stop at its next report."""
        job = self.stored(job_id)
        state = job.info.state
        if state is JobState.QUEUED:
            guard = jobs_table.c.state == JobState.QUEUED.value
            if self._update(
                job_id,
                guard,
                state=JobState.CANCELLED.value,
                message="cancelled before it started",
                finished_at=utc_now(),
                cancel_requested=True,
            ):
                return self.get(job_id)
            return self.cancel(job_id)  # it started meanwhile: ask the running job to stop
        if state is JobState.RUNNING:
            self._update(
                job_id,
                jobs_table.c.state == JobState.RUNNING.value,
                cancel_requested=True,
                message="cancel requested",
            )
            return self.get(job_id)
        if state is JobState.CANCELLED:
            return job.info
        raise JobStateError(
            f"job {job_id} already {state.value}; only queued or running jobs can be cancelled"
        )

    def requeue(
        self, job: StoredJob, *, message: str, reset_attempts: bool, owner: str | None = None
    ) -> int | None:
        """Put ``job`` back in the queue under a new dispatch number (``None`` if it moved);
        ``owner`` is the process that will run it, when known (the in-process pool)."""
        values: dict[str, Any] = {
            "state": JobState.QUEUED.value,
            "dispatch": job.dispatch + 1,
            "message": message,
            "progress": 0.0,
            "result": None,
            "error_message": None,
            "error_type": None,
            "retryable": False,
            "cancel_requested": False,
            "started_at": None,
            "finished_at": None,
            "owner": owner,
            "heartbeat_at": None,
        }
        if reset_attempts:
            values["attempts"] = 0
        guard = sa.and_(
            jobs_table.c.state == job.info.state.value,
            jobs_table.c.dispatch == job.dispatch,
            _owner_is(job.owner),
        )
        return job.dispatch + 1 if self._update(job.info.id, guard, **values) else None


def _owner_is(owner: str | None) -> sa.ColumnElement[bool]:
    column = jobs_table.c.owner
    return column.is_(None) if owner is None else column == owner


def _json(value: Any) -> Any:
    # Some drivers hand JSON columns back as text.
    return json.loads(value) if isinstance(value, str) else value


def _stored(row: Any) -> StoredJob:
    error = None
    if row["error_message"] is not None:
        error = JobError(message=row["error_message"], type=row["error_type"] or "Error")
    created = _aware(row["created_at"])
    assert created is not None
    info = JobInfo(
        id=row["id"],
        kind=row["kind"],
        state=JobState(row["state"]),
        progress=float(row["progress"]),
        message=row["message"],
        payload=_json(row["payload"]),
        result=_json(row["result"]),
        error=error,
        created_at=created,
        started_at=_aware(row["started_at"]),
        finished_at=_aware(row["finished_at"]),
        attempts=int(row["attempts"]),
        retryable=bool(row["retryable"]),
        cancel_requested=bool(row["cancel_requested"]),
    )
    return StoredJob(
        info=info,
        queue=row["queue"],
        dispatch=int(row["dispatch"]),
        owner=row["owner"],
        heartbeat_at=_aware(row["heartbeat_at"]),
    )
