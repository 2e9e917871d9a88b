"""What WebSocket streams share: one store poller per series, whatever the number of sockets
on it, the prediction messages rendered once per bar, and the connection bounds."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from loguru import logger

from trademl.data.stores import SeriesInfo
from trademl.errors import LimitExceededError, TradeMLError
from trademl.serving.errors import trademl_error_body
from trademl.serving.host import Served
from trademl.serving.predict import PredictionService
from trademl.serving.schemas import PredictResponse
from trademl.serving.store import StoreReader


class TooManyStreamsError(LimitExceededError):
    """A WebSocket beyond the server's or the client's bound; ``code`` is its close code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class SeriesFeed:
    """The latest state of one stored series, polled by one task for all its sockets."""

    symbol: str
    timeframe: str
    subscribers: int = 0
    polling: bool = False  # a poller runs, in the task group of one of the sockets
    info: SeriesInfo | None = None
    error: dict[str, Any] | None = None  # the last poll's error body, while it lasts
    polls: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)
    _render_lock: anyio.Lock = field(default_factory=anyio.Lock)
    _messages: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def message(self, predictions: PredictionService, served: Served, horizon: str) -> str:
        """The ``prediction`` message (JSON text) of the current bar, rendered once for every
        socket that asks for the same model version and horizon."""
        info = self.info
        if info is None:
            raise RuntimeError("no bar to render yet")
        key = (served.name, served.version, served.alias, info.last, info.rows, horizon)
        async with self._render_lock:  # the first socket computes; the others read its text
            text = self._messages.get(key)
            if text is None:
                horizons = predictions.horizons(served, horizon)
                prediction = await anyio.to_thread.run_sync(predictions.latest_at, served, info)
                body = PredictResponse.model_validate(predictions.body(prediction, horizons))
                text = json.dumps({"type": "prediction", **body.model_dump(mode="json")})
                # Only the current bar's messages are kept.
                self._messages = {k: v for k, v in self._messages.items() if k[3:5] == key[3:5]}
                self._messages[key] = text
        return text


class StreamHub:
    """The server's WebSocket streams: bounds in total and per client, and the series feeds.

    Parameters
    ----------
    store
        The store the feeds poll.
    poll_s
        Seconds between two looks at a series' last bar (one look per series, not per socket).
    max_connections, max_per_client
        The bounds on open streams (per process, and per client address).
    """

    def __init__(
        self, store: StoreReader, *, poll_s: float, max_connections: int, max_per_client: int
    ) -> None:
        self.store = store
        self.poll_s = poll_s
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.feeds: dict[tuple[str, str], SeriesFeed] = {}
        self.clients: Counter[str] = Counter()

    @property
    def connections(self) -> int:
        """Open streams."""
        return sum(self.clients.values())

    def acquire(self, client: str) -> None:
        """Take one of the bounded stream slots for ``client`` (raise when none is left)."""
        # No await between the checks and the count: on the event loop they are one step.
        if self.connections >= self.max_connections:
            raise TooManyStreamsError(
                f"the server has {self.max_connections} open streams (ws_max_connections); "
                "retry later",
                1013,
            )
        if self.clients[client] >= self.max_per_client:
            raise TooManyStreamsError(
                f"this client has {self.max_per_client} open streams (ws_max_per_client); close "
                "one first",
                1008,
            )
        self.clients[client] += 1

    def release(self, client: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        self.clients[client] -= 1
        if self.clients[client] <= 0:
            del self.clients[client]

    @contextlib.asynccontextmanager
    async def subscribe(self, symbol: str, timeframe: str) -> AsyncIterator[SeriesFeed]:
        """The feed of a series, shared by every socket on it while one is open."""
        key = (symbol, timeframe)
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = SeriesFeed(symbol, timeframe)
        feed.subscribers += 1
        try:
            yield feed
        finally:
            feed.subscribers -= 1
            if feed.subscribers <= 0 and self.feeds.get(key) is feed:
                del self.feeds[key]

    def ensure_poller(self, feed: SeriesFeed, group: TaskGroup) -> None:
        """Start the feed's poller in ``group`` (a socket's own) unless one runs: when that
        socket closes, its poller stops and wakes the others, and the next one to wake starts
        a new one. No task outlives the sockets, whichever app lifespan runs."""
        if not feed.polling:
            feed.polling = True
            group.start_soon(self._poll, feed)

    async def _poll(self, feed: SeriesFeed) -> None:
        try:
            while True:
                try:
                    info = await anyio.to_thread.run_sync(
                        self.store.info, feed.symbol, feed.timeframe
                    )
                    error = None
                except TradeMLError as problem:
                    info, (_, error) = feed.info, trademl_error_body(problem, None)
                    logger.warning("stream {} {}: {}", feed.symbol, feed.timeframe, problem)
                feed.polls += 1
                state = (info.last, info.rows) if info else None
                known = (feed.info.last, feed.info.rows) if feed.info else None
                if state != known or error != feed.error or feed.polls == 1:
                    feed.info, feed.error = info, error
                    feed._notify()
                await anyio.sleep(self.poll_s)
        finally:
            feed.polling = False
            feed._notify()  # the other sockets wake, and one of them takes the polling over
