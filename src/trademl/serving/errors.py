"""One JSON error shape for every error the API answers:
``{"error": {"type": ..., "message": ..., "request_id": ...}}``.

The TradeMLError family is mapped here, once: bad input is a 4xx naming what was wrong, an
unavailable backend a 503, and anything unexpected a 500 that carries only the request id
(the traceback goes to the server log under that id, never to the client).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trademl.errors import (
    ConfigError,
    DataValidationError,
    JobQueueError,
    JobStateError,
    LimitExceededError,
    NotFoundError,
    PromotionRefusedError,
    SourceError,
    StoreError,
    TrackingError,
    TradeMLError,
)
from trademl.redact import redact

# Most specific first: the first class an error is an instance of decides its status.
STATUS_BY_ERROR: tuple[tuple[type[TradeMLError], int], ...] = (
    (DataValidationError, 422),
    (NotFoundError, 404),
    (PromotionRefusedError, 409),
    (JobStateError, 409),
    (LimitExceededError, 429),
    (TrackingError, 503),
    (StoreError, 503),
    (JobQueueError, 503),
    (SourceError, 502),
    (ConfigError, 422),
    (TradeMLError, 400),
)

_HTTP_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "BodyTooLarge",
    415: "UnsupportedMediaType",
    422: "ValidationError",
    429: "TooManyRequests",
    500: "InternalError",
    503: "Unavailable",
}


class ApiError(Exception):
    """An error the API answers with ``status`` and the one JSON error shape."""

    def __init__(self, status: int, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _HTTP_TYPES.get(status, "Error")


def status_of(error: TradeMLError) -> int:
    """The HTTP status a TradeMLError maps to."""
    return next(status for kind, status in STATUS_BY_ERROR if isinstance(error, kind))


def request_id_of(request: Request) -> str | None:
    """The id the request middleware gave this request."""
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


def error_body(
    type_: str,
    message: str,
    request_id: str | None,
    *,
    rule: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The one error shape; the message redacted (no URL password or key ever leaves)."""
    error: dict[str, Any] = {"type": type_, "message": redact(message), "request_id": request_id}
    if rule is not None:
        error["rule"] = rule
    if details is not None:
        error["details"] = details
    return {"error": error}


def trademl_error_body(error: TradeMLError, request_id: str | None) -> tuple[int, dict[str, Any]]:
    """Status and body of a TradeMLError (also used for the items of a batch)."""
    rule = error.rule if isinstance(error, DataValidationError) else None
    return status_of(error), error_body(type(error).__name__, str(error), request_id, rule=rule)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """A one-line summary of pydantic errors, and the errors as plain details."""
    details = [
        {"loc": _location(tuple(e.get("loc", ()))), "message": str(e["msg"])} for e in errors
    ]
    shown = "; ".join(f"{d['loc']}: {d['message']}" for d in details[:5])
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return f"invalid request: {shown}{more}", details


def install_error_handlers(app: FastAPI) -> None:
    """Answer every anticipated error with the one JSON shape."""

    async def on_trademl(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, TradeMLError)
        status, body = trademl_error_body(error, request_id_of(request))
        return JSONResponse(body, status_code=status)

    async def on_api(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        body = error_body(error.type, error.message, request_id_of(request))
        headers = {"WWW-Authenticate": "ApiKey"} if error.status == 401 else None
        return JSONResponse(body, status_code=error.status, headers=headers)

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = list(error.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            where = next(e for e in errors if e.get("type") == "json_invalid")
            reason = (where.get("ctx") or {}).get("error", "not valid JSON")
            body = error_body("MalformedJSON", f"the body is not valid JSON: {reason}", None)
            body["error"]["request_id"] = request_id_of(request)
            return JSONResponse(body, status_code=400)
        message, details = validation_message(errors)
        body = error_body("ValidationError", message, request_id_of(request), details=details)
        return JSONResponse(body, status_code=422)

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        message = str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        if error.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        body = error_body(
            _HTTP_TYPES.get(error.status_code, "Error"), message, request_id_of(request)
        )
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    app.add_exception_handler(TradeMLError, on_trademl)
    app.add_exception_handler(ApiError, on_api)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
