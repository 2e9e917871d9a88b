"""Group commit for the prediction log: many requests, one transaction, each request answered
only once its rows are committed.

A server cannot afford a database transaction per prediction, and must not answer before the
prediction is logged (a crash would lose it). :class:`LogWriter` gathers the requests' rows
into a batch; one thread commits a batch in one transaction while the next one fills, then
completes the batch's waiters, so concurrent requests share commits and a request never
returns before its rows are committed.

What logging costs a request is kept small, because a polled server answers a cached bar in a
few hundred microseconds of its one event-loop thread:

* a request adds a reference to rows prepared once (its id and the answer's
  :class:`~trademl.monitoring.predictions.PreparedRows`); the writer thread expands them;
* while requests keep coming the writer commits on a clock, every ``window_s`` (2 ms), what
  came meanwhile: no request pays a thread wake-up, and a commit holds many requests (the
  commit, not the row, is what costs: about 17 system calls with SQLite). A request after a
  quiet spell wakes the writer and is committed at once;
* the requests of a batch waiting on one event loop await one shared future, completed by one
  cross-thread call per commit;
* with SQLite a commit is a single statement, one call into the database, so the writer
  thread takes the interpreter lock back a few times per commit, not once per row
  (:mod:`trademl.monitoring.appender`).

A wait costs a server even so: its requests' objects live across the wait (more garbage
collection) and its answers go out in bursts. ``bench/serve_bench.py`` measures what is left.

Durability: with SQLite the log runs in WAL mode with ``synchronous=NORMAL``
(:func:`trademl.databases.open_engine`): a commit is in the WAL file when the request is
answered, so a crash or kill of the server loses nothing, but the WAL is synced to disk only at
checkpoints, so an operating-system crash or a power loss can lose the last commits before one.
``synchronous=FULL`` would sync on every commit, at a cost a polled server cannot pay;
PostgreSQL commits are as durable as the server's own settings make them.

>>> from trademl.monitoring.predictions import PredictionLog
>>> with LogWriter(PredictionLog("sqlite://")) as writer:
...     writer.append([]).result()
0
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from trademl.errors import ConfigError, StoreError, TradeMLError
from trademl.monitoring.predictions import (
    LoggedPrediction,
    PredictionLog,
    PreparedRows,
    check_request_id,
)
from trademl.redact import redact

# Requests one transaction holds at most; more wait for the next commit.
MAX_BATCH = 512
# While busy, one commit every window: longer means fewer commits but longer waits (measured
# on the polled path: 0.5 ms, 1 ms and 4 ms all cost more throughput than 2 ms).
WINDOW_S = 0.002
# After this long without a request the writer thread sleeps until one wakes it.
IDLE_AFTER_S = 0.05

Entries = list[tuple[str, PreparedRows]]


@dataclass(frozen=True)
class _Outcome:
    """How a commit went: for all its requests (``error``), or for some alone (``refused``)."""

    error: tuple[type[TradeMLError], str] | None = None
    refused: dict[int, tuple[type[TradeMLError], str]] = field(default_factory=dict)

    def error_of(self, ticket: int) -> TradeMLError | None:
        """The error of request ``ticket`` of the batch (a new one each: a shared exception
        raised by many tasks would gather all their tracebacks)."""
        failure = self.error or self.refused.get(ticket)
        return None if failure is None else failure[0](failure[1])


class _SharedCommit(asyncio.Future[_Outcome]):
    """One future for every request of a batch on one event loop. It refuses to be cancelled:
    a task awaiting it that is cancelled (a client gone) raises CancelledError once the commit
    is done, without cancelling the others."""

    def cancel(self, msg: Any | None = None) -> bool:
        return False


class _Batch:
    """The requests of one commit: their entries, where each request's end, their waiters."""

    __slots__ = ("ends", "entries", "futures", "loops")

    def __init__(self) -> None:
        self.entries: Entries = []
        self.ends: list[int] = []  # request (ticket) i owns entries[ends[i-1]:ends[i]]
        self.loops: dict[asyncio.AbstractEventLoop, _SharedCommit] = {}
        self.futures: list[tuple[int, Future[int], int]] = []  # ticket, future, rows

    def add(self, entries: Entries) -> int:
        self.entries += entries
        self.ends.append(len(self.entries))
        return len(self.ends) - 1

    def requests(self) -> list[Entries]:
        starts = [0, *self.ends[:-1]]
        return [self.entries[a:b] for a, b in zip(starts, self.ends, strict=True)]


