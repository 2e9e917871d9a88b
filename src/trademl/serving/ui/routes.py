"""The dashboard's routes under ``/ui``: Market, Live, Backtests, Models, Monitoring, Jobs,
sign-in, and the static assets (Plotly from the installed package, the page script).

Every page renders without JavaScript; charts draw from the data in the tables beside them.
Inputs (symbol, timeframe, model name, version, run id, language, form fields) are checked
here before the library sees them; an unknown series, model or run is a 404 page that says
so, and every other TradeMLError a page with its status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import yaml
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from trademl.errors import ConfigError, NotFoundError, TradeMLError
from trademl.features import preset_names
from trademl.monitoring.assess import MonitoringError
from trademl.serving.deps import ServingState
from trademl.serving.errors import ApiError, status_of
from trademl.serving.ui.i18n import translations
from trademl.serving.ui.market import DEFAULT_BARS, MAX_BARS, market_view, series_info
from trademl.serving.ui.pages import render, render_error, request_locale
from trademl.serving.ui.registry import (
    check_model_name,
    check_version,
    model_view,
    models_overview,
)
from trademl.serving.ui.reports import backtest_runs, backtest_view, monitoring_charts
from trademl.serving.ui.session import (
    check_origin,
    require_session,
    session_nonce,
    sign_in,
    sign_out,
)
from trademl.tracking.registry import promote, rollback
from trademl.tracking.watch import monitor

router = APIRouter(prefix="/ui", include_in_schema=False)

STATIC = Path(__file__).parent / "static"
MAX_PARAM = 128  # characters of one query or form value
MAX_FORM_BYTES = 16 * 1024
DEFAULT_PRESET = "minimal"
LISTED_JOBS = 50


def _state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


def _param(request: Request, name: str, default: str | None = None) -> str | None:
    value = request.query_params.get(name, default)
    if value is not None and len(value) > MAX_PARAM:
        raise ConfigError(f"{name}: longer than {MAX_PARAM} characters")
    return value


PageData = tuple[str, dict[str, Any]]  # a template and its context
Builder = Callable[[Request, ServingState], PageData]


def page(name: str) -> Callable[[Builder], Callable[[Request], Awaitable[Response]]]:
    """Make ``build`` a page route: run off the event loop after the read guard, a TradeMLError
    or ApiError rendered as an error page with its status."""

    def wrap(build: Builder) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            state = _state(request)

            def run() -> PageData:
                _guard_reads(request, state)
                return build(request, state)

            try:
                template, context = await run_in_threadpool(run)
            except (ApiError, TradeMLError) as error:
                return _error_page(request, state, error, name)
            return render(request, state, template, context, page=name)

        route.__doc__ = build.__doc__
        route.__name__ = build.__name__
        return route

    return wrap


def _guard_reads(request: Request, state: ServingState) -> None:
    """Pages behind the key when the server asks it for every endpoint (api_auth_all)."""
    if state.settings.api_auth_all and session_nonce(state.settings, request) is None:
        raise ApiError(401, "sign in with the API key first")


@router.get("")
async def home() -> RedirectResponse:
    """The Market page."""
    return RedirectResponse("/ui/market", status_code=307)


# -- market and live -------------------------------------------------------------------------


def _series_choice(state: ServingState, request: Request) -> tuple[str, str]:
    symbol = _param(request, "symbol")
    timeframe = _param(request, "timeframe")
    if symbol and timeframe:
        return symbol, timeframe
    stored = state.store.list_series()
    if not stored:
        raise NotFoundError("the store holds no candles yet: import some (trademl data import)")
    first = next((s for s in stored if s.symbol == symbol), stored[0])
    return symbol or first.symbol, timeframe or first.timeframe


@router.get("/market")
@page("market")
def market(request: Request, state: ServingState) -> PageData:
    """Candles, indicators of a preset, the served model's bands and signals."""
    symbol, timeframe = _series_choice(state, request)
    bars_text = _param(request, "bars", str(DEFAULT_BARS)) or ""
    if not bars_text.isdigit() or not 10 <= int(bars_text) <= MAX_BARS:
        raise ConfigError(f"bars: expected a whole number from 10 to {MAX_BARS}")
    gettext = _gettext(request)
    view = market_view(
        state,
        symbol,
        timeframe,
        preset=_param(request, "preset", DEFAULT_PRESET) or DEFAULT_PRESET,
        bars=int(bars_text),
        horizon=_param(request, "horizon"),
        _=gettext,
    )
    view.series = state.store.list_series()
    return "market.html", {"view": view, "presets": preset_names(), "bars": int(bars_text)}


