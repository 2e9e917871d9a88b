"""``yahoo``: candles from Yahoo Finance through yfinance.

``yahoo`` gives the traded prices; ``yahoo:adjusted`` scales open, high, low and close by
Yahoo's ``Adj Close / Close`` (dividends and splits folded in). Daily and weekly bars are
labelled with their session date at 00:00 UTC, like the equity files trademl ships with;
intraday bars keep their start instant, converted to UTC.

Setting ``TRADEML_YAHOO_URL`` sends every request yfinance makes (cookie, crumb, chart API) to
that root instead, through the ``session`` yfinance accepts, so the real yfinance code is the
one that runs in the tests.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from trademl.config import Settings
from trademl.data.candles import make_candles, validate_candles, with_meta
from trademl.data.sources.base import SOURCES, clip_range, import_optional
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, SourceError

INTERVALS: dict[str, str] = {
    "1m": "1m",
    "2m": "2m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1h",
    "90m": "90m",
    "1d": "1d",
    "5d": "5d",
    "1w": "1wk",
}
"""Our canonical timeframe names → Yahoo chart intervals."""

_SESSION_BARS = frozenset({"1d", "5d", "1w"})
_cache_located = False


def reroute(url: str, root: str) -> str:
    """``url`` with its scheme and host replaced by those of ``root`` (whose path is prefixed).

    Parameters
    ----------
    url:
        An absolute URL, such as one of Yahoo's.
    root:
        The replacement root, such as ``http://127.0.0.1:8080``.

    Returns
    -------
    str
        The rewritten URL, with the path and query of ``url``.

    Examples
    --------
    >>> reroute("https://fc.yahoo.com/x?a=1", "http://127.0.0.1:9")
    'http://127.0.0.1:9/x?a=1'
    """
    target = urlsplit(root)
    parts = urlsplit(url)
    path = target.path.rstrip("/") + parts.path
    return urlunsplit((target.scheme, target.netloc, path, parts.query, ""))


def rerouting_session(root: str) -> Any:
    """A ``requests`` session that sends every request to ``root``, keeping path and query.

    yfinance accepts such a session; this one points all of its Yahoo hosts
    (``fc.yahoo.com``, ``query1``/``query2.finance.yahoo.com``...) at ``root``. yfinance keeps
    the last session it was given (and its crumb) process-wide, so a process should not mix
    rerouted and real Yahoo requests.

    Parameters
    ----------
    root:
        The replacement root, such as ``http://127.0.0.1:8080``.

    Returns
    -------
    requests.Session
        A session whose every request goes to ``root``.
    """
    import requests  # a yfinance dependency, so only needed with it

    class _Rerouting(requests.Session):
        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
            text = url.decode() if isinstance(url, bytes) else str(url)
            return super().request(method, reroute(text, root), *args, **kwargs)

    return _Rerouting()


class _Collect(logging.Handler):
    """Keeps the messages of yfinance's error log records (yfinance logs, not raises)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _yfinance_errors() -> Iterator[list[str]]:
    """Collect what yfinance logs at ERROR level inside the block."""
    handler = _Collect()
    log = logging.getLogger("yfinance")
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)


def _locate_cache(yfinance: Any, settings: Settings) -> None:
    """Keep yfinance's timezone and cookie caches under trademl's cache folder.

    yfinance can only move its caches before it first uses them, so this runs once per process.
    """
    global _cache_located
    if _cache_located:
        return
    folder = settings.cache_dir / "yfinance"
    folder.mkdir(parents=True, exist_ok=True)
    yfinance.set_tz_cache_location(str(folder))
    _cache_located = True


def _session_day(stamp: pd.Timestamp) -> dt.date:
    """The calendar date of a UTC instant."""
    return dt.date(stamp.year, stamp.month, stamp.day)


