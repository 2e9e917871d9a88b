"""Retraining schedules: cron parsing and its errors, next fire times checked by hand and
against a day-by-day scan, the in-process scheduler on a fake clock (and one real thread), and
Celery beat entries that a real beat scheduler reads, agrees with and publishes to Redis."""

from __future__ import annotations

import base64
import calendar
import json
import pickle
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from celery import Celery, beat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger
from tests.support.jobs import REDIS_URL, job_settings, require_redis

from trademl.errors import ConfigError
from trademl.jobs.celery_queue import make_celery_app
from trademl.monitoring.schedule import (
    RETRAIN_TASK,
    Cron,
    Scheduler,
    SystemClock,
    beat_schedule,
    parse_cron,
)


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def expanded(cron: Cron) -> tuple[set[int], ...]:
    c = cron.crontab
    return c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week


EVERY = {
    "minute": set(range(60)),
    "hour": set(range(24)),
    "dom": set(range(1, 32)),
    "month": set(range(1, 13)),
    "dow": set(range(7)),
}


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minute", "hour", "dom", "month", "dow"),
    [
        ("* * * * *", EVERY["minute"], EVERY["hour"], EVERY["dom"], EVERY["month"], EVERY["dow"]),
        ("5 4 * * *", {5}, {4}, EVERY["dom"], EVERY["month"], EVERY["dow"]),
        ("0,15,45 9-11 1,15 * *", {0, 15, 45}, {9, 10, 11}, {1, 15}, EVERY["month"], EVERY["dow"]),
        (
            "*/20 */6 */10 */4 */2",
            {0, 20, 40},
            {0, 6, 12, 18},
            {1, 11, 21, 31},
            {1, 5, 9},
            {0, 2, 4, 6},
        ),
        (
            "10-30/10 8-18/5 2-9/3 2-12/5 1-5/2",
            {10, 20, 30},
            {8, 13, 18},
            {2, 5, 8},
            {2, 7, 12},
            {1, 3, 5},
        ),
        ("0 9 1-7 * mon", {0}, {9}, set(range(1, 8)), EVERY["month"], {1}),
        ("0 0 * JAN,jul-Sep MON-FRI", {0}, {0}, EVERY["dom"], {1, 7, 8, 9}, {1, 2, 3, 4, 5}),
        ("0 0 * * 7", {0}, {0}, EVERY["dom"], EVERY["month"], {0}),  # 7 is Sunday too
        ("0 0 * * 5-7", {0}, {0}, EVERY["dom"], EVERY["month"], {5, 6, 0}),
        ("  59\t23  31 12   sat ", {59}, {23}, {31}, {12}, {6}),
        ("0 0 29 2 *", {0}, {0}, {29}, {2}, EVERY["dow"]),
        ("@hourly", {0}, EVERY["hour"], EVERY["dom"], EVERY["month"], EVERY["dow"]),
        ("@daily", {0}, {0}, EVERY["dom"], EVERY["month"], EVERY["dow"]),
        ("@midnight", {0}, {0}, EVERY["dom"], EVERY["month"], EVERY["dow"]),
        ("@weekly", {0}, {0}, EVERY["dom"], EVERY["month"], {0}),
        ("@monthly", {0}, {0}, {1}, EVERY["month"], EVERY["dow"]),
        ("@yearly", {0}, {0}, {1}, {1}, EVERY["dow"]),
        ("@Annually", {0}, {0}, {1}, {1}, EVERY["dow"]),
    ],
)
def test_parse_cron_expands_each_form(
    text: str, minute: set[int], hour: set[int], dom: set[int], month: set[int], dow: set[int]
) -> None:
    cron = parse_cron(text)
    assert cron.text == text
    assert expanded(cron) == (minute, hour, dom, month, dow)


