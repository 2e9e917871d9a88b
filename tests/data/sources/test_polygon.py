"""The Polygon source against a local server answering like the aggregates API, with real bars."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
import pytest
from pydantic import SecretStr
from tests.support.httpserver import LocalServer, Reply, local_http_server

from trademl.config import Settings
from trademl.data.sources.base import get_source
from trademl.data.sources.polygon import PolygonSource, polygon_range
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, NotFoundError, SourceError
from trademl.testing import SourceCase, check_source

KEY = "pk-test-5f2c9a1e"
START = pd.Timestamp("2024-07-01", tz="UTC")
END = pd.Timestamp("2024-07-04", tz="UTC")
AGGS = f"/v2/aggs/ticker/X:BTCUSD/range/1/hour/{START.value // 10**6}/{END.value // 10**6 - 1}"


@pytest.fixture(scope="module")
def candles(data_dir: Path) -> pd.DataFrame:
    """Real BTCUSDT hourly candles of 2024-07-01 to 2024-07-03."""
    frame = pd.read_csv(data_dir / "crypto" / "BTCUSDT_1h.csv", index_col="timestamp")
    stamps = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True), name="timestamp")
    frame.index = stamps.as_unit("ns")
    frame = frame.astype("float64")
    return frame[(frame.index >= START) & (frame.index < END)]


def bars(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Polygon aggregate bars (``t`` in ms) of ``frame``."""
    return [
        {"t": stamp.value // 10**6, "o": row.open, "h": row.high, "l": row.low, "c": row.close,
         "v": row.volume, "vw": row.close, "n": 100}
        for stamp, row in zip(frame.index, frame.itertuples(), strict=True)
    ]  # fmt: skip


def json_reply(body: object, status: int = 200) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def make_source(server: LocalServer, key: str | None = KEY) -> PolygonSource:
    settings = Settings(
        home=Path("/nonexistent"),
        polygon_url=server.url,
        polygon_api_key=SecretStr(key) if key else None,
        http_retries=0,
    )
    return PolygonSource(settings)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with local_http_server() as state:
        yield state


def test_pages_are_followed_through_next_url(server: LocalServer, candles: pd.DataFrame) -> None:
    pages = [bars(candles.iloc[:30]), bars(candles.iloc[30:60]), bars(candles.iloc[60:])]

    def handler(path: str, query: dict[str, list[str]]) -> Reply:
        assert unquote(path) == AGGS
        page = int(query.get("cursor", ["0"])[0])
        body: dict[str, Any] = {
            "status": "OK",
            "resultsCount": len(pages[page]),
            "results": pages[page],
        }
        if page + 1 < len(pages):
            body["next_url"] = f"{server.url}{AGGS}?cursor={page + 1}"
        return json_reply(body)

    server.handler = handler
    frame = make_source(server).fetch("x:btcusd", "1h", START, END)

    pd.testing.assert_frame_equal(frame, candles, check_exact=True)
    queries = [parse_qs(urlsplit(request).query) for request in server.requests]
    assert [query.get("cursor") for query in queries] == [None, ["1"], ["2"]]
    assert all(query["apiKey"] == [KEY] for query in queries)
    assert queries[0]["adjusted"] == ["true"]
    assert queries[0]["sort"] == ["asc"]
    assert queries[0]["limit"] == ["50000"]


def test_an_api_key_is_required(server: LocalServer) -> None:
    with pytest.raises(ConfigError, match="TRADEML_POLYGON_API_KEY"):
        make_source(server, key=None)
    settings = Settings(home=Path("/nonexistent"), polygon_api_key=None)
    with pytest.raises(ConfigError, match="TRADEML_POLYGON_API_KEY"):
        get_source("polygon", settings)
    assert server.requests == []


def test_error_status_is_reported_without_the_key(server: LocalServer) -> None:
    server.routes[AGGS] = json_reply(
        {"status": "ERROR", "error": "Unknown API Key", "request_id": "r1"}
    )

    with pytest.raises(SourceError, match="status ERROR: Unknown API Key") as caught:
        make_source(server).fetch("X:BTCUSD", "1h", START, END)
    assert KEY not in str(caught.value)


