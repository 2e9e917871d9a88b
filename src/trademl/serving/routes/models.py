"""The registry through the API: ``GET /api/v1/models``, ``GET .../{name}/monitoring`` (the
monitoring report of a version on its logged predictions), and ``POST .../promote`` and
``POST .../rollback`` (API key), after which the server serves the new champion at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel

from trademl.monitoring.assess import Assessment, MonitoringError
from trademl.serving.deps import ApiKey, ServingState, State
from trademl.serving.errors import ApiError
from trademl.serving.report_cache import ReportCache
from trademl.serving.routes import errors
from trademl.serving.schemas import DecisionResponse, ModelList, PromoteRequest, RollbackRequest
from trademl.tracking.registry import Decision, list_models, promote, rollback
from trademl.tracking.watch import monitor

router = APIRouter(prefix="/api/v1/models", tags=["models"])

# A registry name (as a run config's ``registry.name``) that cannot be ``.``/``..`` or an option.
ModelName = Annotated[
    str,
    PathParam(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
        description="A registered model name: letters, digits, `_`, `.` and `-`, not starting "
        "with `.` or `-`, at most 128 characters.",
        examples=["BTCUSDT_1h_lgbm"],
    ),
]
MONITORING_WINDOW_MAX = 100_000


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


# -- monitoring ------------------------------------------------------------------------------


class MonitoredWindow(BaseModel):
    """The window's first and last bar (ISO 8601)."""

    start: str | None
    end: str | None


class TargetMonitoring(BaseModel):
    """One served target over the window (null: not measurable, ``note`` says why)."""

    target: str
    served: str
    baseline: str
    rows: int
    model_loss: float | None
    baseline_loss: float | None
    difference: float | None
    difference_interval: list[float | None]
    p_value: float | None
    cusum: float | None
    cusum_max: float | None
    threshold: float | None
    in_control_arl: float | None
    alarm_at: str | None
    coverage: float | None
    nominal_coverage: float | None
    coverage_alarm_at: str | None
    note: str


class DriftRow(BaseModel):
    """One column's drift against its training reference."""

    column: str
    n: int
    n_effective: float | None
    psi: float | None
    ks: float | None
    wasserstein: float | None
    qvalue: float | None
    drifted: bool


class DriftTable(BaseModel):
    """Drift of the window's columns, most drifted first (the first 20)."""

    alpha: float
    columns: int
    drifted: list[str]
    drifted_share: float | None
    table: list[DriftRow]


class MonitoringReport(BaseModel):
    """A model version's monitoring report (``Assessment.as_dict``)."""

    model: str
    version: int
    symbol: str
    timeframe: str
    window: MonitoredWindow
    logged: int
    mature: int
    mature_share: float | None
    arl0: int
    alarms: list[str]
    targets: list[TargetMonitoring]
    feature_drift: DriftTable | None
    forecast_drift: DriftTable | None
    notes: list[str]


_MONITORING_ERRORS = errors(404, 409, 503)
_MONITORING_ERRORS[409] = {
    **_MONITORING_ERRORS[409],
    "description": "The version cannot be monitored yet: no monitoring reference statistics, "
    "or too few predictions with matured labels in the window (the message gives the counts)",
}


@router.get("/{name}/monitoring", response_model=MonitoringReport, responses=_MONITORING_ERRORS)
def monitoring(
    name: ModelName,
    state: State,
    window: Annotated[
        int | None,
        Query(
            ge=20,
            le=MONITORING_WINDOW_MAX,
            description="Recent bars to assess (the version's `monitoring.window` by default).",
        ),
    ] = None,
    version: Annotated[
        str,
        Query(
            pattern=r"^(?:[0-9]{1,9}|[A-Za-z][A-Za-z0-9_-]{0,63})$",
            description="An alias (`champion`, `challenger`) or a version number.",
        ),
    ] = "champion",
    *,
    response: Response,
) -> dict[str, Any]:
    """The monitoring report of a version (the champion by default): its logged predictions
    scored on matured labels beside the baseline, the CUSUM and coverage alarms, and the drift
    of its features and forecasts over the last ``window`` bars.

    A version that cannot be assessed yet (trained without monitoring reference statistics,
    or with too few matured predictions in the window) is a 409 whose message says why. Each
    report also sets the server's ``trademl_monitor_*`` gauges of the model. A report is
    computed at most once per ``TRADEML_MONITORING_CACHE_S`` for the same query; the ``Age``
    header says how many seconds old the answered one is.
    """
    cache = state.extras.get("monitoring_reports")
    if not isinstance(cache, ReportCache):
        cache = state.extras["monitoring_reports"] = ReportCache(state.settings.monitoring_cache_s)

    def assess() -> Assessment:
        report, _, _ = monitor(name, version, window=window, settings=state.settings)
        state.metrics.observe_monitoring(report)
        return report

    try:
        report, age = cache.get((name, version, window), assess)
    except MonitoringError as error:
        raise ApiError(409, str(error), type(error).__name__) from None
    response.headers["Age"] = str(int(age))
    answer: dict[str, Any] = report.as_dict()
    return answer
