"""Polygon.io aggregates (``/v2/aggs``): stocks, crypto (``X:BTCUSD``) and forex (``C:EURUSD``).

Needs an API key (``TRADEML_POLYGON_API_KEY``). A response holds at most ``limit`` bars and
points at the rest with ``next_url``, which is followed (with the key added) until absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd

from trademl.config import Settings
from trademl.data.candles import make_candles, validate_candles, with_meta
from trademl.data.sources.base import SOURCES, Source, clip_range, parse_time
from trademl.data.sources.http import HttpClient
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, NotFoundError, SourceError
from trademl.redact import redact

DEFAULT_START = pd.Timestamp("2000-01-01", tz="UTC")
"""Start of a fetch given none (older than any Polygon plan's history)."""

_TIMESPANS: tuple[tuple[str, int], ...] = (
    ("week", 604_800),
    ("day", 86_400),
    ("hour", 3_600),
    ("minute", 60),
)
_OK_STATUSES = {"OK", "DELAYED"}
_PAGE_LIMIT = 50_000


def polygon_range(timeframe: Timeframe) -> tuple[int, str]:
    """Polygon's ``(multiplier, timespan)`` of ``timeframe``: ``4h`` → ``(4, 'hour')``.

    Examples
    --------
    >>> polygon_range(Timeframe.parse("15m"))
    (15, 'minute')
    """
    for timespan, seconds in _TIMESPANS:
        if timeframe.seconds % seconds == 0:
            return timeframe.seconds // seconds, timespan
    raise ConfigError(
        f"timeframe {timeframe.name!r} is shorter than a minute; Polygon aggregates are served "
        "in minutes, hours, days and weeks"
    )


class PolygonSource:
    """Candles from Polygon's aggregates endpoint.

    Parameters
    ----------
    settings:
        ``polygon_url``, ``polygon_api_key`` and the ``http_*`` knobs.
    now:
        The default end of a fetch (tests pin it); defaults to the UTC time.

    Raises
    ------
    ConfigError
        When no API key is set.
    """

    name = "polygon"

    def __init__(
        self, settings: Settings, *, now: Callable[[], pd.Timestamp] | None = None
    ) -> None:
        key = settings.polygon_api_key.get_secret_value() if settings.polygon_api_key else ""
        if not key.strip():
            raise ConfigError(
                "the polygon source needs an API key: set TRADEML_POLYGON_API_KEY "
                "(environment or .env)"
            )
        self.settings = settings
        self.root = settings.polygon_url.rstrip("/")
        self._key = key.strip()
        self._now = now or (lambda: pd.Timestamp.now(tz="UTC"))

    def fetch(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles of ticker ``symbol`` with ``start <= timestamp < end``, validated.

        Raises
        ------
        NotFoundError
            When Polygon returns no bars for the ticker in the range.
        SourceError
            On an error status or a network failure (the API key is never in the message).
        """
        timeframe = Timeframe.parse(timeframe)
        multiplier, timespan = polygon_range(timeframe)
        ticker = symbol.strip().upper()
        first = parse_time(start, argument="start") or DEFAULT_START
        stop = parse_time(end, argument="end") or self._now()
        if first >= stop:
            raise ConfigError(f"start {first} must be before end {stop}")
        # Millisecond bounds keep intraday ranges exact; Polygon's `to` is inclusive.
        url = (
            f"{self.root}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/"
            f"{_ms(first)}/{_ms(stop) - 1}"
        )
        params: dict[str, Any] = {"adjusted": "true", "sort": "asc", "limit": _PAGE_LIMIT}
        try:
            bars = self._all_pages(url, params, ticker)
        except SourceError as error:
            message = str(error)
            if self._key in message:
                raise SourceError(message.replace(self._key, "***")) from None
            raise
        frame = clip_range(_session_dates(_to_candles(bars, ticker), timeframe), first, stop)
        if frame.empty:
            raise NotFoundError(
                f"Polygon has no {timeframe.name} bars for {ticker!r} between {first} and {stop}; "
                "check the ticker (AAPL, X:BTCUSD, C:EURUSD) and your plan's history"
            )
        with_meta(frame, symbol=ticker, timeframe=timeframe.name)
        return validate_candles(frame, source=f"polygon:{ticker}")

    def _all_pages(self, url: str, params: dict[str, Any], ticker: str) -> list[dict[str, Any]]:
        bars: list[dict[str, Any]] = []
        seen: set[str] = set()
        with HttpClient(self.settings) as client:
            while True:
                page = client.get_json(url, {**params, "apiKey": self._key})
                bars += _page_results(page, ticker)
                next_url = page.get("next_url")
                if not next_url:
                    return bars
                if next_url in seen:
                    raise SourceError(
                        redact(f"polygon {ticker}: next_url repeats itself ({next_url})")
                    )
                seen.add(next_url)
                # httpx replaces a URL's query by `params`: next_url's query (the cursor) is
                # passed as params, with the key added to it.
                url, _, query = str(next_url).partition("?")
                params = dict(parse_qsl(query))


def _page_results(page: Any, ticker: str) -> list[dict[str, Any]]:
    """The bars of one response; :class:`SourceError` on an error status."""
    if not isinstance(page, dict):
        raise SourceError(f"polygon {ticker}: expected a JSON object, got {type(page).__name__}")
    status = str(page.get("status", ""))
    if status not in _OK_STATUSES:
        detail = page.get("error") or page.get("message") or "no detail given"
        raise SourceError(f"polygon {ticker}: status {status or 'missing'}: {detail}")
    results = page.get("results") or []
    if not isinstance(results, list):
        raise SourceError(f"polygon {ticker}: 'results' is not a list")
    return results


def _to_candles(bars: list[dict[str, Any]], ticker: str) -> pd.DataFrame:
    """Candles from Polygon bars (``t`` in ms, ``o h l c v``), sorted and deduplicated."""
    try:
        columns = {key: np.array([bar[key] for bar in bars], dtype=np.float64) for key in "ohlcv"}
        stamps = np.array([bar["t"] for bar in bars], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as error:
        raise SourceError(f"polygon {ticker}: malformed bar ({error!r})") from error
    index = pd.DatetimeIndex((stamps * 1_000_000).astype("datetime64[ns]")).tz_localize("UTC")
    frame = make_candles(index, *columns.values())
    frame = frame.sort_index(kind="stable")
    return frame[~frame.index.duplicated(keep="first")]


def _session_dates(frame: pd.DataFrame, timeframe: Timeframe) -> pd.DataFrame:
    """Daily and weekly stock bars start at New York midnight: label them with the session date
    at 00:00 UTC, as the equity files trademl ships with and the yahoo source do."""
    if timeframe.seconds < 86_400 or frame.empty:
        return frame
    index = pd.DatetimeIndex(frame.index)
    if (index == index.normalize()).all():
        return frame  # already on UTC days (crypto, forex)
    dates = index.tz_convert("America/New_York").tz_localize(None).normalize().tz_localize("UTC")
    relabelled = frame.set_axis(dates.rename("timestamp").as_unit("ns"))
    relabelled.attrs = dict(frame.attrs)
    return relabelled[~relabelled.index.duplicated(keep="first")]


def _ms(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000)


@SOURCES.register("polygon")
def polygon_source(settings: Settings, argument: str | None = None) -> Source:
    """Factory of ``polygon`` (takes no argument)."""
    if argument:
        raise ConfigError(f"source 'polygon' takes no ':{argument}' part")
    return PolygonSource(settings)
