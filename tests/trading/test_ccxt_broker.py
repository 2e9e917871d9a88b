"""ccxt:binance against a local Binance spot server: real ccxt code, signed requests, real BTCUSDT
prices from the shared data driving the matching engine."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from loguru import logger
from pydantic import SecretStr
from tests.support.binance_market import Market
from tests.support.binance_server import BinanceSpotServer, binance_spot_server
from tests.support.binance_spot import SpotExchange

from trademl.config import Settings
from trademl.errors import ConfigError, OrderRejectedError, TradingError, VenueUnavailableError
from trademl.trading.broker import Broker, OcoBroker, OrderRequest
from trademl.trading.ccxt_broker import CcxtBroker

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
OTHER_KEY = "q8TfB2nLxW0cRz5YhKj3UeVa9sDm4GoP7iXt1NbQ6lCw"
ORDER = "/api/v3/order"


@pytest.fixture(scope="module")
def closes(data_dir: Path) -> list[Decimal]:
    """The last two days of real BTCUSDT 1h closes, as the venue's price path."""
    frame = pd.read_csv(data_dir / "crypto" / "BTCUSDT_1h.csv", usecols=["close"], dtype=str)
    return [Decimal(value) for value in frame["close"].iloc[-48:]]


def _exchange(closes: list[Decimal], btc: str = "0.5") -> SpotExchange:
    markets = [Market("BTCUSDT", "BTC", "USDT", min_notional=Decimal("10"))]
    markets.append(Market("ETHUSDT", "ETH", "USDT"))
    balances = {"USDT": Decimal("10000"), "BTC": Decimal(btc)}
    prices = {"BTCUSDT": closes[0], "ETHUSDT": Decimal("3200")}
    return SpotExchange(markets, balances, prices)


@pytest.fixture
def venue(closes: list[Decimal]) -> Iterator[BinanceSpotServer]:
    with binance_spot_server(_exchange(closes), API_KEY, API_SECRET) as server:
        yield server


def _settings(home: Path, server: BinanceSpotServer, **extra: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "exchange_api_key": API_KEY,
        "exchange_api_secret": API_SECRET,
        "exchange_api_url": server.url,
        "http_timeout_s": 2.0,
        "http_retries": 2,
        "exchange_recv_window_s": 0.6,
    }
    return Settings(**{**values, **extra})  # type: ignore[arg-type]


@pytest.fixture
def connect(home: Path, venue: BinanceSpotServer) -> Callable[..., CcxtBroker]:
    """A new broker on the local venue (a restarted process is a new one)."""

    def make(**extra: object) -> CcxtBroker:
        return CcxtBroker.from_settings("binance", _settings(home, venue, **extra))

    return make


def _market(client_id: str, side: str = "buy", quantity: float = 0.01) -> OrderRequest:
    return OrderRequest(client_id, "BTCUSDT", side, "market", quantity)  # type: ignore[arg-type]


def test_market_order_fills_at_the_venue_price_and_is_idempotent(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker], closes: list[Decimal]
) -> None:
    broker = connect()
    assert isinstance(broker, Broker) and isinstance(broker, OcoBroker)
    assert broker.capabilities.oco and broker.capabilities.stop_orders
    assert broker.exchange.enableRateLimit

    order = broker.submit(_market("entry-1"))
    again = broker.submit(_market("entry-1"))

    price = float(closes[0])
    assert (order.status, order.filled, order.average_price) == ("filled", 0.01, price)
    assert again == order
    assert len(venue.calls("POST", ORDER)) == 1 and len(venue.exchange.orders) == 1
    assert venue.calls("POST", ORDER)[0].params["newClientOrderId"] == "entry-1"
    balances = {b.asset: b for b in broker.balances()}
    assert balances["USDT"].free == pytest.approx(10_000 - 0.01 * price)
    assert balances["BTC"].free == pytest.approx(0.5 + 0.01 * 0.999)  # fee in BTC
    (fill,) = broker.fills("BTCUSDT")
    assert (fill.client_id, fill.side, fill.quantity, fill.price) == ("entry-1", "buy", 0.01, price)
    assert fill.fee == pytest.approx(0.01 * 0.001 * price)
    assert broker.fills("BTCUSDT", since=fill.time + pd.Timedelta("1ms")) == []
    # Trades are final: the second look asks only for those after the last one seen.
    assert [h.params["fromId"] for h in venue.calls("GET", "/api/v3/myTrades")] == ["0", "2"]