@router.get("/live")
@page("live")
def live(request: Request, state: ServingState) -> PageData:
    """Predictions as bars close (over the WebSocket); the current one without JavaScript."""
    symbol, timeframe = _series_choice(state, request)
    info = series_info(state, symbol, timeframe)
    served = state.host.find(symbol, info.timeframe)
    prediction = state.predictions.latest(served)
    body = state.predictions.body(prediction, list(served.pipeline.horizons))
    return "live.html", {
        "symbol": symbol,
        "timeframe": info.timeframe,
        "prediction": body,
        "series": state.store.list_series(),
    }


def _gettext(request: Request) -> Callable[[str], str]:
    return translations(request_locale(request)).gettext


# -- backtests ---------------------------------------------------------------------------------


@router.get("/backtests")
@page("backtests")
def backtests(request: Request, state: ServingState) -> PageData:
    """The recorded backtests, newest first."""
    return "backtests.html", {"runs": backtest_runs(state.settings)}


@router.get("/backtests/{run_id}")
@page("backtests")
def backtest(request: Request, state: ServingState) -> PageData:
    """One backtest: metrics, equity, drawdown, monthly returns, R multiples, trades."""
    run_id = str(request.path_params["run_id"])
    return "backtest.html", {"view": backtest_view(state.settings, run_id, _gettext(request))}


# -- models ------------------------------------------------------------------------------------


@router.get("/models")
@page("models")
def models(request: Request, state: ServingState) -> PageData:
    """Registered models; with ``?name=`` one model's versions, history and gate numbers."""
    overview = models_overview(state.settings)
    name = _param(request, "name") or (overview[0]["name"] if overview else None)
    view = model_view(state.settings, name) if name else None
    return "models.html", {"overview": overview, "view": view, "outcome": None}


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, f"a dashboard form is at most {MAX_FORM_BYTES} bytes")
    fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=20)
    out = {key: values[0] for key, values in fields.items() if values}
    for key, value in out.items():
        if len(value) > 4 * MAX_PARAM:
            raise ConfigError(f"{key[:20]}: longer than {4 * MAX_PARAM} characters")
    return out


async def _signed_form(request: Request, state: ServingState) -> dict[str, str]:
    """The posted form of a signed-in session carrying its token (else 401/403)."""
    form = await _form(request)
    require_session(state.settings, request, form.get("token"))
    return form


def _error_page(
    request: Request, state: ServingState, error: ApiError | TradeMLError, page: str | None
) -> Response:
    if isinstance(error, ApiError):
        return render_error(request, state, error.status, error.message, page)
    return render_error(request, state, status_of(error), str(error), page)


async def _decide(request: Request, name: str, action: str) -> Response:
    state = _state(request)
    try:
        form = await _signed_form(request, state)
    except (ApiError, TradeMLError) as error:
        return _error_page(request, state, error, "models")

    def build() -> tuple[str, dict[str, Any]]:
        check_model_name(name)
        status, outcome = 200, {"action": action, "ok": True, "message": ""}
        try:
            if action == "promote":
                version = check_version(form.get("version") or "challenger")
                force = form.get("force") == "1"
                decision = promote(
                    name, version, force=force, settings=state.settings, reason="dashboard"
                )
            else:
                decision = rollback(name, settings=state.settings, reason="dashboard")
            state.host.refresh(only=name)  # served at once, as the API does
            outcome.update(version=decision.version, previous=decision.previous)
            outcome["message"] = decision.reason
        except TradeMLError as error:
            if status_of(error) == 404:
                raise
            status = status_of(error)
            outcome.update(ok=False, message=str(error))
        context = {
            "overview": models_overview(state.settings),
            "view": model_view(state.settings, name),
            "outcome": outcome,
            "status": status,
        }
        return "models.html", context

    try:
        template, context = await run_in_threadpool(build)
    except TradeMLError as error:
        return _error_page(request, state, error, "models")
    return render(request, state, template, context, status=context["status"], page="models")


