"""Rendering: the Jinja environment (autoescaped, gettext through the request's catalogue),
the locale filters, and the page and error responses with their security headers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context

from trademl.redact import redact
from trademl.serving.deps import ServingState
from trademl.serving.ui.i18n import (
    LOCALE_COOKIE,
    LOCALES,
    format_number,
    format_share,
    format_time,
    negotiate,
    translations,
)
from trademl.serving.ui.session import csrf_token, session_nonce

TEMPLATES = Path(__file__).parent / "templates"
# Scripts only from this server (no inline script runs); Plotly sets inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
LANGUAGE_NAMES = {"en": "English", "ru": "Русский", "es": "Español"}
NAVIGATION = ("market", "live", "backtests", "models", "monitoring", "jobs")


@pass_context
def _number(context: Context, value: Any, digits: int = 2) -> str:
    return format_number(value, context["locale"], digits)


@pass_context
def _measure(context: Context, value: Any, digits: int = 3) -> str:
    # Counts (trades, rows) read as whole numbers, ratios with ``digits`` decimals.
    whole = isinstance(value, int | float) and float(value).is_integer()
    return format_number(value, context["locale"], 0 if whole else digits)


@pass_context
def _share(context: Context, value: Any, digits: int = 1) -> str:
    return format_share(value, context["locale"], digits)


@pass_context
def _time(context: Context, value: datetime | str | None) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_time(value, context["locale"])


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_number, measure=_measure, pct=_share, when=_time)
    return env


ENVIRONMENT = _environment()


def request_locale(request: Request) -> str:
    """The locale of ``request`` (see :func:`~trademl.serving.ui.i18n.negotiate`)."""
    return negotiate(
        request.headers.get("accept-language"),
        request.cookies.get(LOCALE_COOKIE),
        request.query_params.get("lang"),
    )


def _switcher_links(request: Request) -> dict[str, str]:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return {code: f"{request.url.path}?{urlencode([*query, ('lang', code)])}" for code in LOCALES}


def render(
    request: Request,
    state: ServingState,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    page: str | None = None,
) -> HTMLResponse:
    """A page in the request's language, with the security headers and the locale cookie."""
    locale = request_locale(request)
    catalogue = translations(locale)
    settings = state.settings
    nonce = session_nonce(settings, request)
    body = ENVIRONMENT.get_template(template).render(
        {
            **context,
            "locale": locale,
            "gettext": catalogue.gettext,
            "ngettext": catalogue.ngettext,
            "_": catalogue.gettext,
            "page": page,
            "navigation": NAVIGATION,
            "languages": LANGUAGE_NAMES,
            "switcher": _switcher_links(request),
            "signed_in": nonce is not None,
            "has_key": settings.api_key is not None,
            "csrf": csrf_token(settings, nonce),
        }
    )
    response = HTMLResponse(body, status_code=status)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    if request.query_params.get("lang") in LOCALES:
        response.set_cookie(
            LOCALE_COOKIE,
            locale,
            max_age=365 * 86400,
            path="/ui",
            httponly=True,
            samesite="lax",
        )
    return response


def render_error(
    request: Request, state: ServingState, status: int, message: str, page: str | None = None
) -> HTMLResponse:
    """An error page saying what is wrong (message redacted: no secret in a page)."""
    return render(
        request,
        state,
        "error.html",
        {"status": status, "message": redact(message)},
        status=status,
        page=page,
    )