class LogWriter:
    """Appends to a :class:`PredictionLog` from one thread, committing queued rows together.

    Parameters
    ----------
    log : PredictionLog
        Where rows go; closed with the writer.
    max_batch : int
        The most requests one transaction holds.
    window_s : float
        While requests keep coming, the time between two commits (the longest a request
        waits for its commit to begin); 0 commits each batch as soon as the last is done.
    """

    def __init__(
        self, log: PredictionLog, *, max_batch: int = MAX_BATCH, window_s: float = WINDOW_S
    ) -> None:
        self.log = log
        self.max_batch = max_batch
        self.window_s = window_s
        self._batches: deque[_Batch] = deque()  # not yet taken by the writer thread
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self._idle = False  # the writer thread sleeps until a request wakes it
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, predictions: Iterable[LoggedPrediction]) -> Future[int]:
        """Queue ``predictions``; the future completes with the row count once committed, or
        fails with the error that stopped the commit (nothing of that request is written)."""
        future: Future[int] = Future()
        try:
            entries = [(p.request_id, self.log.prepare([p])) for p in predictions]
            if not entries:
                future.set_result(0)
                return future
            with self._ready:
                batch, ticket = self._enqueue(entries)
                batch.futures.append((ticket, future, sum(len(rows) for _, rows in entries)))
        except TradeMLError as error:
            future.set_exception(error)
        return future

    def append_prepared(self, request_id: str, rows: PreparedRows) -> Future[int]:
        """Queue an answer's prepared rows under ``request_id`` (see :meth:`append`)."""
        future: Future[int] = Future()
        try:
            check_request_id(request_id)
            with self._ready:
                batch, ticket = self._enqueue([(request_id, rows)])
                batch.futures.append((ticket, future, len(rows)))
        except TradeMLError as error:
            future.set_exception(error)
        return future

    async def append_async(self, predictions: Iterable[LoggedPrediction]) -> int:
        """:meth:`append` awaited on the event loop, without blocking it."""
        entries = [(p.request_id, self.log.prepare([p])) for p in predictions]
        if not entries:
            return 0
        return await self._await(entries)

    async def append_prepared_async(self, request_id: str, rows: PreparedRows) -> int:
        """:meth:`append_prepared` awaited on the event loop: the requests of a commit share
        one future, woken by one call from the writer thread."""
        check_request_id(request_id)
        return await self._await([(request_id, rows)])

    async def _await(self, entries: Entries) -> int:
        loop = asyncio.get_running_loop()
        with self._ready:
            batch, ticket = self._enqueue(entries)
            waiter = batch.loops.get(loop)
            if waiter is None:
                waiter = batch.loops[loop] = _SharedCommit(loop=loop)
        error = (await waiter).error_of(ticket)
        if error is not None:
            raise error
        return sum(len(rows) for _, rows in entries)

    def close(self) -> None:
        """Commit everything queued, stop the thread and close the log."""
        with self._ready:
            if self._closed:
                return
            self._closed = True
            self._ready.notify()
        self._thread.join()
        self.log.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _enqueue(self, entries: Entries) -> tuple[_Batch, int]:
        """Add a request to the batch filling now (the caller holds ``_ready``)."""
        if self._closed:
            raise StoreError("prediction log: the writer is closed")
        if self._batches and len(self._batches[-1].ends) < self.max_batch:
            batch = self._batches[-1]
        else:
            batch = _Batch()
            self._batches.append(batch)
            if self._idle:
                self._ready.notify()
        return batch, batch.add(entries)

    def _run(self) -> None:
        active = 0.0  # when the last batch was committed
        while True:
            with self._ready:
                if not self._batches:
                    if self._closed:
                        return  # everything committed
                    if self.window_s <= 0 or time.monotonic() - active > IDLE_AFTER_S:
                        self._idle = True
                        self._ready.wait()  # until a request comes: it is committed at once
                        self._idle = False
                batch = self._batches.popleft() if self._batches else None
                more = len(self._batches) > 0
            if batch is not None:
                self._settle(batch, self._commit(batch))
                active = time.monotonic()
            if not more and not self._closed and self.window_s > 0:
                time.sleep(self.window_s)  # busy: what comes meanwhile is the next batch

    def _commit(self, batch: _Batch) -> _Outcome:
        try:
            self.log.append_prepared(batch.entries)
        except ConfigError as error:
            if len(batch.ends) == 1:
                logger.warning("{}", error)
                return _Outcome(refused={0: (ConfigError, str(error))})
            # A value the database refused: commit the requests one by one, so it fails alone.
            refused: dict[int, tuple[type[TradeMLError], str]] = {}
            for ticket, entries in enumerate(batch.requests()):
                try:
                    self.log.append_prepared(entries)
                except TradeMLError as alone:
                    kind = StoreError if isinstance(alone, StoreError) else ConfigError
                    refused[ticket] = (kind, str(alone))
            return _Outcome(refused=refused)
        except Exception as error:
            known = isinstance(error, StoreError)
            message = str(error) if known else redact(f"prediction log: {error!r}")
            if not self._failing:
                self._failing = True
                logger.error("{}; predictions are refused until the log is written again", message)
            return _Outcome(error=(StoreError, message))
        if self._failing:
            self._failing = False
            logger.info("prediction log: written again")
        return _Outcome()

    @staticmethod
    def _settle(batch: _Batch, outcome: _Outcome) -> None:
        for loop, waiter in batch.loops.items():
            try:
                loop.call_soon_threadsafe(_resolve, waiter, outcome)
            except RuntimeError:  # the loop is closed: nobody waits any more
                continue
        for ticket, future, rows in batch.futures:
            error = outcome.error_of(ticket)
            if error is None:
                future.set_result(rows)
            else:
                future.set_exception(error)


def _resolve(waiter: _SharedCommit, outcome: _Outcome) -> None:
    if not waiter.done():
        waiter.set_result(outcome)