def test_fills_page_through_a_long_history(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker]
) -> None:
    broker = connect()
    broker.submit(_market("entry-p"))
    (first,) = venue.exchange.trades
    venue.exchange.trades += [{**first, "id": i} for i in range(2, 2502)]
    fills = broker.fills("BTCUSDT")
    assert len(fills) == 2501 and {f.client_id for f in fills} == {"entry-p"}
    assert len({f.fill_id for f in fills}) == 2501
    assert [h.params["fromId"] for h in venue.calls("GET", "/api/v3/myTrades")] == [
        "0",
        "1001",
        "2001",
    ]


def test_limit_order_fills_partially_as_the_price_moves(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker], closes: list[Decimal]
) -> None:
    broker = connect()
    venue.exchange.fill_limit = Decimal("0.004")
    limit = sorted(closes[1:])[5]  # the real path trades through it six times or more
    order = broker.submit(OrderRequest("bid-1", "BTCUSDT", "buy", "limit", 0.01, float(limit)))
    assert order.status == "new" and broker.open_orders("BTCUSDT") == [order]

    seen = []
    for close in closes[1:]:
        venue.exchange.set_price("BTCUSDT", close)
        if close <= limit:
            state = broker.order("BTCUSDT", "bid-1")
            assert state is not None
            seen.append((state.status, round(state.filled, 8)))
        if len(seen) == 3:
            break
    assert seen == [("partially_filled", 0.004), ("partially_filled", 0.008), ("filled", 0.01)]
    fills = broker.fills("BTCUSDT")
    assert [f.quantity for f in fills] == [0.004, 0.004, 0.002]
    assert {f.price for f in fills} == {float(limit)} and {f.client_id for f in fills} == {"bid-1"}
    assert broker.open_orders() == []

    # A market order meeting too little liquidity fills what there is and expires.
    venue.exchange.fill_limit = Decimal("0.003")
    thin = broker.submit(_market("thin-1", "sell"))
    assert (thin.status, thin.filled) == ("expired", 0.003)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (OrderRequest("big-1", "BTCUSDT", "buy", "market", 5.0), "insufficient balance"),
        (OrderRequest("lot-1", "BTCUSDT", "buy", "market", 0.00005), "LOT_SIZE"),
        (OrderRequest("not-1", "BTCUSDT", "buy", "market", 0.0001), "NOTIONAL"),
        (OrderRequest("px-1", "BTCUSDT", "sell", "limit", 0.01, 2_000_000.0), "PRICE_FILTER"),
        (OrderRequest("stp-1", "BTCUSDT", "sell", "stop", 0.01, None, 1e6 - 1), "trigger immed"),
    ],
)
def test_refused_orders_raise_with_the_venue_reason_and_change_nothing(
    venue: BinanceSpotServer,
    connect: Callable[..., CcxtBroker],
    request_: OrderRequest,
    reason: str,
) -> None:
    broker = connect()
    before = broker.balances()
    with pytest.raises(OrderRejectedError, match=reason):
        broker.submit(request_)
    assert venue.exchange.orders == {} and broker.balances() == before
    assert len(venue.calls("POST", ORDER)) == 1  # refused once, never resent


def test_requests_are_signed_on_the_venue_clock(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker]
) -> None:
    # The venue's clock runs 3 s ahead, five times the recv window: requests stamped with this
    # machine's clock would all be refused (-1021).
    venue.clock_offset_ms = 3000
    order = connect().submit(_market("entry-clock"))
    assert order.status == "filled"
    assert {hit.status for hit in venue.calls("POST", ORDER)} == {200}


def test_429_waits_the_retry_after_the_venue_asks(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker]
) -> None:
    broker = connect()
    venue.inject("POST", ORDER, "throttle", seconds=1)
    order = broker.submit(_market("entry-429"))
    first, second = venue.calls("POST", ORDER)
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0
    assert order.status == "filled" and len(venue.exchange.orders) == 1

    broker.calls.max_rate_wait_s = 5.0
    venue.inject("GET", "/api/v3/account", "throttle", seconds=120)
    with pytest.raises(VenueUnavailableError, match=r"rate limited.*120 s"):
        broker.balances()
    assert len(venue.calls("GET", "/api/v3/account")) == 1  # gave up at once, no hammering


@pytest.mark.parametrize("fault", ["delay_after", "drop_after"])
def test_no_answer_after_the_venue_took_the_order_finds_it_by_client_id(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker], fault: str
) -> None:
    broker = connect(http_timeout_s=0.4)
    venue.inject("POST", ORDER, fault, seconds=1.0)  # type: ignore[arg-type]
    order = broker.submit(_market("entry-t"))
    assert order.status == "filled" and order.request.client_id == "entry-t"
    assert len(venue.exchange.orders) == 1 and len(venue.calls("POST", ORDER)) == 1
    assert len(venue.exchange.trades) == 1


