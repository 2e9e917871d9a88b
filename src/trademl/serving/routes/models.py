"""The registry through the API: ``GET /api/v1/models``, and ``POST .../promote`` and
``POST .../rollback`` (API key), after which the server serves the new champion at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from trademl.serving.deps import ApiKey, ServingState, State
from trademl.serving.routes import errors
from trademl.serving.schemas import DecisionResponse, ModelList, PromoteRequest, RollbackRequest
from trademl.tracking.registry import Decision, list_models, promote, rollback

router = APIRouter(prefix="/api/v1/models", tags=["models"])


@router.get("", response_model=ModelList, responses=errors(503))
def models(state: State) -> dict[str, Any]:
    """Every registered model with its aliases, and the version this server serves."""
    rows = []
    for row in list_models(state.settings):
        served = state.host.served.get(row["name"])
        rows.append(
            {
                "name": row["name"],
                "versions": row["versions"],
                "latest": row["latest"],
                "champion": _number(row.get("champion")),
                "challenger": _number(row.get("challenger")),
                "description": row["description"],
                "served": served.describe() if served else None,
            }
        )
    return {"models": rows}


def _number(value: Any) -> int | None:
    return int(value) if value is not None else None


def _after(state: ServingState, decision: Decision) -> dict[str, Any]:
    # Serve the decision now rather than at the next reload tick.
    state.host.refresh(only=decision.name)
    served = state.host.served.get(decision.name)
    return {
        "name": decision.name,
        "version": decision.version,
        "alias": decision.alias,
        "previous": decision.previous,
        "reason": decision.reason,
        "served": served.describe() if served else None,
    }


@router.post(
    "/{name}/promote",
    response_model=DecisionResponse,
    responses=errors(404, 409, 503),
    dependencies=[ApiKey],
)
def promote_model(name: str, state: State, body: PromoteRequest | None = None) -> dict[str, Any]:
    """Make a version (the challenger by default) champion if it passes the promotion gate
    (409 with the failing numbers otherwise; ``force`` promotes anyway, recorded as forced)."""
    body = body or PromoteRequest()
    overrides: dict[str, Any] = {} if body.level is None else {"level": body.level}
    decision = promote(name, body.version, force=body.force, settings=state.settings, **overrides)
    return _after(state, decision)


@router.post(
    "/{name}/rollback",
    response_model=DecisionResponse,
    responses=errors(404, 503),
    dependencies=[ApiKey],
)
def rollback_model(name: str, state: State, body: RollbackRequest | None = None) -> dict[str, Any]:
    """Give the champion alias back to the version it replaced."""
    body = body or RollbackRequest()
    decision = rollback(name, settings=state.settings, reason=body.reason)
    return _after(state, decision)
