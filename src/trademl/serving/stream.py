"""``WS /ws/{symbol}?timeframe=``: a prediction message each time a new bar reaches the store
for that series, and a heartbeat in between.

Messages are JSON objects with a ``type``: ``prediction`` (the fields of ``POST
/api/v1/predict``; the current one is sent on connect, then one per new bar), ``heartbeat``
(``time`` and the ``last_bar`` seen) and ``error`` (a prediction failed for a bar). An unknown
symbol or an invalid timeframe or horizon closes the socket with code 1008 and the reason.

The API key (when ``api_auth_all`` asks for it) travels in the ``X-API-Key`` header or, from a
browser, as the subprotocol token ``apikey.<KEY>`` beside ``trademl``; the server then answers
the ``trademl`` subprotocol. The dashboard's signed-in session cookie, from a page of this
server, stands for the key. A key in the query string is refused: URLs end up in access logs
and proxies. Streams are bounded per process and per client (``ws_max_connections``, 1013;
``ws_max_per_client``, 1008), and all sockets of a series share one store poller.

Every prediction message is in the prediction log (source ``stream``) before it is sent, and
logged once however many sockets it goes to: one commit per model version, series, bar and
horizons (request id ``stream-<uuid>``), which every socket sending it awaits. A prediction
that cannot be logged is not sent: the socket gets an ``error`` message instead, and the next
wake-up tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import weakref
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from trademl.data.stores import SeriesInfo
from trademl.errors import TradeMLError
from trademl.monitoring.journal import Journal
from trademl.monitoring.writer import LogWriter
from trademl.serving.deps import API_KEY_HEADER, ServingState, check_api_key
from trademl.serving.errors import ApiError, trademl_error_body
from trademl.serving.feeds import SeriesFeed, TooManyStreamsError
from trademl.serving.host import Served
from trademl.serving.predict import logged
from trademl.serving.ui.session import signed_in

router = APIRouter()

POLICY_VIOLATION = 1008
SUBPROTOCOL = "trademl"
KEY_PROTOCOL_PREFIX = "apikey."
_REASON_BYTES = 120  # a close reason must fit in a control frame (123 bytes)


class _GoneError(Exception):
    """The client went away while we were sending."""


def _reason(text: str) -> str:
    return text.encode()[:_REASON_BYTES].decode(errors="ignore")


async def _send(websocket: WebSocket, message: dict[str, Any] | str) -> None:
    try:
        if isinstance(message, str):
            await websocket.send_text(message)
        else:
            await websocket.send_json(message)
    except (WebSocketDisconnect, RuntimeError, OSError) as error:
        raise _GoneError from error


def _offered(websocket: WebSocket) -> list[str]:
    header = websocket.headers.get("sec-websocket-protocol", "")
    return [part.strip() for part in header.split(",") if part.strip()]


def _given_key(websocket: WebSocket, offered: list[str]) -> str | None:
    """The key of the header or of the ``apikey.`` subprotocol token."""
    if "api_key" in websocket.query_params or "apikey" in websocket.query_params:
        raise ApiError(
            401,
            f"an API key in the query string is refused (URLs are logged): send it in the "
            f"{API_KEY_HEADER} header or as the subprotocol {KEY_PROTOCOL_PREFIX}<key>",
        )
    tokens = [p[len(KEY_PROTOCOL_PREFIX) :] for p in offered if p.startswith(KEY_PROTOCOL_PREFIX)]
    return websocket.headers.get(API_KEY_HEADER.lower()) or (tokens[0] if tokens else None)


def _chosen_protocol(offered: list[str]) -> str | None:
    # A browser fails the handshake unless one offered subprotocol is echoed: ours, never the
    # key's token (unless it is all that was offered).
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return next((p for p in offered if p.startswith(KEY_PROTOCOL_PREFIX)), None)


def _client(websocket: WebSocket) -> str:
    return websocket.client.host if websocket.client else "unknown"


# The commits of streamed predictions, per log writer (one per app), by what was predicted.
_COMMITS: weakref.WeakKeyDictionary[
    LogWriter | Journal, OrderedDict[tuple[Any, ...], asyncio.Task[int]]
]
_COMMITS = weakref.WeakKeyDictionary()
_COMMITS_KEPT = 1024


async def _log_once(state: ServingState, served: Served, info: SeriesInfo, horizon: str) -> None:
    """Log the prediction of ``info``'s last bar unless a socket already did; wait for that
    commit either way (raises its error)."""
    log = state.log
    if log is None:
        return
    horizons = state.predictions.horizons(served, horizon)
    pipeline = served.pipeline
    series = (pipeline.symbol, pipeline.timeframe, info.last, info.rows)
    key: tuple[Any, ...] = (served.name, served.version, *series, *horizons)
    commits = _COMMITS.setdefault(log, OrderedDict())
    commit = commits.get(key)
    if commit is None or _failed(commit):
        commit = asyncio.ensure_future(_commit(state, log, served, info, horizons))
        commits[key] = commit
        while len(commits) > _COMMITS_KEPT:
            commits.popitem(last=False)
    try:
        # Shielded: a socket closing while it waits must not cancel the others' commit.
        await asyncio.shield(commit)
    except TradeMLError:
        if commits.get(key) is commit:
            del commits[key]  # the next wake-up tries again
        raise


def _failed(commit: asyncio.Task[int]) -> bool:
    return commit.done() and (commit.cancelled() or commit.exception() is not None)


async def _commit(
    state: ServingState,
    log: LogWriter | Journal,
    served: Served,
    info: SeriesInfo,
    horizons: list[str],
) -> int:
    # The prediction the message renders: computed for it, so cached.
    prediction = await anyio.to_thread.run_sync(state.predictions.latest_at, served, info)
    rows = logged(prediction, horizons, f"stream-{uuid.uuid4().hex}", source="stream")
    return await log.append_async(rows)


@router.websocket("/ws/{symbol}")
async def stream(
    websocket: WebSocket,
    symbol: str,
    timeframe: str | None = None,
    horizon: str = "all",
    model: str | None = None,
) -> None:
    """Stream predictions for ``symbol`` at ``timeframe`` as new bars arrive."""
    state: ServingState = websocket.app.state.serving
    offered = _offered(websocket)
    await websocket.accept(subprotocol=_chosen_protocol(offered))
    client = _client(websocket)
    try:
        state.streams.acquire(client)
    except TooManyStreamsError as error:
        await websocket.close(code=error.code, reason=_reason(str(error)))
        return
    try:
        try:
            given = _given_key(websocket, offered)
            # A browser cannot set headers on a WebSocket: the dashboard's signed session stands
            # for the key (same origin only).
            if state.settings.api_auth_all and (given or not signed_in(state.settings, websocket)):
                check_api_key(state.settings, given)
            if not timeframe:
                raise ApiError(422, "the timeframe query parameter is required (?timeframe=1h)")
            served = state.host.find(symbol, timeframe, model)
            state.predictions.horizons(served, horizon)
        except (TradeMLError, ApiError) as error:
            await websocket.close(code=POLICY_VIOLATION, reason=_reason(str(error)))
            return
        async with (
            state.streams.subscribe(symbol, served.pipeline.timeframe) as feed,
            anyio.create_task_group() as group,
        ):

            async def until_closed() -> None:
                try:
                    while (await websocket.receive())["type"] != "websocket.disconnect":
                        pass
                except (WebSocketDisconnect, RuntimeError):
                    pass
                group.cancel_scope.cancel()

            group.start_soon(until_closed)
            with contextlib.suppress(_GoneError):
                await _publish(websocket, state, feed, model, horizon, group)
            group.cancel_scope.cancel()
    finally:
        state.streams.release(client)


async def _publish(
    websocket: WebSocket,
    state: ServingState,
    feed: SeriesFeed,
    model: str | None,
    horizon: str,
    group: TaskGroup,
) -> None:
    settings = state.settings
    sent: tuple[str, int, Any] | None = None
    error_sent: dict[str, Any] | None = None
    heartbeat_due = time.monotonic() + settings.ws_heartbeat_s
    while True:
        state.streams.ensure_poller(feed, group)
        changed = feed.changed  # taken before reading the feed: no change slips in between
        info = feed.info
        try:
            # A reload may have swapped the version: look the model up on every wake-up.
            served = state.host.find(feed.symbol, feed.timeframe, model)
            if info is not None and (served.name, served.version, info.last) != sent:
                text = await feed.message(state.predictions, served, horizon)
                await _log_once(state, served, info, horizon)
                sent = (served.name, served.version, info.last)
                state.metrics.count_prediction(served.name, served.version, "stream")
                await _send(websocket, text)
        except TradeMLError as error:
            _, problem = trademl_error_body(error, None)
            await _send(websocket, {"type": "error", **problem})
        if feed.error is not None and feed.error != error_sent:
            await _send(websocket, {"type": "error", **feed.error})
        error_sent = feed.error
        now = time.monotonic()
        if now >= heartbeat_due:
            heartbeat_due = now + settings.ws_heartbeat_s
            last_bar = feed.info.last.isoformat() if feed.info is not None else None
            await _send(
                websocket,
                {"type": "heartbeat", "time": datetime.now(UTC).isoformat(), "last_bar": last_bar},
            )
        with anyio.move_on_after(max(0.0, heartbeat_due - time.monotonic())):
            await changed.wait()