def test_a_request_that_arrives_too_late_is_refused_and_sent_once_more(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker]
) -> None:
    # The first request is stuck in the network past the recv window: the venue refuses it
    # when it finally arrives, and the broker, having waited that window out, sent it again.
    broker = connect(http_timeout_s=0.4)
    venue.inject("POST", ORDER, "delay_before", seconds=1.0)
    order = broker.submit(_market("entry-late"))
    assert order.status == "filled"
    time.sleep(0.7)  # let the stale request reach the engine
    first, second = venue.calls("POST", ORDER)
    assert first.status == 400 and second.status == 200
    assert len(venue.exchange.orders) == 1 and len(venue.exchange.trades) == 1


def test_a_new_broker_reconciles_orders_and_fills_by_client_id(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker], closes: list[Decimal]
) -> None:
    before = connect()
    before.submit(_market("entry-r"))
    target = OrderRequest("target-r", "BTCUSDT", "sell", "limit", 0.01, float(closes[0] + 500))
    stop = OrderRequest("stop-r", "BTCUSDT", "sell", "stop", 0.01, None, float(closes[0] - 500))
    before.submit(target)
    before.submit(stop)
    del before

    after = connect()  # a restarted process: nothing in memory
    posts = len(venue.calls("POST", ORDER))
    assert {o.request for o in after.open_orders()} == {target, stop}
    entry = after.order("BTCUSDT", "entry-r")
    assert entry is not None and entry.status == "filled"
    assert after.submit(_market("entry-r")) == entry  # resubmitting after a restart: no order
    assert len(venue.calls("POST", ORDER)) == posts
    assert [f.client_id for f in after.fills("BTCUSDT")] == ["entry-r"]
    (position,) = after.positions()
    assert position.average_price == float(closes[0])
    assert position.quantity == pytest.approx(0.5 + 0.01 * 0.999)
    assert after.order("BTCUSDT", "never-sent") is None

    canceled = after.cancel("BTCUSDT", "target-r")
    assert canceled.status == "canceled" and canceled.request == target
    assert after.cancel("BTCUSDT", "target-r") == canceled  # closed: returned as it is
    with pytest.raises(TradingError, match="no order with client id 'never-sent'"):
        after.cancel("BTCUSDT", "never-sent")


def test_stop_and_target_as_one_oco_list(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker], closes: list[Decimal]
) -> None:
    broker = connect()
    high = max(closes[1:])
    stop = OrderRequest("oco-stop", "BTCUSDT", "sell", "stop", 0.2, None, float(min(closes) - 1))
    target = OrderRequest("oco-tgt", "BTCUSDT", "sell", "limit", 0.2, float(high - 1))
    placed = broker.submit_oco(stop, target)
    assert [o.status for o in placed] == ["new", "new"]
    assert broker.submit_oco(stop, target) == placed  # known: not sent again
    assert len(venue.calls("POST", "/api/v3/orderList/oco")) == 1
    assert len(venue.exchange.lists) == 1
    assert {o.request.client_id for o in broker.open_orders("BTCUSDT")} == {"oco-stop", "oco-tgt"}

    for close in closes[1:]:
        venue.exchange.set_price("BTCUSDT", close)
    done_stop, done_target = broker.order("BTCUSDT", "oco-stop"), broker.order("BTCUSDT", "oco-tgt")
    assert done_target is not None and done_target.status == "filled"
    assert done_stop is not None and done_stop.status == "expired"
    assert broker.open_orders() == []
    with pytest.raises(ConfigError, match="same symbol, side and quantity"):
        broker.submit_oco(stop, OrderRequest("x", "BTCUSDT", "sell", "limit", 0.1, 70_000.0))


def test_oco_after_a_timeout_is_placed_once(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker], closes: list[Decimal]
) -> None:
    broker = connect(http_timeout_s=0.4)
    venue.inject("POST", "/api/v3/orderList/oco", "delay_after", seconds=1.0)
    stop = OrderRequest("t-stop", "BTCUSDT", "sell", "stop", 0.1, None, float(closes[0] - 900))
    target = OrderRequest("t-tgt", "BTCUSDT", "sell", "limit", 0.1, float(closes[0] + 900))
    legs = broker.submit_oco(stop, target)
    assert [leg.request.client_id for leg in legs] == ["t-stop", "t-tgt"]
    assert len(venue.exchange.lists) == 1 and len(venue.exchange.orders) == 2


