"""The dashboard's sign-in: the API key typed once into a form becomes an HttpOnly session
cookie signed with that key, and every action form carries a token derived from it.

Why a cookie and not the key in the page's JavaScript: the pages work without JavaScript
(forms), the key never sits where a script could read it, and rotating the server's key ends
every session. Cross-site request forgery is shut out three ways: the cookie is
``SameSite=Strict`` (a browser does not send it from another site), every action form carries
a token only a page of this server could have rendered (an HMAC of the session under the key),
and a request whose ``Origin`` is another site is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from fastapi import Request, Response
from starlette.requests import HTTPConnection

from trademl.config import Settings
from trademl.serving.deps import check_api_key
from trademl.serving.errors import ApiError

SESSION_COOKIE = "trademl_ui"
SESSION_S = 12 * 3600
_MAX_COOKIE = 200


def _secret(settings: Settings) -> bytes | None:
    return settings.api_key.get_secret_value().encode() if settings.api_key else None


def _sign(secret: bytes, purpose: str, nonce: str) -> str:
    return hmac.new(secret, f"{purpose}:{nonce}".encode(), hashlib.sha256).hexdigest()


def sign_in(settings: Settings, key: str, request: Request, response: Response) -> None:
    """Check ``key`` as the API does (401 empty, 403 wrong or none configured) and set the
    session cookie."""
    check_api_key(settings, key or None)
    secret = _secret(settings)
    assert secret is not None  # check_api_key refused a server without a key
    nonce = f"{int(time.time())}-{secrets.token_hex(16)}"
    response.set_cookie(
        SESSION_COOKIE,
        f"{nonce}.{_sign(secret, 'session', nonce)}",
        max_age=SESSION_S,
        path="/",  # the Live page's WebSocket (/ws) too
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def sign_out(response: Response) -> None:
    """Drop the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def session_nonce(settings: Settings, request: HTTPConnection) -> str | None:
    """The nonce of a valid, unexpired session cookie signed with the server's key, else None."""
    secret = _secret(settings)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if secret is None or not cookie or len(cookie) > _MAX_COOKIE or "." not in cookie:
        return None
    nonce, _, signature = cookie.rpartition(".")
    if not hmac.compare_digest(signature, _sign(secret, "session", nonce)):
        return None
    issued = nonce.partition("-")[0]
    if not issued.isdigit() or time.time() - int(issued) > SESSION_S:
        return None
    return nonce


def csrf_token(settings: Settings, nonce: str | None) -> str:
    """The token the action forms of a session carry ('' without a session)."""
    secret = _secret(settings)
    return _sign(secret, "csrf", nonce) if secret is not None and nonce else ""


def same_origin(connection: HTTPConnection) -> bool:
    """Whether the ``Origin`` header, if any, is this server's own (a WebSocket's ``ws``/``wss``
    read as ``http``/``https``); no header is not a browser's cross-site request."""
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
    return origin != "null" and (parts.scheme, parts.netloc) == (scheme, connection.url.netloc)


def check_origin(request: Request) -> None:
    """Refuse (403) a form posted from another site or an opaque origin."""
    if not same_origin(request):
        raise ApiError(403, "a dashboard action from another site is refused")


def signed_in(settings: Settings, connection: HTTPConnection) -> bool:
    """A same-origin connection of a signed-in dashboard session (the Live page's WebSocket
    when the server asks the key of every endpoint)."""
    return same_origin(connection) and session_nonce(settings, connection) is not None


def require_session(settings: Settings, request: Request, token: str | None) -> None:
    """An action's check: a same-site request from a signed-in session with its form token
    (401 without a session, 403 for a foreign origin or a wrong token)."""
    check_origin(request)
    if settings.api_key is None:
        check_api_key(settings, None)  # 403: this server has no key, actions are disabled
    nonce = session_nonce(settings, request)
    if nonce is None:
        raise ApiError(401, "sign in with the API key first")
    if not token or not hmac.compare_digest(token, csrf_token(settings, nonce)):
        raise ApiError(403, "the form's token does not match this session; reload the page")
