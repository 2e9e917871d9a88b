"""Which job queue the settings describe: Celery workers on a broker, or threads in this process."""

from __future__ import annotations

from trademl.config import Settings, get_settings
from trademl.jobs.queue import InProcessQueue, JobQueue, SubmitLimits
from trademl.jobs.runner import RunPolicy
from trademl.jobs.store import JobStore


def open_queue(settings: Settings | None = None) -> JobQueue:
    """The job queue the settings describe: Celery when ``TRADEML_CELERY_BROKER_URL`` is set,
    else the in-process pool (``TRADEML_JOBS_WORKERS`` threads); the job store at
    ``TRADEML_JOBS_URL`` (default SQLite under home) in both cases."""
    settings = settings or get_settings()
    policy = RunPolicy(settings.jobs_heartbeat_s, settings.jobs_max_attempts, settings.home)
    queue: JobQueue
    if settings.celery_broker_url:
        from trademl.jobs.celery_queue import CeleryQueue, make_celery_app

        app = make_celery_app(settings)  # checks the URL before the store is touched
        queue = CeleryQueue(JobStore(settings.jobs_store_url), policy, app, settings.celery_queue)
    else:
        queue = InProcessQueue(JobStore(settings.jobs_store_url), policy, settings.jobs_workers)
    queue.limits = SubmitLimits(
        settings.jobs_max_queued, settings.jobs_max_payload_bytes, settings.backtest_max_grid
    )
    return queue
