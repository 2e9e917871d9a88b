"""yahoo: the real yfinance client against a local chart API serving real SPY daily rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from tests.support.httpserver import Handler, LocalServer, Reply, local_http_server

from trademl.config import Settings
from trademl.data.sources import get_source
from trademl.data.sources.yahoo import reroute
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, SourceError
from trademl.testing import SourceCase, check_source

D1 = Timeframe.parse("1d")
NEW_YORK = "America/New_York"
COLUMNS = ["open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def spy(data_dir: Path) -> pd.DataFrame:
    """The real SPY daily rows, indexed by session date at 00:00 UTC."""
    frame = pd.read_csv(data_dir / "equities" / "SPY_1d.csv")
    frame.index = pd.DatetimeIndex(
        pd.to_datetime(frame.pop("timestamp"), utc=True), name="timestamp"
    )
    return frame.astype("float64")


def _session_open(days: pd.DatetimeIndex) -> np.ndarray:
    """Yahoo stamps a daily bar with its session's open, 09:30 New York, in epoch seconds."""
    local = days.tz_localize(None).tz_localize(NEW_YORK) + pd.Timedelta(hours=9, minutes=30)
    return local.as_unit("s").asi8


def chart_api(
    rows: pd.DataFrame,
    *,
    adjclose: Callable[[pd.DataFrame], np.ndarray] | None = None,
    null_row_after: pd.Timestamp | None = None,
) -> Handler:
    """A handler answering Yahoo's cookie, crumb and ``/v8/finance/chart/SPY`` from ``rows``.

    ``adjclose`` gives the adjusted closes (the closes by default); ``null_row_after`` adds a
    bar of nulls, as Yahoo sometimes sends, an hour after that session's open.
    """
    stamps = _session_open(pd.DatetimeIndex(rows.index))
    adjusted = adjclose(rows) if adjclose is not None else rows["close"].to_numpy()

    def meta() -> dict[str, object]:
        return {
            "currency": "USD",
            "symbol": "SPY",
            "exchangeName": "PCX",
            "instrumentType": "ETF",
            "firstTradeDate": int(stamps[0]),
            "gmtoffset": -18000,
            "timezone": "EST",
            "exchangeTimezoneName": NEW_YORK,
            "dataGranularity": "1d",
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "5y", "10y", "ytd", "max"],
        }

    def handle(path: str, query: dict[str, list[str]]) -> Reply:
        if path == "/":
            return Reply(200, b"", {"Set-Cookie": "A3=test; Path=/"})
        if path == "/v1/test/getcrumb":
            return Reply(200, b"local-crumb")
        if path != "/v8/finance/chart/SPY":
            return Reply(404, b'{"chart": {"result": null, "error": {"code": "Not Found"}}}')
        if "range" in query:  # yfinance's timezone probe: the latest bar
            chosen = np.arange(len(stamps))[-1:]
        else:
            first, last = int(query["period1"][0]), int(query["period2"][0])
            chosen = np.flatnonzero((stamps >= first) & (stamps < last))
        result: dict[str, object] = {"meta": meta()}
        if len(chosen) == 0:
            result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        else:
            times = [int(stamps[i]) for i in chosen]
            quote: dict[str, list[float | int | None]] = {
                c: [float(rows[c].iloc[i]) for i in chosen] for c in COLUMNS[:4]
            }
            quote["volume"] = [int(rows["volume"].iloc[i]) for i in chosen]
            adj: list[float | None] = [float(adjusted[i]) for i in chosen]
            if null_row_after is not None and null_row_after in rows.index[chosen]:
                at = list(rows.index[chosen]).index(null_row_after) + 1
                times.insert(at, times[at - 1] + 3600)
                for values in quote.values():
                    values.insert(at, None)
                adj.insert(at, None)
            result["timestamp"] = times
            result["indicators"] = {"quote": [quote], "adjclose": [{"adjclose": adj}]}
        body = {"chart": {"result": [result], "error": None}}
        return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    return handle


def _settings(settings: Settings, server: LocalServer) -> Settings:
    return settings.model_copy(update={"yahoo_url": server.url})


def _charts(server: LocalServer) -> list[dict[str, list[str]]]:
    return [
        parse_qs(urlsplit(r).query)
        for r in server.requests
        if urlsplit(r).path == "/v8/finance/chart/SPY"
    ]