def test_parse_error_names_the_setting_the_string_and_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cron("61 * * * *", setting="retraining.schedule")
    assert str(caught.value) == "retraining.schedule '61 * * * *': minute 61 is out of range 0-59"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("60 * * * *", r"minute 60 is out of range 0-59"),
        ("* 24 * * *", r"hour 24 is out of range 0-23"),
        ("* * 0 * *", r"day-of-month 0 is out of range 1-31"),
        ("* * 32 * *", r"day-of-month 32 is out of range 1-31"),
        ("* * * 0 *", r"month 0 is out of range 1-12"),
        ("* * * 13 *", r"month 13 is out of range 1-12"),
        ("* * * * 8", r"day-of-week 8 is out of range 0-7"),
        ("0-70 * * * *", r"minute 70 is out of range 0-59"),
        ("jan * * * *", r"minute 'jan' is not a number"),
        ("* mon * * *", r"hour 'mon' is not a number"),
        ("* * * foo *", r"month 'foo' is not a number or a name \(jan-dec\)"),
        ("* * * * monday", r"day-of-week 'monday' is not a number or a name \(sun-sat\)"),
        ("* * * * jan", r"day-of-week 'jan' is not a number or a name"),
        ("*/0 * * * *", r"minute step '0' must be a whole number >= 1"),
        ("* */ * * *", r"hour step '' must be a whole number >= 1"),
        ("* * */x * *", r"day-of-month step 'x' must be a whole number >= 1"),
        ("5/15 * * * *", r"minute '5/15': a step needs a range or '\*' \(5-59/15\)"),
        ("* 20-4 * * *", r"hour range '20-4' runs backwards"),
        ("* * * * fri-mon", r"day-of-week range 'fri-mon' runs backwards"),
        ("1,,2 * * * *", r"minute '1,,2' has a malformed item ''"),
        ("1, * * * *", r"minute '1,' has a malformed item ''"),
        ("1-2-3 * * * *", r"minute '1-2-3' has a malformed item '1-2-3'"),
        ("-1 * * * *", r"minute '-1' has a malformed item '-1'"),
        ("* * ? * *", r"day-of-month '\?' has a malformed item '\?'"),
        ("* * L * *", r"day-of-month 'L' is not a number"),
        ("* * * * 1#2", r"day-of-week '1#2' has a malformed item '1#2'"),
        ("0 0 30 2 *", r"day-of-month 30 never falls in month 2"),
        ("0 0 31 4,6,9,11 *", r"day-of-month 31 never falls in month 4,6,9,11"),
        ("* * * *", r"expected 5 fields .* got 4"),
        ("* * * * * *", r"expected 5 fields .* got 6"),
        ("", r"expected 5 fields .* got 0"),
        ("@reboot", r"unknown alias @reboot; expected one of @hourly, @daily"),
        ("@daily 0", r"unknown alias @daily 0"),
    ],
)
def test_parse_cron_refuses_bad_fields_naming_them(text: str, match: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"^retraining\.schedule {re.escape(repr(text))}: {match}"
    ):
        parse_cron(text, setting="retraining.schedule")


def test_parse_cron_refuses_a_non_string() -> None:
    with pytest.raises(ConfigError, match=r"schedule: expected a cron string, got 15"):
        parse_cron(15)  # type: ignore[arg-type]


