"""Job queues for the shared job suite: the in-process pool, and Celery on this machine's real
Redis and RabbitMQ with a real ``trademl worker`` subprocess (one per broker per session)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.jobs import (
    RABBITMQ_URL,
    REDIS_URL,
    SESSION_QUEUE,
    Worker,
    job_settings,
    require_redis,
    service_missing,
)

from trademl.jobs import JobQueue, open_queue


def _check_rabbitmq() -> None:
    from kombu import Connection

    try:
        with Connection(RABBITMQ_URL, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        service_missing("RabbitMQ", error)


def _clean_redis(queues: list[str]) -> None:
    """Drop this session's queues and their unacknowledged messages from the Redis db."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*queues)
    for name in queues:  # kombu's exchange bindings of the queue
        for key in client.scan_iter(f"_kombu.binding*.{name}"):
            client.delete(key)
    for tag, entry in client.hgetall("unacked").items():
        try:
            routing_key = json.loads(entry)[2]
        except (ValueError, IndexError):
            continue
        if routing_key in queues:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    client.close()


def _clean_rabbitmq(queues: list[str]) -> None:
    from kombu import Connection

    with Connection(RABBITMQ_URL, connect_timeout=2) as connection:
        channel = connection.default_channel
        for name in queues:
            channel.queue_delete(name)


def _broker_worker(
    broker: str, url: str, check: Callable[[], None], clean: Callable[[], None]
) -> Any:
    """The session fixture ``<broker>_worker``: once ``check`` finds the broker at ``url``, a
    ``trademl worker`` on it (concurrency 1) shared by the session, stopped at its end, when
    ``clean`` drops the session's queues."""

    def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
        check()
        started = Worker.start(job_settings(tmp_path_factory.mktemp(f"{broker}-home"), url))
        yield started
        started.stop()
        clean()

    worker.__doc__ = f"A ``trademl worker`` on {broker}, shared by the session (concurrency 1)."
    return pytest.fixture(worker, scope="session", name=f"{broker}_worker")


redis_worker = _broker_worker(
    "redis",
    REDIS_URL,
    require_redis,
    lambda: _clean_redis([SESSION_QUEUE, f"{SESSION_QUEUE}-kill"]),
)
rabbitmq_worker = _broker_worker(
    "rabbitmq", RABBITMQ_URL, _check_rabbitmq, lambda: _clean_rabbitmq([SESSION_QUEUE])
)


BACKENDS = ["inprocess", "redis"]


@pytest.fixture(params=BACKENDS)
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobQueue]:
    """A job queue of each backend; Celery ones share their session's worker and store."""
    if request.param == "inprocess":
        settings = job_settings(tmp_path / "home")
    else:
        settings = request.getfixturevalue(f"{request.param}_worker").settings
    opened = open_queue(settings)
    yield opened
    opened.close()