def _window(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    return frame.loc[
        (frame.index >= pd.Timestamp(start, tz="UTC")) & (frame.index < pd.Timestamp(end, tz="UTC"))
    ]


def test_daily_values_and_utc_dates_match_the_file(spy: pd.DataFrame, settings: Settings) -> None:
    start, end = pd.Timestamp("2020-02-03", tz="UTC"), pd.Timestamp("2020-04-01", tz="UTC")
    expected = _window(spy, "2020-02-03", "2020-04-01")
    # A bar of nulls, as Yahoo emits now and then, must be dropped.
    with local_http_server(chart_api(spy, null_row_after=expected.index[5])) as server:
        frame = get_source("yahoo", _settings(settings, server)).fetch("SPY", D1, start, end)

    assert frame.index.equals(expected.index)  # session dates at 00:00 UTC, nulls dropped
    np.testing.assert_array_equal(frame.to_numpy(), expected[COLUMNS].to_numpy())
    periods = [q for q in _charts(server) if "period1" in q]
    assert len(periods) == 1
    assert periods[0]["interval"] == ["1d"]
    # yfinance asks from New York midnight of the first session date.
    assert int(periods[0]["period1"][0]) == int(pd.Timestamp("2020-02-03", tz=NEW_YORK).timestamp())


def test_clips_to_bounds_within_sessions(spy: pd.DataFrame, settings: Settings) -> None:
    start = pd.Timestamp("2019-06-03T12:00", tz="UTC")
    end = pd.Timestamp("2019-06-14T12:00", tz="UTC")
    with local_http_server(chart_api(spy)) as server:
        frame = get_source("yahoo", _settings(settings, server)).fetch("SPY", D1, start, end)
    expected = _window(spy, "2019-06-04", "2019-06-15")
    assert frame.index.equals(expected.index)
    np.testing.assert_array_equal(frame.to_numpy(), expected[COLUMNS].to_numpy())


def test_adjusted_prices_scale_by_adj_close(spy: pd.DataFrame, settings: Settings) -> None:
    def half_then_more(rows: pd.DataFrame) -> np.ndarray:
        return rows["close"].to_numpy() * np.linspace(0.5, 1.0, len(rows))

    with local_http_server(chart_api(spy, adjclose=half_then_more)) as server:
        source = get_source("yahoo:adjusted", _settings(settings, server))
        frame = source.fetch(
            "SPY", D1, pd.Timestamp("2018-03-01", tz="UTC"), pd.Timestamp("2018-04-02", tz="UTC")
        )

    positions = spy.index.get_indexer(frame.index)
    factor = np.linspace(0.5, 1.0, len(spy))[positions]
    expected = spy.iloc[positions]
    for column in ("open", "high", "low", "close"):
        np.testing.assert_allclose(
            frame[column].to_numpy(), expected[column].to_numpy() * factor, rtol=1e-12
        )
    np.testing.assert_array_equal(frame["volume"].to_numpy(), expected["volume"].to_numpy())


def test_empty_result_names_the_symbol(spy: pd.DataFrame, settings: Settings) -> None:
    with local_http_server(chart_api(spy)) as server:
        source = get_source("yahoo", _settings(settings, server))
        with pytest.raises(SourceError, match=r"yahoo: no 1d candles for SPY from 1990-01-01"):
            source.fetch(
                "SPY",
                D1,
                pd.Timestamp("1990-01-01", tz="UTC"),
                pd.Timestamp("1990-02-01", tz="UTC"),
            )


def test_unsupported_interval(settings: Settings) -> None:
    source = get_source("yahoo", settings)
    with pytest.raises(ConfigError, match=r"'4h' is not a Yahoo interval; supported: 1m, 2m, 5m"):
        source.fetch("SPY", Timeframe.parse("4h"))


def test_unknown_option(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'adjust'.*yahoo:adjusted"):
        get_source("yahoo:adjust", settings)


def test_reroute_keeps_path_and_query() -> None:
    assert reroute(
        "https://query2.finance.yahoo.com/v8/finance/chart/SPY?interval=1d", "http://h:1"
    ) == ("http://h:1/v8/finance/chart/SPY?interval=1d")


def test_conformance(spy: pd.DataFrame, settings: Settings) -> None:
    """The shipped source checks on the real SPY sessions of early 2021."""
    start, end = pd.Timestamp("2021-01-04", tz="UTC"), pd.Timestamp("2021-02-01", tz="UTC")
    with local_http_server(chart_api(spy)) as server:
        source = get_source("yahoo", _settings(settings, server))
        check_source(
            SourceCase(
                source,
                "SPY",
                "1d",
                start,
                end,
                expected=spy,
                empty=(pd.Timestamp("1990-01-01", tz="UTC"), pd.Timestamp("1990-02-01", tz="UTC")),
            )
        )
