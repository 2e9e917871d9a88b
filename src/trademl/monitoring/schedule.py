"""Retraining schedules: cron strings, an in-process scheduler thread, Celery beat entries.

A schedule is a 5-field cron string (minute hour day-of-month month day-of-week) or an alias
(``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``), always in UTC. Celery's
``crontab`` expands the fields and computes the next fire time, so the in-process
:class:`Scheduler` and Celery beat (:func:`beat_schedule`) fire at the same instants.

One difference from classic cron: when both day-of-month and day-of-week are restricted, a day
must match both (Celery's rule: ``0 9 1-7 * mon`` is the first Monday), not either.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from loguru import logger

from trademl.errors import ConfigError
from trademl.extras import require

# Celery's crontab does the cron arithmetic, for the in-process scheduler as for beat.
require("celery", "celery", "retraining schedules (cron strings)")

from celery import Celery  # noqa: E402
from celery.schedules import crontab, crontab_parser  # noqa: E402

RETRAIN_TASK = "trademl.retrain"
ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names from lowest); day-of-week 7 is Sunday again, as in crontab(5).
FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 7, DAYS),
)
_PART = re.compile(r"(?P<star>\*)|(?P<start>[0-9a-z]+)(?:-(?P<end>[0-9a-z]+))?", re.IGNORECASE)
# Next-fire arithmetic runs on a crontab bound to this app, so a process's default Celery app
# (whose timezone may be local) never enters it.
_UTC_APP = Celery("trademl-schedule", set_as_current=False)
_UTC_APP.conf.update(enable_utc=True, timezone="UTC")
MAX_WAIT_S = 60.0  # the loop re-reads the clock at least this often (clock steps, suspends)


@dataclass(frozen=True, eq=False)
class Cron:
    """A parsed cron schedule (UTC); build it with :func:`parse_cron`.

    Attributes
    ----------
    text:
        The string as written (``"@daily"``, ``"*/15 * * * *"``).
    crontab:
        The ``celery.schedules.crontab`` for Celery beat.
    """

    text: str
    crontab: crontab
    _utc: crontab = field(repr=False)

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after ``t`` (tz-aware), in UTC.

        Examples
        --------
        >>> from datetime import UTC, datetime
        >>> parse_cron("30 9 * * mon-fri").next_after(datetime(2024, 3, 1, 9, 30, tzinfo=UTC))
        datetime.datetime(2024, 3, 4, 9, 30, tzinfo=datetime.timezone.utc)
        """
        if t.tzinfo is None or t.utcoffset() is None:
            raise ConfigError(f"next_after: t must be timezone-aware, got naive {t.isoformat()}")
        start = t.astimezone(UTC)
        _, delta, _ = self._utc.remaining_delta(start, tz=UTC)
        fire: datetime = start + delta
        return fire


