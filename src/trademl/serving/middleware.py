"""One pure ASGI middleware in front of every route: a request id, the body size limit
(checked before any parsing), request metrics, and the last line of defence that answers an
unexpected exception with a 500 carrying only the request id."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from loguru import logger
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trademl.serving.errors import error_body
from trademl.serving.metrics import Metrics


class RequestMiddleware:
    """Request id, body limit, metrics and the unexpected-error answer."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry: count and time HTTP requests, pass everything else through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                await self._answer(
                    send_wrapper, 413, "BodyTooLarge", self._too_large(declared), request_id
                )
                return
            await self.app(scope, self._limited(receive), send_wrapper)
        except Exception:
            logger.opt(exception=True).error(
                "request {} {} {} failed", request_id, scope.get("method"), scope.get("path")
            )
            if not response_started:
                message = (
                    f"internal error; the server log has the details under request id {request_id}"
                )
                await self._answer(send_wrapper, 500, "InternalError", message, request_id)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            self.metrics.observe_request(scope.get("method", ""), name, status, elapsed)

    def _too_large(self, size: int | None) -> str:
        got = f"{size:,} bytes" if size is not None else "more"
        return f"request body of {got} exceeds the limit of {self.max_body_bytes:,} bytes"

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that fails with a 413 once the body passes the limit (chunked bodies)."""
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise HTTPException(413, self._too_large(None))
            return message

        return wrapped

    @staticmethod
    async def _answer(send: Send, status: int, kind: str, message: str, request_id: str) -> None:
        body = json.dumps(error_body(kind, message, request_id)).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
