"""``trademl worker``: a Celery worker running trademl jobs (train, backtest...)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from trademl.config import get_settings
from trademl.errors import ConfigError


class Pool(StrEnum):
    """Celery execution pools offered by ``trademl worker``."""

    prefork = "prefork"
    solo = "solo"


def worker(
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Jobs run at once (processes).")
    ] = 1,
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues", "-Q", help="Comma-separated queues (default TRADEML_CELERY_QUEUE)."
        ),
    ] = None,
    pool: Annotated[
        Pool,
        typer.Option(
            "--pool",
            help="prefork: each job in a child process, which a crash or a kill cannot take "
            "the worker down with; solo: in the worker process (debugging).",
        ),
    ] = Pool.prefork,
    beat: Annotated[
        list[str] | None,
        typer.Option(
            "--beat",
            help="Also run Celery beat with this registered model's checks and scheduled "
            "retrains (its monitoring.retraining.schedule); repeatable.",
        ),
    ] = None,
) -> None:
    """Run jobs from the Celery broker at TRADEML_CELERY_BROKER_URL until stopped (Ctrl-C)."""
    settings = get_settings()
    if not settings.celery_broker_url:
        raise ConfigError(
            "trademl worker needs a broker: set TRADEML_CELERY_BROKER_URL "
            "(redis://host:6379/0 or amqp://user:password@host:5672//)"
        )
    from trademl.jobs.celery_queue import run_worker

    names = [name.strip() for name in queues.split(",") if name.strip()] if queues else None
    entries: dict[str, dict[str, object]] | None = None
    if beat:
        from trademl.tracking.policy import celery_beat

        entries = {}
        for model in beat:
            entries.update(celery_beat(model, settings))
    run_worker(settings, concurrency=concurrency, queues=names, pool=pool.value, beat=entries)