def parse_cron(text: str, *, setting: str = "schedule") -> Cron:
    """Parse a 5-field cron string or an alias; ``setting`` names it in errors.

    Fields take ``*``, numbers, lists (``1,15``), ranges (``9-17``) and steps (``*/15``,
    ``0-30/10``); month and day-of-week also take names (``jan``, ``mon-fri``). A bad string
    raises :class:`~trademl.errors.ConfigError` naming the field.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{setting}: expected a cron string, got {text!r}")
    source = text.strip()

    def fail(reason: str) -> ConfigError:
        return ConfigError(f"{setting} {text!r}: {reason}")

    if source.startswith("@"):
        if source.lower() not in ALIASES:
            raise fail(f"unknown alias {source}; expected one of {', '.join(ALIASES)}")
        source = ALIASES[source.lower()]
    fields = source.split()
    if len(fields) != 5:
        raise fail(
            f"expected 5 fields (minute hour day-of-month month day-of-week) or an alias, "
            f"got {len(fields)}"
        )
    specs = [_check_field(spec, *bounds, fail) for spec, bounds in zip(fields, FIELDS, strict=True)]
    minute, hour, day_of_month, month, day_of_week = specs
    try:
        schedule, arithmetic = (
            crontab(minute, hour, day_of_week, day_of_month, month) for _ in range(2)
        )  # Celery's argument order
    except ValueError as error:  # a day that no listed month has (30 2, 31 4,6)
        raise fail(f"day-of-month {fields[2]} never falls in month {fields[3]}") from error
    arithmetic.app = _UTC_APP
    return Cron(text=text, crontab=schedule, _utc=arithmetic)


def _check_field(
    spec: str,
    name: str,
    low: int,
    high: int,
    names: tuple[str, ...],
    fail: Callable[[str], Exception],
) -> str:
    """``spec`` checked item by item (messages name the field), as Celery should read it."""

    def value(token: str) -> int:
        if token.lower() in names:
            return names.index(token.lower()) + low
        if not token.isdigit():
            expected = f"a number or a name ({names[0]}-{names[-1]})" if names else "a number"
            raise fail(f"{name} {token!r} is not {expected}")
        if not low <= int(token) <= high:
            raise fail(f"{name} {int(token)} is out of range {low}-{high}")
        return int(token)

    written: set[int] = set()
    for part in spec.split(","):
        base, _, step = part.partition("/")
        match = _PART.fullmatch(base)
        if not part or match is None:
            raise fail(f"{name} {spec!r} has a malformed item {part!r}")
        if "/" in part and not (step.isdigit() and int(step) >= 1):
            raise fail(f"{name} step {step!r} must be a whole number >= 1")
        if step and not (match["star"] or match["end"]):
            raise fail(f"{name} {part!r}: a step needs a range or '*' ({base}-{high}/{step})")
        if match["start"]:
            first = value(match["start"])
            last = value(match["end"]) if match["end"] else first
            if last < first:
                raise fail(f"{name} range {base!r} runs backwards; write it as two ranges")
            written |= {first, last}
    try:
        if names == DAYS and 7 in written:  # Celery's day-of-week is 0-6: fold 7 onto Sunday
            days = crontab_parser(8).parse(spec)
            return ",".join(str(day) for day in sorted({day % 7 for day in days}))
        crontab_parser(high - low + 1, low).parse(spec)
    except (ValueError, crontab_parser.ParseException) as error:
        raise fail(f"{name} {spec!r}: {error}") from error
    return spec


class Clock(Protocol):
    """Where a :class:`Scheduler` reads the time and waits; tests pass one that jumps."""

    def now(self) -> datetime:
        """The current time, tz-aware."""

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Wait ``seconds`` or until ``stop`` is set; True when it is set."""


