"""ccxt:<exchange> against a local Binance-shaped server serving real BTCUSDT 1h klines."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from tests.support.httpserver import Handler, LocalServer, Reply, local_http_server

from trademl.config import Settings
from trademl.data.sources import get_source
from trademl.data.sources.ccxt_source import CcxtSource, rehost
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, SourceError
from trademl.testing import SourceCase, check_source

HOUR_MS = 3_600_000
H1 = Timeframe.parse("1h")

SPOT_MARKET = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "baseAsset": "BTC",
    "baseAssetPrecision": 8,
    "quoteAsset": "USDT",
    "quotePrecision": 8,
    "quoteAssetPrecision": 8,
    "orderTypes": ["LIMIT", "MARKET"],
    "isSpotTradingAllowed": True,
    "isMarginTradingAllowed": False,
    "permissions": ["SPOT"],
    "filters": [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01",
            "maxPrice": "1000000",
            "tickSize": "0.01",
        },
        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
    ],
}


def _json(payload: object, status: int = 200) -> Reply:
    return Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def btc(data_dir: Path) -> pd.DataFrame:
    """The real BTCUSDT 1h rows, indexed by bar start (UTC)."""
    frame = pd.read_csv(data_dir / "crypto" / "BTCUSDT_1h.csv")
    frame.index = pd.DatetimeIndex(
        pd.to_datetime(frame.pop("timestamp"), utc=True), name="timestamp"
    )
    return frame.astype("float64")


def binance(rows: pd.DataFrame, *, live_bar: bool = False, failures: int = 0) -> Handler:
    """A handler answering like Binance's public REST API from ``rows``.

    ``live_bar`` appends a bar that opened this hour (still forming); ``failures`` makes the
    first that many kline requests answer 503.
    """
    times = rows.index.as_unit("ms").asi8
    values = rows.loc[:, ["open", "high", "low", "close", "volume"]].to_numpy()
    if live_bar:
        now = int(time.time() * 1000) // HOUR_MS * HOUR_MS
        times = np.append(times, now)
        values = np.vstack([values, values[-1]])
    remaining = [failures]

    def handle(path: str, query: dict[str, list[str]]) -> Reply:
        if path == "/api/v3/exchangeInfo":
            return _json({"timezone": "UTC", "serverTime": 0, "symbols": [SPOT_MARKET]})
        if path in ("/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"):
            return _json({"timezone": "UTC", "serverTime": 0, "symbols": []})
        if path == "/api/v3/klines":
            if remaining[0] > 0:
                remaining[0] -= 1
                return Reply(503, b"Service Unavailable")
            if query["symbol"] != ["BTCUSDT"] or query["interval"] != ["1h"]:
                return _json({"code": -1121, "msg": "Invalid symbol."}, 400)
            start = int(query.get("startTime", ["0"])[0])
            end = int(query.get("endTime", [str(2**62)])[0])
            limit = int(query.get("limit", ["500"])[0])
            chosen = np.flatnonzero((times >= start) & (times <= end))[:limit]
            klines = [
                [int(times[i]), *(repr(float(v)) for v in values[i]), int(times[i]) + HOUR_MS - 1]
                for i in chosen
            ]
            for kline in klines:
                kline.extend(["0", 1, "0", "0", "0"])  # quote volume, trades, taker volumes
            return _json(klines)
        return Reply(404, b"not found")

    return handle


@pytest.fixture
def server(btc: pd.DataFrame) -> Iterator[LocalServer]:
    with local_http_server(binance(btc)) as state:
        yield state


def _settings(settings: Settings, server: LocalServer, **extra: object) -> Settings:
    return settings.model_copy(update={"ccxt_api_url": server.url, **extra})


def _klines(server: LocalServer) -> list[dict[str, list[str]]]:
    return [
        parse_qs(urlsplit(r).query) for r in server.requests if urlsplit(r).path == "/api/v3/klines"
    ]


def _expected(btc: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return btc.loc[(btc.index >= start) & (btc.index < end)]


def _assert_rows(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(frame) == len(expected) > 0
    assert frame.index.equals(expected.index)
    for column in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(frame[column].to_numpy(), expected[column].to_numpy())


def test_pages_through_history_with_the_real_ccxt_client(
    btc: pd.DataFrame, server: LocalServer, settings: Settings
) -> None:
    start, end = btc.index[20_000], btc.index[21_200]
    source = get_source("ccxt:binance", _settings(settings, server))

    frame = source.fetch("BTC/USDT", H1, start, end)

    _assert_rows(frame, _expected(btc, start, end))
    assert frame.attrs == {"symbol": "BTC/USDT", "timeframe": "1h"}
    pages = _klines(server)
    # 1200 bars in pages of Binance's default 500: three requests, each after the last bar.
    assert len(pages) == 3
    assert [int(p["startTime"][0]) for p in pages] == [
        start.value // 10**6,
        btc.index[20_499].value // 10**6 + HOUR_MS,
        btc.index[20_999].value // 10**6 + HOUR_MS,
    ]
    assert {p["limit"][0] for p in pages} == {"500"}


def test_page_size_and_exchange_id_symbols(
    btc: pd.DataFrame, server: LocalServer, settings: Settings
) -> None:
    start, end = btc.index[30_000], btc.index[30_250]
    source = CcxtSource(_settings(settings, server), "binance", limit=100)

    frame = source.fetch("BTCUSDT", H1, start, end)

    _assert_rows(frame, _expected(btc, start, end))
    assert frame.attrs["symbol"] == "BTCUSDT"
    pages = _klines(server)
    assert len(pages) == 3
    assert {p["limit"][0] for p in pages} == {"100"}


def test_clips_to_unaligned_bounds(
    btc: pd.DataFrame, server: LocalServer, settings: Settings
) -> None:
    start = btc.index[40_000] + pd.Timedelta(minutes=30)
    end = btc.index[40_010] + pd.Timedelta(minutes=30)
    source = get_source("ccxt:binance", _settings(settings, server))

    frame = source.fetch("BTC/USDT", H1, start, end)

    assert frame.index[0] == btc.index[40_001]
    assert frame.index[-1] == btc.index[40_010]
    _assert_rows(frame, _expected(btc, start, end))


def test_runs_to_the_present_and_drops_the_open_bar(btc: pd.DataFrame, settings: Settings) -> None:
    with local_http_server(binance(btc, live_bar=True)) as server:
        source = get_source("ccxt:binance", _settings(settings, server))
        frame = source.fetch("BTC/USDT", H1, btc.index[-5])

    _assert_rows(frame, btc.iloc[-5:])
    # The page held the five closed bars and this hour's bar, which is then left out.
    assert len(_klines(server)) == 1


def test_stops_at_the_end_of_the_data(
    btc: pd.DataFrame, server: LocalServer, settings: Settings
) -> None:
    source = get_source("ccxt:binance", _settings(settings, server))

    frame = source.fetch("BTC/USDT", H1, btc.index[-3])

    _assert_rows(frame, btc.iloc[-3:])
    assert len(_klines(server)) == 2  # the rows, then an empty page


def test_retries_network_errors(btc: pd.DataFrame, settings: Settings) -> None:
    start, end = btc.index[50_000], btc.index[50_010]
    with local_http_server(binance(btc, failures=2)) as server:
        source = CcxtSource(
            _settings(settings, server, http_retries=2), "binance", retry_delay_s=0.01
        )
        frame = source.fetch("BTC/USDT", H1, start, end)
    _assert_rows(frame, _expected(btc, start, end))
    assert len(_klines(server)) == 3


def test_gives_up_after_the_retries(btc: pd.DataFrame, settings: Settings) -> None:
    with local_http_server(binance(btc, failures=10)) as server:
        source = CcxtSource(
            _settings(settings, server, http_retries=1), "binance", retry_delay_s=0.01
        )
        with pytest.raises(
            SourceError, match=r"ccxt:binance: fetching 1h candles of BTC/USDT failed after 2"
        ):
            source.fetch("BTC/USDT", H1, btc.index[0], btc.index[10])


def test_no_candles_in_range_is_an_error(
    btc: pd.DataFrame, server: LocalServer, settings: Settings
) -> None:
    source = get_source("ccxt:binance", _settings(settings, server))
    with pytest.raises(SourceError, match=r"no closed 1h candles of BTC/USDT"):
        source.fetch(
            "BTC/USDT",
            H1,
            pd.Timestamp("2010-01-01", tz="UTC"),
            pd.Timestamp("2010-01-02", tz="UTC"),
        )


def test_unsupported_timeframe(settings: Settings) -> None:
    source = get_source("ccxt:binance", settings)
    with pytest.raises(
        ConfigError, match=r"timeframe '10m' is not offered by binance; supported: 1s, 1m, 3m"
    ):
        source.fetch("BTC/USDT", Timeframe.parse("10m"))


def test_unknown_exchange(settings: Settings) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown ccxt exchange 'binanse'; did you mean 'binance'"
    ):
        get_source("ccxt:binanse", settings)


def test_exchange_must_be_named(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"ccxt:<exchange>, e\.g\. ccxt:binance"):
        get_source("ccxt", settings)


def test_bad_symbol(server: LocalServer, settings: Settings) -> None:
    source = get_source("ccxt:binance", _settings(settings, server))
    with pytest.raises(
        ConfigError, match=r"ccxt:binance: unknown symbol 'BTC/USDX'; did you mean 'BTC/USDT'"
    ):
        source.fetch("BTC/USDX", H1)
    assert _klines(server) == []


def test_rehost_keeps_paths_in_nested_urls() -> None:
    urls = {"public": "https://api.x.com/api/v3", "v2": {"a": "https://b.x.com/v2?q=1"}, "n": 3}
    assert rehost(urls, "http://127.0.0.1:1/proxy/") == {
        "public": "http://127.0.0.1:1/proxy/api/v3",
        "v2": {"a": "http://127.0.0.1:1/proxy/v2?q=1"},
        "n": 3,
    }


def test_conformance(btc: pd.DataFrame, server: LocalServer, settings: Settings) -> None:
    """The shipped source checks through the real ccxt client against the local exchange."""
    source = get_source("ccxt:binance", _settings(settings, server))
    check_source(
        SourceCase(source, "BTC/USDT", "1h", btc.index[20_000], btc.index[20_300], expected=btc)
    )