def test_http_error_never_leaks_the_key(server: LocalServer) -> None:
    # Even a server that echoes the key in its error body does not get it into the message.
    server.routes[AGGS] = json_reply(
        {"status": "NOT_AUTHORIZED", "message": f"key {KEY} is not entitled to this data"}, 403
    )

    with pytest.raises(SourceError, match=r"HTTP 403 .*key \*\*\* is not entitled") as caught:
        make_source(server).fetch("X:BTCUSD", "1h", START, END)
    assert KEY not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_empty_result_is_a_clear_error(server: LocalServer) -> None:
    server.handler = lambda path, query: json_reply({"status": "OK", "resultsCount": 0})

    with pytest.raises(NotFoundError, match=r"no 1d bars for 'NOPE' between 2024-07-01"):
        make_source(server).fetch("nope", "1d", START, END)


@pytest.mark.parametrize(
    ("timeframe", "expected"),
    [
        ("1m", (1, "minute")),
        ("15m", (15, "minute")),
        ("90m", (90, "minute")),
        ("1h", (1, "hour")),
        ("4h", (4, "hour")),
        ("1d", (1, "day")),
        ("3d", (3, "day")),
        ("1w", (1, "week")),
    ],
)
def test_timeframes_map_to_polygon_ranges(timeframe: str, expected: tuple[int, str]) -> None:
    assert polygon_range(Timeframe.parse(timeframe)) == expected


def test_sub_minute_timeframe_is_refused() -> None:
    with pytest.raises(ConfigError, match="'30s' is shorter than a minute"):
        polygon_range(Timeframe.parse("30s"))


def test_a_next_url_loop_is_an_error(server: LocalServer, candles: pd.DataFrame) -> None:
    server.handler = lambda path, query: json_reply(
        {
            "status": "OK",
            "results": bars(candles.iloc[:2]),
            "next_url": f"{server.url}{AGGS}?cursor=x",
        }
    )

    with pytest.raises(SourceError, match="next_url repeats itself"):
        make_source(server).fetch("X:BTCUSD", "1h", START, END)
    assert len(server.requests) == 2


def test_daily_stock_bars_are_labelled_with_the_session_date(
    server: LocalServer, data_dir: Path
) -> None:
    # Polygon starts a stock's daily bar at New York midnight (04:00 or 05:00 UTC).
    spy = pd.read_csv(data_dir / "equities" / "SPY_1d.csv", index_col="timestamp").iloc[-30:]
    dates = pd.DatetimeIndex(pd.to_datetime(spy.index, utc=True))
    ny_midnight = dates.tz_localize(None).tz_localize("America/New_York").tz_convert("UTC")
    body = [
        {
            "t": stamp.value // 10**6,
            "o": r.open,
            "h": r.high,
            "l": r.low,
            "c": r.close,
            "v": r.volume,
        }
        for stamp, r in zip(ny_midnight, spy.itertuples(), strict=True)
    ]
    server.handler = lambda path, query: json_reply({"status": "OK", "results": body})
    got = make_source(server).fetch("SPY", "1d", dates[0], dates[-1] + pd.Timedelta(days=1))
    assert got.index.equals(dates.as_unit("ns").rename("timestamp"))
    assert got["close"].tolist() == spy["close"].tolist()


def test_conformance(server: LocalServer, candles: pd.DataFrame) -> None:
    """The shipped source checks against a server answering every range from the real bars."""

    def handler(path: str, query: dict[str, list[str]]) -> Reply:
        first, last = (int(part) for part in unquote(path).rsplit("/", 2)[1:])
        stamps = candles.index.asi8 // 10**6
        rows = candles[(stamps >= first) & (stamps <= last)]
        return json_reply({"status": "OK", "resultsCount": len(rows), "results": bars(rows)})

    server.handler = handler
    check_source(
        SourceCase(
            make_source(server),
            "X:BTCUSD",
            "1h",
            START,
            END,
            expected=candles,
            empty=(START - pd.Timedelta(days=30), START - pd.Timedelta(days=29)),
        )
    )