class SystemClock:
    """The wall clock in UTC."""

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Sleep on ``stop``, so :meth:`Scheduler.stop` wakes the loop at once."""
        return stop.wait(seconds)


@dataclass
class JobStatus:
    """One scheduled job as the scheduler saw it (a copy: :meth:`Scheduler.status`).

    ``last_fired`` is the fire time of the latest run; ``skipped`` counts fire times that
    started no run (the previous run was still going, or the loop woke late and coalesced
    them); ``last_error`` is the latest finished run's error, None when it succeeded.
    """

    schedule: str
    next_due: datetime
    last_fired: datetime | None = None
    running: bool = False
    runs: int = 0
    failures: int = 0
    skipped: int = 0
    last_error: str | None = None


class Scheduler:
    """Runs each job's callable in its own thread when its cron fires, never two runs of one
    job at once; a failing run is logged and recorded, and the schedule goes on.

    Parameters
    ----------
    jobs:
        ``{name: (cron, callable)}``; the callable takes no argument.
    clock:
        Where time is read and waited on (:class:`SystemClock` by default).
    """

    def __init__(
        self, jobs: Mapping[str, tuple[Cron, Callable[[], object]]], clock: Clock | None = None
    ) -> None:
        if not jobs:
            raise ConfigError("Scheduler: jobs is empty; expected {name: (cron, callable)}")
        for name, job in jobs.items():
            if not (isinstance(job, tuple) and len(job) == 2 and isinstance(job[0], Cron)):
                raise ConfigError(f"Scheduler job {name!r}: expected (Cron, callable), got {job!r}")
            if not callable(job[1]):
                raise ConfigError(f"Scheduler job {name!r}: {job[1]!r} is not callable")
        self._jobs = dict(jobs)
        self.clock: Clock = clock or SystemClock()
        now = self.clock.now()
        self._status = {
            name: JobStatus(cron.text, cron.next_after(now)) for name, (cron, _) in jobs.items()
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runs: dict[str, threading.Thread] = {}

    def tick(self) -> list[str]:
        """Start the jobs due at the clock's current time; return their names.

        :meth:`start` calls this in a loop; tests may call it directly.
        """
        now = self.clock.now()
        started: dict[str, threading.Thread] = {}
        with self._lock:
            for name, job in self._status.items():
                due, fires = job.next_due, 0
                while job.next_due <= now:  # fire times the loop slept through coalesce
                    due, fires = job.next_due, fires + 1
                    job.next_due = self._jobs[name][0].next_after(due)
                if fires and job.running:
                    job.skipped += fires
                    logger.warning("scheduled job {} still running at {}: skipped", name, due)
                elif fires:
                    job.skipped += fires - 1
                    job.last_fired, job.runs, job.running = due, job.runs + 1, True
                    started[name] = threading.Thread(
                        target=self._run, args=(name,), name=f"trademl-schedule-{name}", daemon=True
                    )
            self._runs.update(started)
        for thread in started.values():
            thread.start()
        return list(started)

    def _run(self, name: str) -> None:
        error_text = None
        try:
            self._jobs[name][1]()
        except Exception as error:  # a failing job must not stop its schedule
            logger.opt(exception=error).error("scheduled job {} failed: {}", name, error)
            error_text = f"{type(error).__name__}: {error}"
        finally:
            with self._lock:
                job = self._status[name]
                job.running, job.last_error = False, error_text
                job.failures += error_text is not None

    def _loop(self) -> None:
        while not self._stop.is_set():
            delay = MAX_WAIT_S
            try:
                self.tick()
                with self._lock:
                    due = min(job.next_due for job in self._status.values())
                delay = min(max((due - self.clock.now()).total_seconds(), 0.0), MAX_WAIT_S)
            except Exception as error:  # a clock or cron error: log, wait, try again
                logger.opt(exception=error).error("scheduler tick failed: {}", error)
            if self.clock.wait(delay, self._stop):
                return

    def start(self) -> Scheduler:
        """Start the scheduler thread; the first fire times are those after now."""
        if self._thread is not None:
            raise RuntimeError("Scheduler.start: already started")
        now = self.clock.now()
        with self._lock:
            for name, job in self._status.items():
                job.next_due = self._jobs[name][0].next_after(now)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="trademl-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop the loop; with ``wait``, also wait for running jobs (up to ``timeout`` each)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for thread in list(self._runs.values()) if wait else []:
            thread.join(timeout)

    def status(self) -> dict[str, JobStatus]:
        """A consistent copy of every job's status."""
        with self._lock:
            return {name: replace(job) for name, job in self._status.items()}


def beat_schedule(
    jobs: Mapping[str, tuple[Cron, str, tuple[object, ...]]],
) -> dict[str, dict[str, object]]:
    """Celery beat ``beat_schedule`` entries: ``{name: (cron, task name, args)}``.

    Run by an app that keeps Celery's default UTC timezone (as
    :func:`trademl.jobs.celery_queue.make_celery_app` does); args travel as JSON.

    Examples
    --------
    >>> entries = beat_schedule({"btc": (parse_cron("@daily"), RETRAIN_TASK, ("btc-1h",))})
    >>> entries["btc"]["task"], entries["btc"]["args"]
    ('trademl.retrain', ('btc-1h',))
    """
    entries: dict[str, dict[str, object]] = {}
    for name, (cron, task, args) in jobs.items():
        if not isinstance(cron, Cron):
            raise ConfigError(f"beat_schedule {name!r}: expected a Cron, got {cron!r}")
        if not isinstance(task, str) or not task:
            raise ConfigError(f"beat_schedule {name!r}: task must be a task name, got {task!r}")
        if not isinstance(args, tuple):
            raise ConfigError(f"beat_schedule {name!r}: args must be a tuple, got {args!r}")
        try:
            json.dumps(args)
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"beat_schedule {name!r}: args {args!r} are not JSON: {error}"
            ) from error
        entries[name] = {"task": task, "schedule": cron.crontab, "args": args}
    return entries