def test_secrets_stay_out_of_errors_and_logs(
    home: Path, venue: BinanceSpotServer, caplog: pytest.LogCaptureFixture
) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    caplog.set_level(logging.DEBUG)  # ccxt logs every request's headers at DEBUG
    try:
        # A copy of settings skips validation (and its registering of secrets): the broker
        # registers the keys it is given itself.
        other = {
            "exchange_api_key": SecretStr(OTHER_KEY),
            "exchange_api_secret": SecretStr("x" * 64),
        }
        wrong = CcxtBroker.from_settings("binance", _settings(home, venue).model_copy(update=other))
        with pytest.raises(ConfigError, match="refused the keys") as refused:
            wrong.balances()
        broker = CcxtBroker.from_settings(
            "binance", _settings(home, venue, http_timeout_s=0.3, http_retries=1)
        )
        venue.inject("GET", "/api/v3/account", "delay_after", seconds=0.6, count=2)
        with pytest.raises(VenueUnavailableError) as unanswered:
            broker.balances()
        with pytest.raises(OrderRejectedError) as rejected:
            broker.submit(_market("big", quantity=5.0))
    finally:
        logger.remove(sink)
    assert venue.calls("GET", "/api/v3/account")[0].headers["x-mbx-apikey"] == OTHER_KEY
    assert any("X-MBX-APIKEY" in record.getMessage() for record in caplog.records)
    texts = [str(refused.value), str(unanswered.value), str(rejected.value), caplog.text]
    texts += [*lines, repr(broker), repr(broker.__dict__), str(_settings(home, venue))]
    for text in texts:
        for secret in (API_KEY, API_SECRET, OTHER_KEY, "x" * 64):
            assert secret not in text


@pytest.mark.parametrize(
    "client_id", ["../../etc/passwd", "a" * 37, "id;DROP TABLE", "ïd", "", "x y", None]
)
def test_hostile_client_ids_are_refused_before_any_request(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker], client_id: str
) -> None:
    broker = connect()
    with pytest.raises(ConfigError, match="client_id"):
        broker.order("BTCUSDT", client_id)
    with pytest.raises(ConfigError, match="client_id"):
        broker.cancel("BTCUSDT", client_id)
    if client_id is not None:
        with pytest.raises(ConfigError, match="client_id"):
            OrderRequest(client_id, "BTCUSDT", "buy", "market", 1.0)
    assert venue.hits == []


@pytest.mark.parametrize(
    "symbol", ["BTC/USDT", "btcusdt", "BTCUSDT&signature=0", "B" * 40, "../exchangeInfo", ""]
)
def test_hostile_symbols_are_refused_before_any_request(
    venue: BinanceSpotServer, connect: Callable[..., CcxtBroker], symbol: str
) -> None:
    broker = connect()
    for call in (
        lambda: broker.submit(OrderRequest("ok-1", symbol, "buy", "market", 0.01)),
        lambda: broker.order(symbol, "ok-1"),
        lambda: broker.fills(symbol),
        lambda: broker.open_orders(symbol),
    ):
        with pytest.raises(ConfigError, match="symbol"):
            call()
    assert venue.hits == []
    with pytest.raises(ConfigError, match="no spot market 'DOGEUSDT'"):
        broker.order("DOGEUSDT", "ok-1")
    # Only the markets and the venue's clock were asked for, no order.
    assert {hit.path for hit in venue.hits} == {"/api/v3/exchangeInfo", "/api/v3/time"}


@pytest.mark.parametrize(
    ("exchange", "extra", "message"),
    [
        ("binance", {"exchange_api_url": "https://api.binance.com"}, "exchange_allow_live"),
        ("binance", {"exchange_api_url": None, "exchange_sandbox": False}, "exchange_allow_live"),
        ("kraken", {"exchange_api_url": None}, "no sandbox"),
        ("binance;rm", {}, "unknown ccxt exchange"),
        ("binance", {"exchange_api_key": None}, "exchange_api_key and exchange_api_secret"),
    ],
)
def test_live_endpoints_and_bad_exchanges_are_refused(
    home: Path,
    venue: BinanceSpotServer,
    exchange: str,
    extra: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        CcxtBroker.from_settings(exchange, _settings(home, venue, **extra))
    assert venue.hits == []


def test_sandbox_mode_points_at_the_testnet(home: Path, venue: BinanceSpotServer) -> None:
    broker = CcxtBroker.from_settings("binance", _settings(home, venue, exchange_api_url=None))
    assert broker.exchange.urls["api"]["private"].startswith("https://testnet.binance.vision/")
    with pytest.raises(ConfigError, match="exchange_allow_live"):
        CcxtBroker.from_settings(
            "binance", _settings(home, venue, exchange_api_url=None, exchange_sandbox=False)
        )
    live = _settings(
        home, venue, exchange_api_url=None, exchange_sandbox=False, exchange_allow_live=True
    )
    assert (
        CcxtBroker.from_settings("binance", live)
        .exchange.urls["api"]["private"]
        .startswith("https://api.binance.com/")
    )
