"""``ccxt:<exchange>``: candles from the OHLCV endpoint of any exchange that ccxt supports.

The source walks forward through history with ccxt's ``since``/``limit`` pagination, relying on
ccxt's own rate limiter (``enableRateLimit``), retries network failures, and returns validated
Candles with the still-forming last bar removed.

Setting ``TRADEML_CCXT_API_URL`` points every API URL of the exchange at another host (a proxy,
or the local server the tests run), keeping each URL's path, so the real ccxt code runs
end to end.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
from loguru import logger

from trademl.config import Settings
from trademl.data.candles import make_candles, validate_candles, with_meta
from trademl.data.sources.base import SOURCES, clip_range, import_optional
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, SourceError
from trademl.progress import progress_bar

T = TypeVar("T")

_EXAMPLES = "ccxt:binance, ccxt:kraken, ccxt:coinbase"


def rehost(urls: Any, root: str) -> Any:
    """Point every URL in ``urls`` (a string, or dicts and lists of them) at ``root``.

    The scheme and host of each URL are replaced by those of ``root``; the path of ``root``
    (if any) is prefixed to the URL's own path, and the query is kept.

    Parameters
    ----------
    urls:
        A ccxt ``exchange.urls['api']`` value: a URL string or a nested dict/list of them.
    root:
        The new API root, such as ``http://127.0.0.1:8080`` or ``https://proxy/binance``.

    Returns
    -------
    Any
        The same structure with every URL rewritten; other values are returned unchanged.

    Examples
    --------
    >>> rehost({"public": "https://api.binance.com/api/v3"}, "http://127.0.0.1:9000")
    {'public': 'http://127.0.0.1:9000/api/v3'}
    """
    if isinstance(urls, str):
        target = urlsplit(root)
        parts = urlsplit(urls)
        path = target.path.rstrip("/") + parts.path
        return urlunsplit((target.scheme, target.netloc, path, parts.query, parts.fragment))
    if isinstance(urls, dict):
        return {key: rehost(value, root) for key, value in urls.items()}
    if isinstance(urls, list):
        return [rehost(value, root) for value in urls]
    return urls


def _ms(stamp: pd.Timestamp) -> int:
    """Milliseconds since the Unix epoch of a UTC timestamp."""
    return int(stamp.value) // 1_000_000  # .value is nanoseconds whatever the unit


class CcxtSource:
    """Candles from one ccxt exchange.

    Parameters
    ----------
    settings:
        trademl settings (HTTP timeout and retries, ``ccxt_api_url``).
    exchange_id:
        A ccxt exchange id, such as ``binance`` or ``kraken`` (see ``ccxt.exchanges``).
    limit:
        Bars asked for per request; ``None`` lets ccxt use the exchange's default page size.
    options:
        Extra ccxt exchange options (``{"fetchMarkets": {"types": ["spot"]}}``...).
    retry_delay_s:
        The first pause before retrying a network failure; it doubles on each retry.

    Raises
    ------
    ConfigError
        If the exchange id is unknown to ccxt or the exchange offers no OHLCV endpoint.
    """

    def __init__(
        self,
        settings: Settings,
        exchange_id: str,
        *,
        limit: int | None = None,
        options: dict[str, Any] | None = None,
        retry_delay_s: float = 1.0,
    ) -> None:
        ccxt = import_optional("ccxt", "the ccxt sources")
        known: list[str] = list(ccxt.exchanges)
        if exchange_id not in known:
            close = difflib.get_close_matches(exchange_id.lower(), known, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown ccxt exchange {exchange_id!r}{hint} Name one of ccxt's "
                f"{len(known)} exchange ids as ccxt:<exchange>, e.g. {_EXAMPLES}"
            )
        if limit is not None and limit <= 0:
            raise ConfigError(f"ccxt page limit must be a positive number of bars, got {limit}")
        self.exchange_id = exchange_id
        self.name = f"ccxt:{exchange_id}"
        self.limit = limit
        self.retries = settings.http_retries
        self.retry_delay_s = retry_delay_s
        self._ccxt = ccxt
        self.exchange: Any = getattr(ccxt, exchange_id)(
            {
                "enableRateLimit": True,
                "timeout": round(settings.http_timeout_s * 1000),
                "options": dict(options or {}),
            }
        )
        if settings.ccxt_api_url:
            self.exchange.urls["api"] = rehost(self.exchange.urls["api"], settings.ccxt_api_url)
        if not self.exchange.has.get("fetchOHLCV"):
            raise ConfigError(
                f"{self.name}: this exchange has no OHLCV (candles) endpoint in ccxt; "
                f"pick another, e.g. {_EXAMPLES}"
            )

    def _call(self, what: str, function: Callable[..., T], *args: Any) -> T:
        """Call a ccxt method, retrying network failures and mapping ccxt errors to ours."""
        ccxt = self._ccxt
        delay = self.retry_delay_s
        for attempt in range(self.retries + 1):
            try:
                return function(*args)
            except ccxt.BadSymbol as error:
                raise ConfigError(f"{self.name}: {what}: unknown symbol: {error}") from error
            except (ccxt.AuthenticationError, ccxt.PermissionDenied) as error:
                raise ConfigError(
                    f"{self.name}: {what}: the exchange refused access: {error}"
                ) from error
            except ccxt.NotSupported as error:
                raise ConfigError(f"{self.name}: {what}: not supported: {error}") from error
            except ccxt.NetworkError as error:
                if attempt == self.retries:
                    raise SourceError(
                        f"{self.name}: {what} failed after {attempt + 1} attempt(s): "
                        f"{type(error).__name__}: {error}"
                    ) from error
                logger.debug(
                    "{}: {} failed ({}), retrying in {:.1f}s", self.name, what, error, delay
                )
            except ccxt.BaseError as error:
                raise SourceError(
                    f"{self.name}: {what} failed: {type(error).__name__}: {error}"
                ) from error
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _market_symbol(self, symbol: str) -> str:
        """The ccxt unified symbol for ``symbol`` (``BTC/USDT`` or the exchange id ``BTCUSDT``)."""
        markets: dict[str, Any] = self._call("loading markets", self.exchange.load_markets)
        if symbol in markets:
            return symbol
        by_id: dict[str, Any] = self.exchange.markets_by_id or {}
        if symbol in by_id:
            entries = by_id[symbol]
            entry = entries[0] if isinstance(entries, list) else entries
            return str(entry["symbol"])
        names = sorted(set(markets) | set(by_id))
        close = difflib.get_close_matches(symbol, names, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"{self.name}: unknown symbol {symbol!r}{hint} "
            "(use a ccxt symbol such as 'BTC/USDT' or the exchange's id such as 'BTCUSDT')"
        )

    def _timeframe(self, timeframe: Timeframe) -> str:
        """The ccxt timeframe name, checked against what the exchange offers."""
        name = timeframe.name
        offered: dict[str, Any] = self.exchange.timeframes or {}
        if offered and name not in offered:
            raise ConfigError(
                f"{self.name}: timeframe {name!r} is not offered by {self.exchange_id}; "
                f"supported: {', '.join(offered)}"
            )
        return name

    def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles of ``symbol`` with ``start <= timestamp < end``, validated.

        Pages forward from ``start`` (from the epoch when ``start`` is None, which exchanges
        such as Binance answer with their first bar) until ``end``, the present, an empty page
        or a page that does not move forward. The last bar is dropped while it is still open.

        Parameters
        ----------
        symbol:
            A ccxt symbol (``BTC/USDT``) or the exchange's market id (``BTCUSDT``).
        timeframe:
            The bar length; it must be one the exchange offers.
        start, end:
            Optional UTC bounds, ``start`` inclusive and ``end`` exclusive.

        Returns
        -------
        pandas.DataFrame
            Validated Candles with ``attrs`` ``symbol`` and ``timeframe``.

        Raises
        ------
        ConfigError
            On an unsupported timeframe or an unknown symbol.
        SourceError
            When the exchange fails or returns no candles in the range.
        """
        timeframe = Timeframe.parse(timeframe)
        ccxt_timeframe = self._timeframe(timeframe)
        market = self._market_symbol(symbol)
        step_ms = timeframe.seconds * 1000
        now_ms = int(time.time() * 1000)
        stop_ms = min(_ms(end), now_ms) if end is not None else now_ms
        since = _ms(start) if start is not None else 0

        bars: dict[int, list[Any]] = {}
        pages = 0
        expected_bars = max(0, (stop_ms - since) // step_ms) if start is not None else None
        with progress_bar(f"{self.name} {symbol}", expected_bars, unit="bars") as advance:
            while since < stop_ms:
                page: list[list[Any]] = self._call(
                    f"fetching {timeframe.name} candles of {symbol}",
                    self.exchange.fetch_ohlcv,
                    market,
                    ccxt_timeframe,
                    since,
                    self.limit,
                )
                pages += 1
                if not page:
                    break
                for row in page:
                    bars[int(row[0])] = row
                advance(len(page))
                last = max(int(row[0]) for row in page)
                if last < since:
                    break
                since = last + step_ms
        logger.debug("{}: {} page(s), {} bar(s) of {}", self.name, pages, len(bars), symbol)

        source = f"{self.name}:{symbol}"
        times = np.array(sorted(bars), dtype=np.int64)
        # Still-open bar: it ends after now, so its values would keep changing.
        times = times[times + step_ms <= now_ms]
        rows = [bars[int(t)] for t in times]
        values = np.array(
            [[np.nan if v is None else float(v) for v in row[1:6]] for row in rows],
            dtype=np.float64,
        ).reshape(len(rows), 5)
        frame = make_candles(
            pd.to_datetime(times, unit="ms", utc=True),
            *(values[:, i] for i in range(5)),
            symbol=symbol,
            timeframe=timeframe.name,
        )
        frame = with_meta(clip_range(frame, start, end), symbol=symbol, timeframe=timeframe.name)
        if frame.empty:
            span = f"{start or 'the beginning'} to {end or 'now'}"
            raise SourceError(
                f"{self.name}: no closed {timeframe.name} candles of {symbol} from {span}"
            )
        return validate_candles(frame, source=source)


@SOURCES.register("ccxt")
def ccxt_source(settings: Settings, argument: str | None) -> CcxtSource:
    """Build ``ccxt:<exchange>``; the exchange id is the part after the colon.

    Raises
    ------
    ConfigError
        If no exchange is named or ccxt does not know it.
    """
    if not argument:
        raise ConfigError(
            f"name the exchange of the ccxt source as ccxt:<exchange>, e.g. {_EXAMPLES} "
            "(any id in ccxt.exchanges)"
        )
    return CcxtSource(settings, argument)