@router.post("/models/{name}/promote")
async def promote_model(request: Request, name: str) -> Response:
    """Promote a version through the gate (signed in; the refusal shown with its numbers)."""
    return await _decide(request, name, "promote")


@router.post("/models/{name}/rollback")
async def rollback_model(request: Request, name: str) -> Response:
    """Give the champion alias back to the version it replaced (signed in)."""
    return await _decide(request, name, "rollback")


# -- monitoring ----------------------------------------------------------------------------------


@router.get("/monitoring")
@page("monitoring")
def monitoring(request: Request, state: ServingState) -> PageData:
    """A version's realised metrics against its baseline, coverage, alarms and drift."""
    overview = models_overview(state.settings)
    name = _param(request, "model") or (overview[0]["name"] if overview else None)
    version = check_version(_param(request, "version", "champion") or "champion")
    context: dict[str, Any] = {
        "overview": overview,
        "name": name,
        "version": version,
        "report": None,
        "problem": None,
    }
    if name:
        check_model_name(name)
        try:
            report, _, _ = monitor(name, version, settings=state.settings)
        except MonitoringError as error:
            context["problem"] = str(error)
        else:
            state.metrics.observe_monitoring(report)
            context["report"] = report.as_dict()
            context["charts"] = monitoring_charts(context["report"], _gettext(request))
    return "monitoring.html", context


# -- jobs ------------------------------------------------------------------------------------


def stored_configs(state: ServingState) -> list[str]:
    """The run configs a training job may start from: YAML files in TRADEML_HOME/configs."""
    folder = state.settings.home / "configs"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


@router.get("/jobs")
@page("jobs")
def jobs(request: Request, state: ServingState) -> PageData:
    """Running and finished jobs with their progress, and a form to start training."""
    # Job reads need the key whenever the server has one, as in the API.
    signed = state.settings.api_key is None
    if not signed:
        signed = session_nonce(state.settings, request) is not None
    queue = state.job_queue() if signed else None
    return "jobs.html", {
        "jobs": queue.list(LISTED_JOBS) if queue else [],
        "counts": queue.counts() if queue else {},
        "readable": signed,
        "configs": stored_configs(state),
        "started": _param(request, "started"),
    }


@router.post("/jobs/train")
async def start_training(request: Request) -> Response:
    """Start a training job from a stored config (signed in)."""
    state = _state(request)
    try:
        form = await _signed_form(request, state)
        chosen = form.get("config", "")
        if chosen not in stored_configs(state):
            raise NotFoundError(f"config {chosen[:64]!r} is not one of the stored configs")
        path = state.settings.home / "configs" / chosen
        config = await anyio.to_thread.run_sync(lambda: yaml.safe_load(path.read_text()))
        if not isinstance(config, dict):
            raise ConfigError(f"config {chosen!r} is not a mapping")
        queue = state.job_queue()
        job_id = await anyio.to_thread.run_sync(lambda: queue.submit("train", {"config": config}))
    except (ApiError, TradeMLError) as error:
        return _error_page(request, state, error, "jobs")
    return RedirectResponse(f"/ui/jobs?started={job_id}", status_code=303)


# -- sign-in and assets --------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The sign-in form."""
    return render(request, _state(request), "login.html", {"problem": None}, page="login")


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the API key and set the session cookie."""
    state = _state(request)
    try:
        form = await _form(request)
        check_origin(request)  # a foreign page must not sign a browser in (login CSRF)
        response = RedirectResponse("/ui/models", status_code=303)
        sign_in(state.settings, form.get("key", ""), request, response)
    except ApiError as error:
        return render(
            request,
            state,
            "login.html",
            {"problem": error.message},
            status=error.status,
            page="login",
        )
    except TradeMLError as error:
        return _error_page(request, state, error, "login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session."""
    state = _state(request)
    try:
        await _signed_form(request, state)
    except (ApiError, TradeMLError) as error:
        return _error_page(request, state, error, None)
    response = RedirectResponse("/ui/market", status_code=303)
    sign_out(response)
    return response


_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    """The page script and style, and Plotly's bundle from the installed plotly package."""
    if name == "plotly.min.js":
        import plotly

        path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        media = "text/javascript"
    elif name in _ASSETS:
        path, media = STATIC / name, _ASSETS[name]
    else:
        raise ApiError(404, f"no such asset: {name[:64]}")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=3600"})
