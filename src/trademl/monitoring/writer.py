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

from trademl.errors import StoreError
from trademl.monitoring.predictions import LoggedPrediction, PredictionLog

# Rows of more requests than this wait for the next commit: a bound on one transaction.
MAX_BATCH = 512


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
        self._queue: queue.Queue[tuple[list[LoggedPrediction], Future[int]] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, predictions: Iterable[LoggedPrediction]) -> Future[int]:
        """Queue ``predictions``; the future completes with the row count once committed, or
        fails with the error that stopped the commit (nothing of that batch is written)."""
        future: Future[int] = Future()
        if self._closed:
            future.set_exception(StoreError("prediction log: the writer is closed"))
            return future
        self._queue.put((list(predictions), future))
        return future

    async def append_async(self, predictions: Iterable[LoggedPrediction]) -> int:
        """:meth:`append` awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.append(predictions))

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

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[tuple[list[LoggedPrediction], Future[int]]]) -> None:
        rows = [row for predictions, _ in batch for row in predictions]
        try:
            self.log.append(rows)
        except Exception as error:
            if len(batch) > 1:
                # One bad request must not fail the others: commit them one by one.
                for item in batch:
                    self._commit([item])
                return
            logger.warning("prediction log: a commit failed: {}", error)
            batch[0][1].set_exception(error)
            return
        for predictions, future in batch:
            future.set_result(len(predictions))