# -- next fire times ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("*/15 * * * *", at(2024, 3, 1, 10, 7), at(2024, 3, 1, 10, 15)),
        ("*/15 * * * *", at(2024, 3, 1, 10, 45), at(2024, 3, 1, 11, 0)),  # strictly after
        ("*/15 * * * *", at(2023, 12, 31, 23, 45), at(2024, 1, 1, 0, 0)),  # year end
        ("0-30/10 8 * * *", at(2024, 3, 1, 8, 5, 59), at(2024, 3, 1, 8, 10)),
        ("0-30/10 8 * * *", at(2024, 3, 1, 8, 30), at(2024, 3, 2, 8, 0)),
        ("0 */6 * * *", at(2024, 3, 1, 18, 0, 0, 1), at(2024, 3, 2, 0, 0)),
        ("0 0 * * *", at(2024, 2, 28, 23, 0), at(2024, 2, 29, 0, 0)),  # leap day
        ("0 0 * * *", at(2023, 2, 28, 23, 0), at(2023, 3, 1, 0, 0)),
        ("0 0 31 * *", at(2024, 1, 31, 0, 0), at(2024, 3, 31, 0, 0)),  # February has no 31st
        ("0 0 31 * *", at(2024, 3, 31, 0, 0), at(2024, 5, 31, 0, 0)),  # nor April
        ("59 23 30 * *", at(2024, 2, 1), at(2024, 3, 30, 23, 59)),
        ("@monthly", at(2024, 12, 31, 23, 59, 59), at(2025, 1, 1, 0, 0)),
        ("@yearly", at(2024, 6, 1), at(2025, 1, 1)),
        ("0 0 29 2 *", at(2024, 3, 1), at(2028, 2, 29)),
        ("0 0 29 2 mon", at(2024, 3, 1), at(2044, 2, 29)),  # a Monday leap day
        ("30 9 * * mon-fri", at(2024, 3, 1, 9, 29, 59), at(2024, 3, 1, 9, 30)),  # a Friday
        ("30 9 * * mon-fri", at(2024, 3, 1, 9, 30), at(2024, 3, 4, 9, 30)),  # to Monday
        ("@weekly", at(2024, 3, 2, 12), at(2024, 3, 3)),  # Saturday to Sunday
        ("0 12 * * 7", at(2024, 3, 3, 12), at(2024, 3, 10, 12)),  # Sunday to Sunday
        ("0 9 1-7 * mon", at(2024, 1, 31), at(2024, 2, 5, 9)),  # the first Monday
        ("0 9 1-7 * mon", at(2024, 2, 5, 9), at(2024, 3, 4, 9)),
        ("0 0 1 jan,jul *", at(2024, 1, 1), at(2024, 7, 1)),
    ],
)
def test_next_after_matches_hand_checked_times(
    text: str, after: datetime, expected: datetime
) -> None:
    found = parse_cron(text).next_after(after)
    assert found == expected
    assert found.tzinfo == UTC


def test_hand_checked_weekdays_are_what_the_table_says() -> None:
    assert [date(2024, 3, day).strftime("%a") for day in (1, 2, 3, 4)] == [
        "Fri",
        "Sat",
        "Sun",
        "Mon",
    ]
    assert [date(2024, m, d).strftime("%a") for m, d in ((2, 5), (3, 4))] == ["Mon", "Mon"]
    assert date(2044, 2, 29).strftime("%a") == "Mon"
    assert not any(date(y, 2, 29).weekday() == 0 for y in range(2028, 2044, 4))


def test_next_after_takes_any_timezone_and_answers_in_utc() -> None:
    paris_summer = timezone(timedelta(hours=2))
    found = parse_cron("0 9 * * *").next_after(datetime(2024, 7, 1, 10, 30, tzinfo=paris_summer))
    assert found == at(2024, 7, 1, 9)  # 10:30+02:00 is 08:30 UTC
    assert found.utcoffset() == timedelta(0)


def test_next_after_refuses_a_naive_datetime() -> None:
    with pytest.raises(ConfigError, match=r"t must be timezone-aware, got naive 2024-03-01T10:00"):
        parse_cron("@daily").next_after(datetime(2024, 3, 1, 10))


DAYS_IN_MONTH = {month: calendar.monthrange(2024, month)[1] for month in range(1, 13)}


@st.composite
def cron_field(draw: st.DrawFn, low: int, high: int) -> tuple[str, set[int]]:
    """A field spec and the values it means, expanded here independently of Celery."""
    values = st.integers(low, high)
    kind = draw(st.sampled_from(["star", "star_step", "value", "range", "range_step", "list"]))
    if kind == "star":
        return "*", set(range(low, high + 1))
    if kind == "value":
        value = draw(values)
        return str(value), {value}
    if kind == "list":
        chosen = draw(st.lists(values, min_size=1, max_size=4))
        return ",".join(map(str, chosen)), set(chosen)
    step = draw(st.integers(1, high - low + 1))
    if kind == "star_step":
        return f"*/{step}", set(range(low, high + 1, step))
    first, last = sorted((draw(values), draw(values)))
    if kind == "range":
        return f"{first}-{last}", set(range(first, last + 1))
    return f"{first}-{last}/{step}", set(range(first, last + 1, step))


