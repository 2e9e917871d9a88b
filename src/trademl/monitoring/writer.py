"""Group commit for the prediction log: many requests, one transaction, each request answered
only once its rows are committed.

A server cannot afford a database transaction per prediction, and must not answer before the
prediction is logged (a crash would lose it). :class:`LogWriter` queues each request's rows;
one thread commits whatever has queued in one transaction and then completes every waiting
request's future, so concurrent requests share commits and a request never returns before its
rows are durable.

>>> from trademl.monitoring.predictions import PredictionLog
>>> with LogWriter(PredictionLog("sqlite://")) as writer:
...     writer.append([]).result()
0
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Future

from loguru import logger

from trademl.errors import ConfigError, StoreError
from trademl.monitoring.predictions import LoggedPrediction, PredictionLog, PreparedRows

# Rows of more requests than this wait for the next commit: a bound on one transaction.
MAX_BATCH = 512


Batch = list[tuple[str, PreparedRows]]


class LogWriter:
    """Appends to a :class:`PredictionLog` from one thread, committing queued rows together.

    Parameters
    ----------
    log : PredictionLog
        Where rows go; closed with the writer.
    max_batch : int
        The most requests one transaction holds.
    """

    def __init__(self, log: PredictionLog, *, max_batch: int = MAX_BATCH) -> None:
        self.log = log
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[Batch, Waiter] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, predictions: Iterable[LoggedPrediction]) -> Future[int]:
        """Queue ``predictions``; the future completes with the row count once committed, or
        fails with the error that stopped the commit (nothing of that request is written)."""
        future: Future[int] = Future()
        try:
            batch = [(p.request_id, self.log.prepare([p])) for p in predictions]
        except ConfigError as error:
            future.set_exception(error)
            return future
        self._put(batch, future)
        return future

    def append_prepared(self, request_id: str, rows: PreparedRows) -> Future[int]:
        """Queue an answer's prepared rows under ``request_id`` (see :meth:`append`)."""
        future: Future[int] = Future()
        self._put([(request_id, rows)], future)
        return future

    async def append_async(self, predictions: Iterable[LoggedPrediction]) -> int:
        """:meth:`append` awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.append(predictions))

    async def append_prepared_async(self, request_id: str, rows: PreparedRows) -> int:
        """:meth:`append_prepared` awaited on the event loop; the writer wakes the loop once
        per commit for all the requests it answered, not once each."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self._put([(request_id, rows)], waiter)
        return await waiter

    def close(self) -> None:
        """Commit everything queued, stop the thread and close the log."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self.log.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, batch: Batch, waiter: Waiter) -> None:
        if self._closed:
            _settle([(waiter, StoreError("prediction log: the writer is closed"))])
            return
        self._queue.put((batch, waiter))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            items = [first]
            while len(items) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                items.append(item)
            _settle(self._commit(items))

    def _commit(
        self, items: list[tuple[Batch, Waiter]]
    ) -> list[tuple[Waiter, int | BaseException]]:
        try:
            self.log.append_prepared([pair for batch, _ in items for pair in batch])
        except Exception as error:
            if len(items) > 1:
                # One bad request must not fail the others: commit them one by one.
                return [outcome for item in items for outcome in self._commit([item])]
            logger.warning("prediction log: a commit failed: {}", error)
            return [(items[0][1], error)]
        return [(waiter, sum(len(rows) for _, rows in batch)) for batch, waiter in items]


Waiter = Future[int] | asyncio.Future[int]


def _settle(outcomes: list[tuple[Waiter, int | BaseException]]) -> None:
    """Complete every waiter: thread futures at once, event-loop futures in one call per loop."""
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]
    ] = {}
    for waiter, outcome in outcomes:
        if isinstance(waiter, asyncio.Future):
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, outcome))
        elif isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
    for loop, waiting in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_on_loop, waiting)
        except RuntimeError:  # the loop is closed: nobody waits any more
            continue


def _settle_on_loop(waiting: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    for waiter, outcome in waiting:
        if waiter.done():  # cancelled (the client went away): its rows are committed anyway
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
