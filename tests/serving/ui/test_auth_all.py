"""With ``api_auth_all`` every dashboard page but sign-in needs a signed-in session, as every
API endpoint but ``/health`` needs the key; signing out ends it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from trademl.config import Settings
from trademl.serving import create_app

KEY = "auth-all-dashboard-key"


@pytest.fixture
def guarded(home: Path) -> Iterator[TestClient]:
    config = Settings(
        home=home,
        api_key=KEY,  # type: ignore[arg-type]
        api_auth_all=True,
        tracking=False,
        model_reload_s=0,
    )
    with TestClient(create_app(config)) as client:
        yield client


def test_pages_need_a_session_when_every_endpoint_needs_the_key(guarded: TestClient) -> None:
    for page in ("market", "live", "backtests", "models", "monitoring", "jobs"):
        refused = guarded.get(f"/ui/{page}", headers={"Accept-Language": "ru"})
        assert refused.status_code == 401 and "Требуется вход" in refused.text, page
    assert guarded.get("/ui/login").status_code == 200
    assert guarded.get("/ui/static/dashboard.js").status_code == 200
    signed = guarded.post("/ui/login", data={"key": KEY}, follow_redirects=False)
    assert signed.status_code == 303
    jobs = guarded.get("/ui/jobs")
    assert jobs.status_code == 200 and "No job yet." in jobs.text
    token = re.search(r'name="token" value="([0-9a-f]{64})"', jobs.text)
    assert token is not None
    # Signing out needs the page's token too, then the pages are closed again.
    assert guarded.post("/ui/logout", data={"token": "0" * 64}).status_code == 403
    out = guarded.post("/ui/logout", data={"token": token.group(1)}, follow_redirects=False)
    assert out.status_code == 303 and 'trademl_ui=""' in out.headers["set-cookie"]
    guarded.cookies.clear()
    assert guarded.get("/ui/jobs").status_code == 401


def closing_reason(client: TestClient, headers: dict[str, str]) -> str:
    with (
        client.websocket_connect("/ws/BTCUSDT?timeframe=1h", headers=headers) as socket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        socket.receive_json()
    assert closed.value.code == 1008
    return str(closed.value.reason)


def test_live_stream_takes_the_dashboard_session_for_the_key(guarded: TestClient) -> None:
    assert "missing API key" in closing_reason(guarded, {})
    signed = guarded.post("/ui/login", data={"key": KEY}, follow_redirects=False)
    guarded.cookies.clear()
    cookie = {"cookie": f"trademl_ui={signed.cookies['trademl_ui']}"}
    # Past the key check: refused only because no model serves BTCUSDT on this empty home.
    reason = closing_reason(guarded, {**cookie, "origin": "http://testserver"})
    assert "API key" not in reason and "BTCUSDT" in reason
    # The same cookie from another site's page (cross-site WebSocket hijacking) is refused.
    assert "missing API key" in closing_reason(
        guarded, {**cookie, "origin": "https://evil.example"}
    )
    forged = {"cookie": f"trademl_ui={signed.cookies['trademl_ui'][:-2]}00"}
    assert "missing API key" in closing_reason(guarded, forged)
