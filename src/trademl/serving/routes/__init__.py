"""One router per resource: predictions, signals, indicators, jobs, models, and the system
endpoints (health, readiness, metrics)."""

from __future__ import annotations

from typing import Any

from trademl.serving.schemas import ErrorResponse

_DESCRIPTIONS = {
    400: "Malformed JSON or a request the server cannot act on",
    401: "Missing API key",
    403: "Wrong API key, or none configured on the server",
    404: "Unknown symbol, model, job or endpoint",
    409: "Refused in the current state (promotion gate, finished job)",
    413: "Request body too large",
    422: "Invalid input: types, timeframe, horizon, candles breaking the contract",
    429: "A bound was reached (queued jobs of a kind): try again later",
    500: "Unexpected error (the body carries only the request id)",
    503: "A backend (store, tracking, job queue) is unavailable",
}
COMMON = (400, 401, 403, 413, 422, 500)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes a route can answer (and the common ones)."""
    return {
        code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]}
        for code in sorted({*COMMON, *codes})
    }
