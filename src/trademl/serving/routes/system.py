"""``GET /health`` (liveness), ``GET /ready`` (models loaded; store and tracking reachable)
and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from trademl.errors import TradeMLError
from trademl.serving.deps import State
from trademl.serving.routes import errors
from trademl.serving.schemas import Health, Readiness
from trademl.tracking.client import check_reachable, redact

health_router = APIRouter(tags=["system"])
router = APIRouter(tags=["system"])


@health_router.get("/health", response_model=Health)
def health() -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _probe(check: Any) -> dict[str, Any]:
    try:
        detail = check()
    except TradeMLError as error:
        return {"reachable": False, "detail": str(error)}
    except Exception as error:
        return {"reachable": False, "detail": f"{type(error).__name__}: {error}"}
    return {"reachable": True, "detail": str(detail)}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "No model loaded"}, **errors()},
)
def ready(state: State) -> JSONResponse:
    """Ready (200) once at least one model is loaded, else 503; store and tracking reported."""
    settings = state.settings
    store = _probe(lambda: f"{len(state.store.list_series())} series")

    def tracking_check() -> str:
        check_reachable(settings.mlflow_uri, settings.mlflow_timeout_s)
        return redact(settings.mlflow_uri)

    tracking = _probe(tracking_check)
    served = [s.describe() for s in state.host.served.values()]
    body = Readiness.model_validate(
        {
            "ready": bool(served),
            "models": served,
            "load_errors": dict(state.host.load_errors),
            "store": store,
            "tracking": tracking,
        }
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if served else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus metrics"},
        **errors(),
    },
)
def metrics(state: State) -> Response:
    """Request counts and latencies by route, predictions by model version, jobs by state."""
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
