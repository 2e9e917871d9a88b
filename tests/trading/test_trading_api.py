"""The trading API and gauges over a journal a real replay wrote; the kill switch behind the
key; requests that play the attacker."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from trademl.config import Settings
from trademl.data.sources.files import read_candle_file
from trademl.serving import create_app
from trademl.trading.journal import TradeJournal, journal_url
from trademl.trading.loop import LoopConfig, TradingLoop, replay
from trademl.trading.paper import PaperBroker
from trademl.trading.signal import BarSignal

KEY = "trading-test-key"
HEADERS = {"X-API-Key": KEY}


def _long_every_fifth(window: pd.DataFrame) -> BarSignal:
    stamp, close = window.index[-1], float(window["close"].iloc[-1])
    side = 1 if len(window) % 5 == 0 else 0
    return BarSignal(stamp, close, side, close * 0.99, close * 1.01, "intraday")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Settings:
    home = tmp_path_factory.mktemp("trading_api")
    settings = Settings(home=home, api_key=KEY, model_reload_s=0)  # type: ignore[arg-type]
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-41:]
    paper = PaperBroker.from_settings(settings)
    journal = TradeJournal.from_settings(settings)
    config = LoopConfig("api-loop", "BTCUSDT", "1h", "m", "paper")
    loop = TradingLoop(paper, journal, _long_every_fifth, config, initial_equity=50_000.0)
    replay(loop, paper, candles)
    journal.close()
    paper.close()
    return settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))  # no lifespan: no registry is needed here


def test_reads_show_the_journal(client: TestClient) -> None:
    orders = client.get("/api/v1/trading/orders", headers=HEADERS)
    assert orders.status_code == 200
    roles = {o["role"] for o in orders.json()["orders"]}
    assert roles == {"entry", "stop", "target"}
    filled = client.get("/api/v1/trading/orders", params={"state": "filled"}, headers=HEADERS)
    assert {o["state"] for o in filled.json()["orders"]} == {"filled"}
    events = client.get("/api/v1/trading/journal", params={"limit": 5}, headers=HEADERS).json()
    assert len(events["events"]) == 5
    after = events["events"][-1]["id"]
    page = client.get("/api/v1/trading/journal", params={"after": after}, headers=HEADERS).json()
    assert page["events"][0]["id"] == after + 1
    positions = client.get("/api/v1/trading/positions", headers=HEADERS).json()["positions"]
    assert all(p["loop"] == "api-loop" and p["side"] == "long" for p in positions)
    text = client.get("/metrics").text
    assert 'trademl_trading_equity{loop="api-loop"}' in text
    assert 'trademl_trading_exposure{loop="api-loop",symbol="BTCUSDT"}' in text
    assert 'trademl_trading_realised_pnl{loop="api-loop"}' in text
    for response in (orders, filled):
        assert KEY not in response.text


def test_the_kill_switch_needs_the_key(client: TestClient, settings: Settings) -> None:
    assert client.post("/api/v1/trading/stop", json={}).status_code == 401
    wrong = client.post("/api/v1/trading/stop", json={}, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403
    assert client.get("/api/v1/trading/orders").status_code == 401
    journal = TradeJournal(journal_url(settings))
    assert journal.switch() == (False, "")
    done = client.post("/api/v1/trading/stop", json={"reason": "drill"}, headers=HEADERS)
    assert done.status_code == 200 and done.json() == {"engaged": True, "reason": "drill"}
    assert journal.switch() == (True, "drill")
    released = client.post("/api/v1/trading/stop", json={"release": True}, headers=HEADERS)
    assert released.json()["engaged"] is False
    journal.close()


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/trading/orders", {"state": "bogus"}),
        ("/api/v1/trading/orders", {"limit": 0}),
        ("/api/v1/trading/orders", {"limit": 10**6}),
        ("/api/v1/trading/journal", {"after": -1}),
        ("/api/v1/trading/positions", {"loop": "x" * 129}),
        ("/api/v1/trading/orders", {"loop": "a\x00b"}),
    ],
)
def test_bad_queries_are_422(client: TestClient, path: str, params: dict[str, object]) -> None:
    response = client.get(path, params=params, headers=HEADERS)
    assert response.status_code == 422
    assert "error" in response.json()


def test_hostile_bodies_and_names_change_nothing(client: TestClient, settings: Settings) -> None:
    bodies = (
        {"reason": "x" * 501},
        {"reason": 5},
        {"reason": "nul\x00byte"},
        {"engaged": True},
        {"release": "yes"},
    )
    for body in bodies:
        response = client.post("/api/v1/trading/stop", json=body, headers=HEADERS)
        assert response.status_code == 422, body
    injected = "api-loop' OR '1'='1"
    response = client.get("/api/v1/trading/orders", params={"loop": injected}, headers=HEADERS)
    assert response.status_code == 200 and response.json()["orders"] == []
    journal = TradeJournal(journal_url(settings))
    assert journal.switch() == (False, "")
    assert journal.orders("api-loop")  # untouched
    journal.close()


def test_a_server_without_a_journal_answers_empty_and_creates_none(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "fresh", model_reload_s=0)
    client = TestClient(create_app(settings))
    for path in ("positions", "orders", "journal"):
        response = client.get(f"/api/v1/trading/{path}")
        assert response.status_code == 200
        assert next(iter(response.json().values())) == []
    assert "trademl_trading_equity{" not in client.get("/metrics").text
    assert not (tmp_path / "fresh" / "trading" / "journal.sqlite").exists()
