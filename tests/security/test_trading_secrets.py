"""Item 5 of issue 20: the trading settings' secrets (exchange key, secret and password, the
DEX private key, passwords inside the journal and RPC URLs) never reach an API answer, an
error, the trade journal's tables or a log line, while a loop trades on the local Binance
server and an attacker pokes at the trading API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from eth_account import Account
from fastapi.testclient import TestClient
from loguru import logger
from tests.support.binance_market import Market
from tests.support.binance_server import binance_spot_server
from tests.support.binance_spot import SpotExchange

from trademl.config import Settings
from trademl.data.sources.files import read_candle_file
from trademl.errors import ConfigError, VenueUnavailableError
from trademl.serving import create_app
from trademl.trading.brokers import open_broker
from trademl.trading.journal import TradeJournal
from trademl.trading.loop import LoopConfig, TradingLoop, venue_step
from trademl.trading.signal import BarSignal

API_KEY = "trading-secrets-api-key-51d0"
EXCHANGE_KEY = "XkEy8d1c4F0b9a7E2c6D3f5A1b8C0d9E7f2A4b6C8d0E1f3A5b7C9d1E3f5A7b9C"
EXCHANGE_SECRET = "XsEc2b4D6f8A0c1E3a5C7e9B1d3F5b7D9f1A3c5E7a9C1e3B5d7F9b1D3f5A7c9E"
EXCHANGE_PASSWORD = "Xpass-TRADING-6e1f"
JOURNAL_PASSWORD = "Jrnl-PW-trading-3b9c"
RPC_PASSWORD = "Rpc-PW-trading-8a2d"
PRIVATE_KEY = Account.create().key.hex()
HEADERS = {"X-API-Key": API_KEY}


def secrets() -> tuple[str, ...]:
    return (
        API_KEY,
        EXCHANGE_KEY,
        EXCHANGE_SECRET,
        EXCHANGE_PASSWORD,
        JOURNAL_PASSWORD,
        RPC_PASSWORD,
        PRIVATE_KEY,
        PRIVATE_KEY.removeprefix("0x"),
    )


def assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in secrets():
            assert secret not in text, (secret, text[:2000])


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """Every loguru message (as trademl's own sink writes them) and logging record so far,
    libraries' debug lines included."""
    lines: list[str] = []
    logger.enable("trademl")
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG", diagnose=False)
    caplog.set_level(logging.DEBUG)
    yield lambda: lines + [logging.Formatter().format(r) for r in caplog.records]
    logger.remove(sink)


def _journal_url(postgres_url: str) -> str:
    """The scratch PostgreSQL database, with a password in its URL (trust ignores it)."""
    url = sa.engine.make_url(postgres_url).set(password=JOURNAL_PASSWORD)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in ("events", "fills", "orders", "intents", "loops", "switches"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS trade_{table}")
    engine.dispose()
    return url.render_as_string(hide_password=False)


def _tables(url: str) -> str:
    """Every row of every trade journal table, as text."""
    engine = sa.create_engine(url)
    rows = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            if table.startswith("trade_"):
                rows += [repr(tuple(r)) for r in conn.exec_driver_sql(f"SELECT * FROM {table}")]
    engine.dispose()
    assert rows
    return "\n".join(rows)


def test_trading_secrets_stay_out_of_answers_journal_and_logs(
    home: Path, data_dir: Path, postgres_url: str, logs: Callable[[], list[str]]
) -> None:
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-30:]
    journal_url = _journal_url(postgres_url)
    opening = Decimal(str(candles["open"].iloc[0]))
    exchange = SpotExchange(
        [Market("BTCUSDT", "BTC", "USDT")], {"USDT": Decimal("10000")}, {"BTCUSDT": opening}
    )
    texts: list[str] = []
    with binance_spot_server(exchange, EXCHANGE_KEY, EXCHANGE_SECRET) as server:
        settings = Settings(
            home=home,
            api_key=API_KEY,  # type: ignore[arg-type]
            model_reload_s=0,
            tracking=False,
            trade_journal_url=journal_url,
            exchange_api_key=EXCHANGE_KEY,  # type: ignore[arg-type]
            exchange_api_secret=EXCHANGE_SECRET,  # type: ignore[arg-type]
            exchange_api_password=EXCHANGE_PASSWORD,  # type: ignore[arg-type]
            exchange_api_url=server.url,
            dex_private_key=PRIVATE_KEY,  # type: ignore[arg-type]
            dex_rpc_url=f"http://trader:{RPC_PASSWORD}@127.0.0.1:9/rpc",
            dex_router="0x" + "11" * 20,
            dex_markets={"BTCUSDT": ("0x" + "22" * 20, "0x" + "33" * 20)},
            http_timeout_s=1.0,
            http_retries=0,
        )
        broker = open_broker("ccxt:binance", settings)
        journal = TradeJournal.from_settings(settings)

        def signals(window: pd.DataFrame) -> BarSignal:
            """A long on the tenth bar, with a target the venue refuses (below the price)."""
            stamp, close = window.index[-1], float(window["close"].iloc[-1])
            side = 1 if len(window) == 10 else 0
            return BarSignal(stamp, close, side, close * 0.95, close * 1.0001, "intraday")

        config = LoopConfig("secrets", "BTCUSDT", "1h", "m", "ccxt:binance", risk_per_trade=0.01)
        loop = TradingLoop(broker, journal, signals, config, initial_equity=10_000.0)
        for end in range(1, 16):
            price = Decimal(str(candles["close"].iloc[end - 1]))
            exchange.set_price("BTCUSDT", price * Decimal("1.01") if end == 10 else price)
            venue_step(loop, candles.iloc[:end], pd.Timedelta("1h"))
        journalled = journal.orders("secrets")
        assert {o.role for o in journalled} >= {"entry", "stop", "target"}
        assert "rejected" in {o.state for o in journalled}  # a venue's refusal is journalled
        # Hostile symbols and client ids are refused before any request, naming the value.
        before = len(server.hits)
        for symbol in ("BTCUSDT'; DROP TABLE trade_orders; --", "../../etc/passwd", "x" * 500):
            with pytest.raises(ConfigError, match="symbol") as refused:
                broker.order(symbol, "a")
            texts.append(str(refused.value))
        assert len(server.hits) == before
        # The DEX node is down: its URL is named without its password.
        with pytest.raises(VenueUnavailableError) as unreachable:
            open_broker("dex", settings)
        texts.append(str(unreachable.value))
        journal.close()

        client = TestClient(create_app(settings), raise_server_exceptions=False)  # no lifespan
        answers = [
            client.get(f"/api/v1/trading/{path}", params=params, headers=HEADERS)
            for path, params in (
                ("positions", {}),
                ("orders", {"limit": 1000}),
                ("journal", {"limit": 1000}),
                ("journal", {"limit": 10**9}),  # a huge page
                ("journal", {"after": 2**63}),
                ("orders", {"loop": "secrets' OR '1'='1"}),
                ("orders", {"loop": "../../../etc/passwd"}),
                ("positions", {"loop": "%00" + "x" * 200}),
            )
        ]
        answers.append(client.post("/api/v1/trading/stop", json={"reason": 1}, headers=HEADERS))
        answers.append(client.get("/api/v1/trading/orders"))  # no key
        statuses = [a.status_code for a in answers]
        assert statuses == [200, 200, 200, 422, 422, 200, 200, 422, 422, 401]
        assert answers[1].json()["orders"] and answers[2].json()["events"]
        assert answers[5].json()["orders"] == answers[6].json()["orders"] == []
        texts += [a.text for a in answers]
    logged = logs()
    assert_clean(*texts, _tables(journal_url), *logged)
    assert any("refused the exits" in line for line in logged)  # the loop did log its refusal
    # ccxt's debug lines carry the signed requests' key header: masked.
    assert any("'X-MBX-APIKEY': '***'" in line for line in logged)


def test_an_unreachable_journal_is_named_without_its_password(
    home: Path, logs: Callable[[], list[str]]
) -> None:
    settings = Settings(
        home=home,
        api_key=API_KEY,  # type: ignore[arg-type]
        model_reload_s=0,
        tracking=False,
        trade_journal_url=f"postgresql://tm:{JOURNAL_PASSWORD}@127.0.0.1:1/journal",
    )
    client = TestClient(create_app(settings), raise_server_exceptions=False)  # no lifespan
    answers = [
        client.get(f"/api/v1/trading/{path}", headers=HEADERS)
        for path in ("positions", "orders", "journal")
    ]
    answers.append(client.post("/api/v1/trading/stop", json={}, headers=HEADERS))
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert "trade journal postgresql://tm:***@127.0.0.1:1/journal" in answer.text
    assert_clean(*(a.text for a in answers), *logs())
