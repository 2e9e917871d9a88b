"""``WS /ws/{symbol}?timeframe=``: a prediction message each time a new bar reaches the store
for that series, and a heartbeat in between.

Messages are JSON objects with a ``type``: ``prediction`` (the fields of ``POST
/api/v1/predict``; the current one is sent on connect, then one per new bar), ``heartbeat``
(``time`` and the ``last_bar`` seen) and ``error`` (a prediction failed for a bar). An unknown
symbol or an invalid timeframe or horizon closes the socket with code 1008 and the reason.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from loguru import logger

from trademl.errors import TradeMLError
from trademl.serving.deps import ServingState, check_api_key
from trademl.serving.errors import ApiError, trademl_error_body
from trademl.serving.schemas import PredictResponse

router = APIRouter()

POLICY_VIOLATION = 1008
_REASON_BYTES = 120  # a close reason must fit in a control frame (123 bytes)


class _GoneError(Exception):
    """The client went away while we were sending."""


def _reason(text: str) -> str:
    return text.encode()[:_REASON_BYTES].decode(errors="ignore")


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    try:
        await websocket.send_json(message)
    except (WebSocketDisconnect, RuntimeError, OSError) as error:
        raise _GoneError from error


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
    await websocket.accept()
    try:
        if state.settings.api_auth_all:
            given = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key")
            check_api_key(state.settings, given)
        if not timeframe:
            raise ApiError(422, "the timeframe query parameter is required (?timeframe=1h)")
        served = state.host.find(symbol, timeframe, model)
        horizons = state.predictions.horizons(served, horizon)
    except (TradeMLError, ApiError) as error:
        await websocket.close(code=POLICY_VIOLATION, reason=_reason(str(error)))
        return
    async with anyio.create_task_group() as group:

        async def until_closed() -> None:
            try:
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
            except (WebSocketDisconnect, RuntimeError):
                pass
            group.cancel_scope.cancel()

        group.start_soon(until_closed)
        with contextlib.suppress(_GoneError):
            await _publish(websocket, state, symbol, served.pipeline.timeframe, model, horizons)
        group.cancel_scope.cancel()


async def _publish(
    websocket: WebSocket,
    state: ServingState,
    symbol: str,
    timeframe: str,
    model: str | None,
    horizons: list[str],
) -> None:
    settings = state.settings
    sent: tuple[str, int, Any] | None = None
    heartbeat_due = time.monotonic() + settings.ws_heartbeat_s
    last_bar = None
    while True:
        try:
            # A reload may have swapped the version: look the model up on every tick.
            served = state.host.find(symbol, timeframe, model)
            info = await anyio.to_thread.run_sync(state.store.info, symbol, timeframe)
            if info is not None:
                last_bar = info.last
                key = (served.name, served.version, info.last)
                if key != sent:
                    sent = key
                    prediction = await anyio.to_thread.run_sync(state.predictions.latest, served)
                    body = state.predictions.body(prediction, horizons)
                    message = PredictResponse.model_validate(body).model_dump(mode="json")
                    state.metrics.predictions.labels(
                        served.name, str(served.version), "stream"
                    ).inc()
                    await _send(websocket, {"type": "prediction", **message})
        except TradeMLError as error:
            _, problem = trademl_error_body(error, None)
            logger.warning("stream {} {}: {}", symbol, timeframe, error)
            await _send(websocket, {"type": "error", **problem})
        now = time.monotonic()
        if now >= heartbeat_due:
            heartbeat_due = now + settings.ws_heartbeat_s
            await _send(
                websocket,
                {
                    "type": "heartbeat",
                    "time": datetime.now(UTC).isoformat(),
                    "last_bar": last_bar.isoformat() if last_bar is not None else None,
                },
            )
        await anyio.sleep(min(settings.store_poll_s, max(0.0, heartbeat_due - time.monotonic())))
