"""Background jobs behind one interface: an in-process pool by default, Celery workers on
Redis or RabbitMQ when ``TRADEML_CELERY_BROKER_URL`` is set; job state in one SQL table.

>>> from trademl.jobs import open_queue
>>> queue = open_queue()  # doctest: +SKIP
>>> job_id = queue.submit("backtest", {"config": "backtest.yaml"})  # doctest: +SKIP
>>> queue.get(job_id).state  # doctest: +SKIP
<JobState.RUNNING: 'running'>
"""

from trademl.jobs.backends import open_queue
from trademl.jobs.info import JobCancelled, JobError, JobInfo, JobState
from trademl.jobs.queue import InProcessQueue, JobQueue
from trademl.jobs.store import JobStore
from trademl.jobs.tasks import JOB_KINDS, JobTask, Report, task

__all__ = [
    "JOB_KINDS",
    "InProcessQueue",
    "JobCancelled",
    "JobError",
    "JobInfo",
    "JobQueue",
    "JobState",
    "JobStore",
    "JobTask",
    "Report",
    "open_queue",
    "task",
]