class YahooSource:
    """Candles from Yahoo Finance.

    Parameters
    ----------
    settings:
        trademl settings (HTTP timeout, ``yahoo_url``, cache folder).
    adjusted:
        Scale open, high, low and close by ``Adj Close / Close`` (total-return prices).
    """

    def __init__(self, settings: Settings, *, adjusted: bool = False) -> None:
        self.settings = settings
        self.adjusted = adjusted
        self.name = "yahoo:adjusted" if adjusted else "yahoo"

    def _history(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
        session_bars: bool,
    ) -> tuple[pd.DataFrame, list[str]]:
        """Yahoo's frame as yfinance returns it, and the errors yfinance logged."""
        yfinance = import_optional("yfinance", "the yahoo source")
        _locate_cache(yfinance, self.settings)
        window: dict[str, Any] = {}
        if start is None:
            window["period"] = "max"
        elif session_bars:
            # Yahoo reads dates in the exchange's zone; ask for whole sessions, clip later.
            window["start"] = _session_day(start)
        else:
            window["start"] = start.to_pydatetime()
        if end is not None:
            if session_bars:
                last = end - pd.Timedelta(1, "ns")
                window["end"] = _session_day(last) + dt.timedelta(days=1)
            else:
                window["end"] = end.to_pydatetime()
        url = self.settings.yahoo_url
        session = rerouting_session(url) if url else None
        ticker = yfinance.Ticker(symbol, session=session)
        with _yfinance_errors() as errors, warnings.catch_warnings():
            # yfinance's own pandas deprecations are not the caller's to fix.
            for category in (DeprecationWarning, FutureWarning):
                warnings.filterwarnings("ignore", category=category, module=r"yfinance(\.|$)")
            frame = ticker.history(
                interval=interval,
                auto_adjust=False,
                actions=False,
                repair=False,
                keepna=False,
                timeout=self.settings.http_timeout_s,
                **window,
            )
        if not isinstance(frame, pd.DataFrame):
            raise SourceError(f"yahoo: yfinance returned {type(frame).__name__} for {symbol}")
        return frame, errors

    def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles of ``symbol`` with ``start <= timestamp < end``, validated.

        Parameters
        ----------
        symbol:
            A Yahoo ticker (``SPY``, ``AAPL``, ``^GSPC``, ``EURUSD=X``).
        timeframe:
            One of the bar lengths Yahoo serves: 1m 2m 5m 15m 30m 1h 90m 1d 5d 1w.
        start, end:
            Optional UTC bounds, ``start`` inclusive and ``end`` exclusive.

        Returns
        -------
        pandas.DataFrame
            Validated Candles with ``attrs`` ``symbol`` and ``timeframe``; the bar still in
            progress, if any, is left out.

        Raises
        ------
        ConfigError
            If Yahoo has no such interval.
        SourceError
            If Yahoo returns no candles for the symbol in the range.
        """
        timeframe = Timeframe.parse(timeframe)
        interval = INTERVALS.get(timeframe.name)
        if interval is None:
            raise ConfigError(
                f"yahoo: timeframe {timeframe.name!r} is not a Yahoo interval; "
                f"supported: {', '.join(INTERVALS)}"
            )
        session_bars = timeframe.name in _SESSION_BARS
        raw, errors = self._history(symbol, interval, start, end, session_bars)
        span = f"{start or 'the beginning'} to {end or 'now'}"
        missing = [c for c in ("Open", "High", "Low", "Close", "Volume") if c not in raw.columns]
        if raw.empty or missing:
            said = f" (yfinance: {'; '.join(errors)})" if errors else ""
            raise SourceError(f"yahoo: no {timeframe.name} candles for {symbol} from {span}{said}")

        prices = raw.loc[:, ["Open", "High", "Low", "Close"]].to_numpy(dtype=np.float64)
        volume = raw["Volume"].to_numpy(dtype=np.float64)
        if self.adjusted:
            if "Adj Close" not in raw.columns:
                raise SourceError(f"yahoo: no adjusted close for {symbol} at {timeframe.name}")
            factor = raw["Adj Close"].to_numpy(dtype=np.float64) / prices[:, 3]
            prices = prices * factor[:, None]
        keep = np.isfinite(prices).all(axis=1)
        volume = np.where(np.isfinite(volume), volume, 0.0)

        index = pd.DatetimeIndex(raw.index)
        if index.tz is None:
            index = index.tz_localize("UTC")
        if session_bars:
            # Exchange-local midnight → the session date at 00:00 UTC.
            index = index.tz_localize(None).normalize().tz_localize("UTC")
        else:
            index = index.tz_convert("UTC")

        frame = make_candles(
            index[keep],
            prices[keep, 0],
            prices[keep, 1],
            prices[keep, 2],
            prices[keep, 3],
            volume[keep],
        )
        frame = frame[~frame.index.duplicated(keep="last")]
        # The bar still in progress ends after now; its values would keep changing.
        frame = frame[frame.index <= pd.Timestamp.now(tz="UTC") - timeframe.delta]
        frame = with_meta(clip_range(frame, start, end), symbol=symbol, timeframe=timeframe.name)
        if frame.empty:
            raise SourceError(f"yahoo: no closed {timeframe.name} candles for {symbol} from {span}")
        return validate_candles(frame, source=f"{self.name}:{symbol}")


@SOURCES.register("yahoo")
def yahoo_source(settings: Settings, argument: str | None) -> YahooSource:
    """Build ``yahoo`` (traded prices) or ``yahoo:adjusted`` (dividend/split adjusted).

    Raises
    ------
    ConfigError
        If the part after the colon is anything but ``adjusted``.
    """
    if argument in (None, ""):
        return YahooSource(settings)
    if argument == "adjusted":
        return YahooSource(settings, adjusted=True)
    raise ConfigError(
        f"yahoo: unknown option {argument!r}; use 'yahoo' or 'yahoo:adjusted' (adjusted prices)"
    )
