"""The retraining policy: which trigger starts a cycle, and the loop that checks.

Three triggers, each configured in the champion's ``monitoring.retraining`` section:

* ``scheduled`` — a cron string; the in-process :class:`~trademl.monitoring.schedule.Scheduler`
  runs it (``trademl watch``), or Celery beat at scale (:func:`celery_beat`);
* ``performance`` — an alarm in the champion's monitoring report (the CUSUM on its loss against
  the baseline, or the coverage monitor); with ``rollback_bars``, an alarm that soon after a
  cycle's promotion gives the alias back instead;
* ``drift`` — features drifted (Benjamini–Hochberg across features), when ``on_drift``.

After a cycle, alarms count only on bars after it: the detectors restart on fresh evidence, so
one alarm does not start a cycle at every check.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from loguru import logger

from trademl.config import Settings, get_settings
from trademl.monitoring.assess import MonitoringError
from trademl.monitoring.schedule import Cron, Scheduler, beat_schedule, parse_cron
from trademl.tracking.client import connect
from trademl.tracking.retraining import LAST_CYCLE, Cycle, retrain, rollback_if_alarmed
from trademl.tracking.watch import monitor, monitoring_section

CHECK_TASK = "trademl.watch"
RETRAIN_TASK = "trademl.retrain"
DEFAULT_CHECK = "5 * * * *"  # a few minutes past each hour: after the hourly bar has landed


def last_cycle(name: str, settings: Settings) -> pd.Timestamp | None:
    """The store's last bar when the model's latest cycle ran (None before any)."""
    model = connect(settings).get_registered_model(name)
    stamp = (model.tags or {}).get(LAST_CYCLE)
    return pd.Timestamp(stamp) if stamp else None


def check(
    name: str, *, until: pd.Timestamp | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Monitor the champion once (as of ``until``, default now) and act as its policy says.

    Returns
    -------
    dict
        ``action`` (``none``, ``waiting``, ``rolled_back``, ``promoted`` or ``rejected``), the
        ``trigger`` when a cycle ran, the ``reason``, and the cycle (``cycle``) or the report's
        ``alarms``.
    """
    settings = settings or get_settings()
    try:
        report, info, _ = monitor(
            name, settings=settings, since=last_cycle(name, settings), until=until
        )
    except MonitoringError as error:
        return {"action": "waiting", "reason": str(error), "alarms": [], "drifted": []}
    policy = monitoring_section(info, settings).retraining
    cycle: Cycle | None = None
    if report.alarms and policy.rollback_bars is not None:
        cycle = rollback_if_alarmed(name, report, policy.rollback_bars, settings)
    if cycle is None and report.alarms and policy.on_alarm:
        cycle = retrain(
            name, trigger="performance", assessment=report, until=until, settings=settings
        )
    if cycle is None and report.drifted and policy.on_drift:
        cycle = retrain(name, trigger="drift", assessment=report, until=until, settings=settings)
    if cycle is None:
        return {
            "action": "none",
            "reason": "alarms fired but on_alarm is off" if report.alarms else "no trigger fired",
            "alarms": report.alarms,
            "drifted": report.drifted,
        }
    logger.info("{}: {} cycle {}: {}", name, cycle.trigger, cycle.decision, cycle.reason)
    return {
        "action": cycle.decision,
        "at": report.end.isoformat(),
        "trigger": cycle.trigger,
        "reason": cycle.reason,
        "cycle": cycle.as_dict(),
    }


def scheduled_retrain(name: str, *, settings: Settings | None = None) -> dict[str, Any]:
    """The ``scheduled`` trigger's cycle."""
    cycle = retrain(name, trigger="scheduled", settings=settings)
    return {"action": cycle.decision, "trigger": "scheduled", "cycle": cycle.as_dict()}


def schedules(
    name: str, settings: Settings, check_every: str = DEFAULT_CHECK
) -> dict[str, tuple[Cron, str]]:
    """The model's cron jobs: ``check`` (monitor and act) and, when configured, ``retrain``."""
    from trademl.tracking.pipeline import load_pipeline

    _, info = load_pipeline(name, "champion", settings)
    policy = monitoring_section(info, settings).retraining
    jobs = {"check": (parse_cron(check_every, setting="--check"), CHECK_TASK)}
    if policy.schedule:
        jobs["retrain"] = (parse_cron(policy.schedule, setting="retraining.schedule"), RETRAIN_TASK)
    return jobs


def scheduler(name: str, settings: Settings, check_every: str = DEFAULT_CHECK) -> Scheduler:
    """The in-process scheduler of one model's checks and scheduled retrains (not started)."""
    run = {
        CHECK_TASK: lambda: check(name, settings=settings),
        RETRAIN_TASK: lambda: scheduled_retrain(name, settings=settings),
    }
    return Scheduler(
        {
            job: (cron, run[task])
            for job, (cron, task) in schedules(name, settings, check_every).items()
        }
    )


def celery_beat(
    name: str, settings: Settings, check_every: str = DEFAULT_CHECK
) -> dict[str, dict[str, object]]:
    """The same schedule as Celery beat entries, for running it at scale."""
    return beat_schedule(
        {
            f"{name}:{job}": (cron, task, (name,))
            for job, (cron, task) in schedules(name, settings, check_every).items()
        }
    )
