"""Binance public kline archives (``data.binance.vision``): no API key, SHA-256 checked, cached.

The archive holds one zip per symbol, interval and month (``monthly``) or day (``daily``), each
published with a ``.CHECKSUM`` file. Monthly files appear a few days after a month ends and
daily files the day after, so a fetch reads monthly files for past months, daily files for the
current month, and the previous month's daily files while its monthly file is not yet out.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from loguru import logger

from trademl.config import Settings
from trademl.data.candles import (
    COLUMNS,
    empty_candles,
    make_candles,
    validate_candles,
    with_meta,
)
from trademl.data.sources.base import SOURCES, Source, clip_range, parse_time
from trademl.data.sources.http import HttpClient, HttpNotFoundError
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, NotFoundError, SourceError
from trademl.progress import Advance, progress_bar

SUPPORTED_INTERVALS: tuple[str, ...] = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
)  # fmt: skip
"""Kline intervals the archive publishes (written as canonical :class:`Timeframe` names)."""

FIRST_MONTH = pd.Timestamp("2017-08-01", tz="UTC")
"""Binance's first month of trading: the default start of a fetch."""

# Millisecond open times stay below 1e14 until the year 5138, microsecond ones are above it
# from 1973 on, so the magnitude tells the unit of a file apart (spot files use µs since 2025).
_MICROSECONDS_FROM = 10**14
_SYMBOL = re.compile(r"^[A-Z0-9_]+$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_MANY_FILES = 3


def normalize_symbol(symbol: str) -> str:
    """Binance's spelling of a pair: ``btc/usdt`` → ``BTCUSDT``.

    Raises
    ------
    ConfigError
        When the result is not made of letters, digits and ``_`` (``BTCUSD_PERP``).
    """
    normalized = symbol.strip().upper().replace("/", "")
    if not _SYMBOL.match(normalized):
        raise ConfigError(
            f"symbol {symbol!r} is not a Binance pair; expected e.g. 'BTCUSDT' or 'BTC/USDT'"
        )
    return normalized


def interval_of(timeframe: Timeframe) -> str:
    """The archive interval of ``timeframe``; :class:`ConfigError` when none is published."""
    if timeframe.name not in SUPPORTED_INTERVALS:
        raise ConfigError(
            f"timeframe {timeframe.name!r} is not published by the Binance archive; "
            f"supported: {', '.join(SUPPORTED_INTERVALS)}"
        )
    return timeframe.name


def read_kline_zip(path: Path) -> pd.DataFrame:
    """Candles of one archive zip (one CSV, header line optional, ms or µs open times).

    Raises
    ------
    SourceError
        When the file is not a zip holding exactly one CSV of klines.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if name.lower().endswith(".csv")]
            if len(members) != 1:
                raise SourceError(f"{path}: expected one CSV in the zip, found {members}")
            raw = archive.read(members[0])
    except zipfile.BadZipFile as error:
        raise SourceError(
            f"{path}: not a valid zip ({error}); delete it to download again"
        ) from error
    if not raw.strip():
        return empty_candles()
    # Some archives (futures, later spot) start with a header line; data lines start with a digit.
    header = not raw[:1].isdigit()
    table = pd.read_csv(
        io.BytesIO(raw),
        header=None,
        skiprows=1 if header else 0,
        usecols=range(6),
        names=["open_time", *COLUMNS],
        dtype={"open_time": np.int64, **dict.fromkeys(COLUMNS, np.float64)},
    )
    open_time = table["open_time"].to_numpy(dtype=np.int64)
    microseconds = len(open_time) > 0 and int(open_time.max()) >= _MICROSECONDS_FROM
    nanoseconds = open_time * (1_000 if microseconds else 1_000_000)
    index = pd.DatetimeIndex(nanoseconds.astype("datetime64[ns]")).tz_localize("UTC")
    return make_candles(index, *(table[column].to_numpy() for column in COLUMNS))


@dataclass(frozen=True)
class _Request:
    """One fetch: what to download and where it goes."""

    symbol: str
    interval: str
    start: pd.Timestamp
    end: pd.Timestamp
    now: pd.Timestamp

    @property
    def current_month(self) -> pd.Timestamp:
        return self.now.normalize().replace(day=1)

    def months(self) -> list[pd.Timestamp]:
        """First days of the whole months before the current one that overlap [start, end)."""
        month = self.start.normalize().replace(day=1)
        months = []
        while month < self.end and month < self.current_month:
            months.append(month)
            month += pd.DateOffset(months=1)
        return months

    def days(self, month: pd.Timestamp) -> list[pd.Timestamp]:
        """Days of ``month`` that overlap [start, end) and are over (today's file is not out)."""
        first = max(month, self.start.normalize())
        stop = min(self.end, month + pd.DateOffset(months=1), self.now.normalize())
        return list(pd.date_range(first, stop, freq="D", inclusive="left"))


class BinanceArchiveSource:
    """Candles from the Binance public kline archives, cached under ``cache_dir/binance``.

    Parameters
    ----------
    settings:
        ``binance_data_url``, ``binance_market``, ``cache_dir`` and the ``http_*`` knobs.
    market:
        ``spot``, ``futures/um`` or ``futures/cm``; defaults to ``settings.binance_market``.
    now:
        The clock deciding which months are over (tests pin it); defaults to the UTC time.

    Examples
    --------
    >>> from trademl.config import Settings
    >>> BinanceArchiveSource(Settings(home="/tmp/tm")).name
    'binance'
    """

    name = "binance"

    def __init__(
        self,
        settings: Settings,
        *,
        market: str | None = None,
        now: Callable[[], pd.Timestamp] | None = None,
    ) -> None:
        self.settings = settings
        self.market = (market or settings.binance_market).strip("/")
        self.root = settings.binance_data_url.rstrip("/")
        self.cache = settings.cache_dir / "binance" / self.market
        self._now = now or (lambda: pd.Timestamp.now(tz="UTC"))

    def fetch(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles of ``symbol`` with ``start <= timestamp < end``, validated.

        ``start`` defaults to August 2017 (Binance's first month) and ``end`` to now.

        Raises
        ------
        ConfigError
            For a symbol, interval or range the archive cannot serve.
        NotFoundError
            When the archive holds no klines of ``symbol`` in the range.
        SourceError
            On network failures; :class:`~trademl.errors.ChecksumError` on a corrupt download.
        """
        timeframe = Timeframe.parse(timeframe)
        now = self._now()
        request = _Request(
            symbol=normalize_symbol(symbol),
            interval=interval_of(timeframe),
            start=parse_time(start, argument="start") or FIRST_MONTH,
            end=parse_time(end, argument="end") or now,
            now=now,
        )
        if request.start >= request.end:
            raise ConfigError(f"start {request.start} must be before end {request.end}")
        missing: list[Path] = []
        with HttpClient(self.settings) as client:
            parts = self._download_all(client, request, missing)
        described = f"{request.symbol} {request.interval} ({self.market})"
        if not parts:
            raise NotFoundError(
                f"the Binance archive has no {described} klines between {request.start} and "
                f"{request.end}; check the symbol, the interval and the market"
            )
        frame = pd.concat(parts).sort_index(kind="stable")
        frame = clip_range(frame[~frame.index.duplicated(keep="first")], request.start, request.end)
        if frame.empty:
            raise NotFoundError(
                f"the Binance archive has no {described} klines between {request.start} and "
                f"{request.end}"
            )
        # Remembered only now: when nothing is found (a wrong URL or market), nothing sticks.
        for marker in missing:
            marker.touch()
        with_meta(frame, symbol=request.symbol, timeframe=timeframe.name)
        return validate_candles(frame, source=f"binance:{request.symbol}")

    def _download_all(
        self, client: HttpClient, request: _Request, missing: list[Path]
    ) -> list[pd.DataFrame]:
        months = request.months()
        current_days = request.days(request.current_month)
        previous_month = request.current_month - pd.DateOffset(months=1)
        parts: list[pd.DataFrame] = []
        with _files_bar(
            f"binance {request.symbol} {request.interval}", len(months) + len(current_days)
        ) as advance:
            for month in months:
                recent = month >= previous_month
                path = self._archive(
                    client, request, "monthly", f"{month:%Y-%m}", None if recent else missing
                )
                if path is not None:
                    parts.append(read_kline_zip(path))
                elif recent:
                    # The monthly file of the month just over may not be out yet: use its days.
                    parts += self._days(client, request, request.days(month))
                advance()
            for day in current_days:
                parts += self._days(client, request, [day])
                advance()
        return [part for part in parts if not part.empty]

    def _days(
        self, client: HttpClient, request: _Request, days: list[pd.Timestamp]
    ) -> list[pd.DataFrame]:
        paths = (self._archive(client, request, "daily", f"{day:%Y-%m-%d}") for day in days)
        return [read_kline_zip(path) for path in paths if path is not None]

    def _archive(
        self,
        client: HttpClient,
        request: _Request,
        period: str,
        label: str,
        missing: list[Path] | None = None,
    ) -> Path | None:
        """The cached, verified zip of one period; None when the archive has no such file.

        A file of a long-past month that the archive lacks will not appear later: its
        ``.missing`` marker goes into ``missing`` so that the next fetch skips it (periods
        before a listing then cost no request).
        """
        name = f"{request.symbol}-{request.interval}-{label}.zip"
        target = self.cache / request.symbol / request.interval / name
        marker = target.with_name(name + ".missing")
        if target.exists():
            return target
        if marker.exists():
            return None
        folder = (
            f"{self.root}/data/{self.market}/{period}/klines/{request.symbol}/{request.interval}"
        )
        url = f"{folder}/{name}"
        try:
            checksum = _parse_checksum(client.get_text(f"{url}.CHECKSUM"), f"{url}.CHECKSUM")
            return client.download(url, target, sha256=checksum)
        except HttpNotFoundError:
            # Before a listing (or after a delisting) the archive simply has no file.
            logger.debug("binance archive has no {} (skipped)", name)
            if missing is not None:
                missing.append(marker)
            return None


def _parse_checksum(text: str, url: str) -> str:
    """The SHA-256 of a ``<hex>  <file name>`` checksum file."""
    fields = text.split()
    if not fields or not _SHA256.match(fields[0]):
        raise SourceError(f"{url}: not a SHA-256 checksum file (got {text[:80]!r})")
    return fields[0].lower()


@contextmanager
def _files_bar(description: str, total: int) -> Iterator[Advance]:
    """A progress bar over archive files when there are several, else a no-op."""
    if total < _MANY_FILES:
        yield _no_progress
        return
    with progress_bar(description, total, unit="files") as advance:
        yield advance


def _no_progress(amount: float = 1) -> None:
    """Advance nothing (few files: no bar)."""


@SOURCES.register("binance")
def binance_source(settings: Settings, argument: str | None = None) -> Source:
    """Factory of ``binance`` (``settings.binance_market``) and ``binance:<market>``."""
    return BinanceArchiveSource(settings, market=argument)