FIELD_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
crons = st.tuples(*(cron_field(low, high) for low, high in FIELD_BOUNDS))
instants = st.datetimes(datetime(2000, 1, 1), datetime(2060, 12, 31), timezones=st.just(UTC))


def scanned_next(sets: tuple[set[int], ...], t: datetime) -> datetime:
    """The first matching minute after ``t``, day by day (a day must match every day field)."""
    minutes, hours, days, months, weekdays = (sorted(values) for values in sets)
    day = t.date()
    for _ in range(366 * 45):
        if day.month in months and day.day in days and day.isoweekday() % 7 in weekdays:
            for hour in hours:
                for minute in minutes:
                    fire = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if fire > t:
                        return fire
        day += timedelta(days=1)
    raise AssertionError(f"no fire time within 45 years of {t}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=crons, t=instants, later_s=st.integers(0, 3 * 366 * 86400))
def test_next_after_is_the_first_match_strictly_after_and_monotone(
    fields: tuple[tuple[str, set[int]], ...], t: datetime, later_s: int
) -> None:
    text = " ".join(spec for spec, _ in fields)
    sets = tuple(values for _, values in fields)
    if not any(day <= DAYS_IN_MONTH[month] for day in sets[2] for month in sets[3]):
        with pytest.raises(ConfigError, match="never falls in month"):
            parse_cron(text)
        return
    cron = parse_cron(text)
    assert expanded(cron) == sets
    first = cron.next_after(t)
    assert first > t
    assert first == scanned_next(sets, t)
    later = t + timedelta(seconds=later_s)
    assert cron.next_after(later) >= first


# -- the in-process scheduler ------------------------------------------------------------------


class FakeClock:
    """A clock that jumps: ``wait`` moves time forward at once, once no run is in progress,
    and stops moving (blocking until stopped) past ``until``."""

    def __init__(self, start: datetime, until: datetime | None = None) -> None:
        self.t = start
        self.until = until
        self.settled: Callable[[], bool] = lambda: True
        self.reached = threading.Event()

    def now(self) -> datetime:
        return self.t

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        deadline = time.monotonic() + 10
        while not self.settled() and time.monotonic() < deadline:
            if stop.wait(0.001):
                return True
        target = self.t + timedelta(seconds=seconds)
        if self.until is not None and target > self.until:
            self.reached.set()
            return stop.wait(10)
        self.t = target
        return stop.is_set()


def settle(scheduler: Scheduler, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while any(job.running for job in scheduler.status().values()):
        assert time.monotonic() < deadline, "a scheduled run did not finish"
        time.sleep(0.001)


def recorder(clock: FakeClock, into: list[datetime]) -> Callable[[], None]:
    return lambda: into.append(clock.now())


def test_tick_fires_the_due_jobs_at_their_fire_times() -> None:
    clock = FakeClock(at(2024, 3, 1, 9, 52, 30))
    every_5: list[datetime] = []
    hourly: list[datetime] = []
    scheduler = Scheduler(
        {
            "every-5": (parse_cron("*/5 * * * *"), recorder(clock, every_5)),
            "hourly": (parse_cron("@hourly"), recorder(clock, hourly)),
        },
        clock=clock,
    )
    assert scheduler.status()["every-5"].next_due == at(2024, 3, 1, 9, 55)
    assert scheduler.status()["hourly"].next_due == at(2024, 3, 1, 10)
    fired = {}
    for minute_second in [(54, 59), (55, 0), (59, 59), (60, 0), (60, 1), (64, 59), (65, 0)]:
        clock.t = at(2024, 3, 1, 9) + timedelta(minutes=minute_second[0], seconds=minute_second[1])
        fired[minute_second] = scheduler.tick()
        settle(scheduler)
    assert fired == {
        (54, 59): [],
        (55, 0): ["every-5"],
        (59, 59): [],
        (60, 0): ["every-5", "hourly"],
        (60, 1): [],
        (64, 59): [],
        (65, 0): ["every-5"],
    }
    assert every_5 == [at(2024, 3, 1, 9, 55), at(2024, 3, 1, 10), at(2024, 3, 1, 10, 5)]
    assert hourly == [at(2024, 3, 1, 10)]
    status = scheduler.status()
    assert (status["every-5"].runs, status["every-5"].skipped) == (3, 0)
    assert status["every-5"].last_fired == at(2024, 3, 1, 10, 5)
    assert status["every-5"].next_due == at(2024, 3, 1, 10, 10)
    assert status["hourly"].next_due == at(2024, 3, 1, 11)
    assert status["hourly"].schedule == "@hourly"


def test_fire_times_slept_through_coalesce_into_one_run() -> None:
    clock = FakeClock(at(2024, 3, 1, 10, 0, 30))
    runs: list[datetime] = []
    scheduler = Scheduler(
        {"every-5": (parse_cron("*/5 * * * *"), recorder(clock, runs))}, clock=clock
    )
    clock.t = at(2024, 3, 1, 10, 17, 30)  # 10:05, 10:10 and 10:15 have passed
    assert scheduler.tick() == ["every-5"]
    settle(scheduler)
    status = scheduler.status()["every-5"]
    assert (status.runs, status.skipped) == (1, 2)
    assert status.last_fired == at(2024, 3, 1, 10, 15)
    assert status.next_due == at(2024, 3, 1, 10, 20)


def test_a_run_still_going_skips_the_next_fire_and_counts_it() -> None:
    clock = FakeClock(at(2024, 3, 1, 9, 59, 30))
    release = threading.Event()
    started: list[datetime] = []

    def long_job() -> None:
        started.append(clock.now())
        assert release.wait(10)

    scheduler = Scheduler({"retrain": (parse_cron("* * * * *"), long_job)}, clock=clock)
    clock.t = at(2024, 3, 1, 10)
    assert scheduler.tick() == ["retrain"]
    clock.t = at(2024, 3, 1, 10, 1)
    assert scheduler.tick() == []
    clock.t = at(2024, 3, 1, 10, 2, 30)
    assert scheduler.tick() == []
    status = scheduler.status()["retrain"]
    assert (status.running, status.runs, status.skipped) == (True, 1, 2)
    assert status.next_due == at(2024, 3, 1, 10, 3)
    release.set()
    settle(scheduler)
    clock.t = at(2024, 3, 1, 10, 3)
    assert scheduler.tick() == ["retrain"]
    settle(scheduler)
    status = scheduler.status()["retrain"]
    assert (status.running, status.runs, status.skipped, status.failures) == (False, 2, 2, 0)
    assert started == [at(2024, 3, 1, 10), at(2024, 3, 1, 10, 3)]


def test_a_raising_job_is_logged_recorded_and_runs_again() -> None:
    clock = FakeClock(at(2024, 3, 1, 9, 59, 30))
    calls: list[datetime] = []

    def flaky() -> None:
        calls.append(clock.now())
        if len(calls) == 1:
            raise ValueError("no candles for BTC/USDT")

    logged: list[str] = []
    logger.enable("trademl")  # trademl logs only once an application sets logging up
    sink = logger.add(lambda message: logged.append(str(message)), level="ERROR", diagnose=False)
    try:
        scheduler = Scheduler({"flaky": (parse_cron("* * * * *"), flaky)}, clock=clock)
        clock.t = at(2024, 3, 1, 10)
        scheduler.tick()
        settle(scheduler)
        failed = scheduler.status()["flaky"]
        clock.t = at(2024, 3, 1, 10, 1)
        scheduler.tick()
        settle(scheduler)
    finally:
        logger.remove(sink)
        logger.disable("trademl")
    assert (failed.runs, failed.failures) == (1, 1)
    assert failed.last_error == "ValueError: no candles for BTC/USDT"
    recovered = scheduler.status()["flaky"]
    assert (recovered.runs, recovered.failures, recovered.last_error) == (2, 1, None)
    assert len(logged) == 1
    assert "scheduled job flaky failed: no candles for BTC/USDT" in logged[0]
    assert "Traceback" in logged[0]


def test_the_scheduler_thread_fires_every_job_at_its_fake_times_and_survives_failures() -> None:
    clock = FakeClock(at(2024, 3, 1, 9, 58, 30), until=at(2024, 3, 1, 10, 20))
    minutely: list[datetime] = []
    five: list[datetime] = []
    failing: list[datetime] = []

    def broken() -> None:
        failing.append(clock.now())
        raise RuntimeError("model store unreachable")

    scheduler = Scheduler(
        {
            "minutely": (parse_cron("* * * * *"), recorder(clock, minutely)),
            "five": (parse_cron("*/5 * * * *"), recorder(clock, five)),
            "broken": (parse_cron("*/2 * * * *"), broken),
        },
        clock=clock,
    )
    clock.settled = lambda: not any(job.running for job in scheduler.status().values())
    try:
        scheduler.start()
        assert clock.reached.wait(20), f"the fake clock stopped at {clock.t}"
        settle(scheduler)
    finally:
        scheduler.stop()
    start = at(2024, 3, 1, 9, 59)
    assert minutely == [start + timedelta(minutes=i) for i in range(22)]  # 9:59 ... 10:20
    assert five == [at(2024, 3, 1, 10) + timedelta(minutes=5 * i) for i in range(5)]
    assert failing == [at(2024, 3, 1, 10) + timedelta(minutes=2 * i) for i in range(11)]
    status = scheduler.status()
    assert {name: (s.runs, s.failures, s.skipped) for name, s in status.items()} == {
        "minutely": (22, 0, 0),
        "five": (5, 0, 0),
        "broken": (11, 11, 0),
    }
    assert status["broken"].last_error == "RuntimeError: model store unreachable"
    assert status["minutely"].next_due == at(2024, 3, 1, 10, 21)


def test_a_real_clock_scheduler_sleeps_toward_its_next_fire_and_stops_at_once() -> None:
    ran: list[datetime] = []
    scheduler = Scheduler(
        {"yearly": (parse_cron("@yearly"), lambda: ran.append(datetime.now(UTC)))}
    )
    assert isinstance(scheduler.clock, SystemClock)
    before = datetime.now(UTC)
    scheduler.start()
    with pytest.raises(RuntimeError, match="already started"):
        scheduler.start()
    time.sleep(0.2)  # the loop is now waiting up to a minute
    began = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - began < 1.0
    status = scheduler.status()["yearly"]
    assert status.next_due == datetime(before.year + 1, 1, 1, tzinfo=UTC)
    assert (status.runs, status.running, ran) == (0, False, [])


def test_scheduler_refuses_bad_jobs() -> None:
    cron = parse_cron("@daily")
    with pytest.raises(ConfigError, match="jobs is empty"):
        Scheduler({})
    with pytest.raises(
        ConfigError, match=r"job 'retrain': expected \(Cron, callable\), got \('@daily'"
    ):
        Scheduler({"retrain": ("@daily", print)})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"job 'retrain': 'train' is not callable"):
        Scheduler({"retrain": (cron, "train")})  # type: ignore[dict-item]


# -- Celery beat -------------------------------------------------------------------------------


def test_beat_schedule_entries_are_read_by_a_real_beat_scheduler() -> None:
    cron = parse_cron("*/15 9-17 * * mon-fri")
    entries = beat_schedule({"retrain-btc": (cron, RETRAIN_TASK, ("btc-1h", 3))})
    app = Celery("trademl", set_as_current=False)
    app.conf.beat_schedule = entries
    assert app.conf.beat_schedule == {
        "retrain-btc": {"task": "trademl.retrain", "schedule": cron.crontab, "args": ("btc-1h", 3)}
    }
    entry = beat.Scheduler(app=app).schedule["retrain-btc"]
    assert (entry.task, entry.args, entry.schedule) == (
        "trademl.retrain",
        ("btc-1h", 3),
        cron.crontab,
    )
    # beat's persistent scheduler pickles its entries
    assert pickle.loads(pickle.dumps(entry.schedule)) == cron.crontab
    app.close()


@pytest.mark.parametrize(
    "text", ["*/15 9-17 * * mon-fri", "0 0 31 * *", "@weekly", "0 9 1-7 * mon"]
)
def test_beat_is_due_agrees_with_next_after(text: str) -> None:
    cron = parse_cron(text)
    app = Celery("trademl", set_as_current=False)
    app.conf.beat_schedule = beat_schedule({"job": (cron, RETRAIN_TASK, ())})
    schedule = beat.Scheduler(app=app).schedule["job"].schedule
    clock = [at(2024, 1, 1)]
    schedule.nowfun = lambda: clock[0]
    checked = 0
    for last_run in (at(2024, 1, 26, 16, 50), at(2024, 2, 29, 23, 59, 59), at(2024, 3, 1, 9, 15)):
        fire = cron.next_after(last_run)
        for now in (
            last_run + timedelta(seconds=30),
            fire - timedelta(seconds=1),
            fire,
            fire + timedelta(hours=1),
        ):
            clock[0] = now
            due, next_s = schedule.is_due(last_run)
            assert due == (fire <= now)
            wait_until = cron.next_after(now) if due else fire
            assert next_s == pytest.approx((wait_until - now).total_seconds(), abs=1e-6)
            checked += 1
    assert checked == 12
    app.close()


@pytest.mark.integration
def test_beat_publishes_the_retrain_task_to_redis_when_due(tmp_path: Path) -> None:
    require_redis()
    import redis

    queue = f"trademl-schedule-test-{uuid.uuid4().hex[:8]}"
    app = make_celery_app(job_settings(tmp_path, REDIS_URL, queue=queue))
    cron = parse_cron("*/15 9-17 * * mon-fri")
    now = [at(2024, 3, 4, 9, 7)]  # a Monday
    cron.crontab.nowfun = lambda: now[0]
    app.conf.beat_schedule = beat_schedule({"retrain-btc": (cron, RETRAIN_TASK, ("btc-1h", 3))})
    client = redis.Redis.from_url(REDIS_URL)
    scheduler = beat.Scheduler(app=app)
    try:
        scheduler.tick()
        assert client.llen(queue) == 0  # 9:15 has not come
        now[0] = at(2024, 3, 4, 9, 15, 1)
        assert scheduler.tick() == 0  # sent one
        messages = client.lrange(queue, 0, -1)
        assert len(messages) == 1
        message = json.loads(messages[0])
        assert message["headers"]["task"] == "trademl.retrain"
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        assert (args, kwargs) == (["btc-1h", 3], {})
        assert scheduler.schedule["retrain-btc"].last_run_at == now[0]
    finally:
        scheduler.close()
        client.delete(queue, f"_kombu.binding.{queue}")
        client.close()
        app.close()


def test_beat_schedule_refuses_bad_entries() -> None:
    cron = parse_cron("@daily")
    with pytest.raises(ConfigError, match=r"beat_schedule 'a': expected a Cron, got '@daily'"):
        beat_schedule({"a": ("@daily", RETRAIN_TASK, ())})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"beat_schedule 'a': task must be a task name, got ''"):
        beat_schedule({"a": (cron, "", ())})
    with pytest.raises(ConfigError, match=r"beat_schedule 'a': args must be a tuple, got \['x'\]"):
        beat_schedule({"a": (cron, RETRAIN_TASK, ["x"])})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"beat_schedule 'a': args .* are not JSON"):
        beat_schedule({"a": (cron, RETRAIN_TASK, (object(),))})


def test_next_after_stays_in_utc_when_beat_binds_the_crontab_to_a_local_time_app() -> None:
    cron = parse_cron("0 9 1-7 * mon")
    app = Celery("trademl", set_as_current=False)
    app.conf.timezone = "Asia/Tokyo"
    app.conf.beat_schedule = beat_schedule({"job": (cron, RETRAIN_TASK, ())})
    bound = beat.Scheduler(app=app).schedule["job"].schedule
    assert bound is cron.crontab and str(bound.tz) == "Asia/Tokyo"  # beat runs it in Tokyo time
    assert cron.next_after(at(2024, 1, 31)) == at(2024, 2, 5, 9)
    app.close()
