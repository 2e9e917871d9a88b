"""The Binance archive source against a local server publishing real BTCUSDT klines as zips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.support.binance_archive import ROOT, Archive, kline_zip
from tests.support.httpserver import local_http_server

from trademl.config import Settings
from trademl.data.sources.base import get_source
from trademl.data.sources.binance import BinanceArchiveSource, normalize_symbol, read_kline_zip
from trademl.errors import ChecksumError, ConfigError, NotFoundError
from trademl.testing import SourceCase, check_source

NOW = pd.Timestamp("2024-07-20T09:30Z")


@pytest.fixture(scope="module")
def source_text(data_dir: Path) -> pd.DataFrame:
    """The real BTCUSDT 1h rows as the text of the file, indexed by timestamp."""
    text = pd.read_csv(data_dir / "crypto" / "BTCUSDT_1h.csv", dtype=str)
    return text.set_index(pd.DatetimeIndex(pd.to_datetime(text.pop("timestamp"), utc=True)))


@pytest.fixture(scope="module")
def source_candles(data_dir: Path) -> pd.DataFrame:
    """The same rows parsed as numbers: what the source must return."""
    frame = pd.read_csv(data_dir / "crypto" / "BTCUSDT_1h.csv", index_col="timestamp")
    stamps = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True), name="timestamp")
    frame.index = stamps.as_unit("ns")
    return frame.astype("float64")


@pytest.fixture
def archive(source_text: pd.DataFrame) -> Iterator[Archive]:
    with local_http_server() as server:
        yield Archive(server, source_text)


def make_source(home: Path, archive: Archive, now: pd.Timestamp = NOW) -> BinanceArchiveSource:
    settings = Settings(home=home, binance_data_url=archive.server.url, http_retries=0)
    return BinanceArchiveSource(settings, now=lambda: now)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def expected(candles: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    return candles[(candles.index >= utc(start)) & (candles.index < utc(end))]


def cached_files(home: Path) -> list[Path]:
    return sorted(path for path in (home / "cache").rglob("*") if path.is_file())


def test_fetch_assembles_monthly_then_daily_files_with_exact_values(
    home: Path, archive: Archive, source_candles: pd.DataFrame
) -> None:
    archive.publish("monthly", "2024-05")
    archive.publish("monthly", "2024-06", header=True)
    for day in pd.date_range("2024-07-01", "2024-07-19", freq="D"):
        # One daily file in microseconds, like the spot files published since 2025.
        unit = "us" if day.day == 5 else "ms"
        archive.publish("daily", f"{day:%Y-%m-%d}", unit=unit)

    frame = make_source(home, archive).fetch(
        "btc/usdt", "1h", utc("2024-05-10T05:00"), utc("2024-07-19T12:00")
    )

    pd.testing.assert_frame_equal(
        frame, expected(source_candles, "2024-05-10T05:00", "2024-07-19T12:00"), check_exact=True
    )
    zips = {path.rsplit("/", 1)[1] for path in archive.archive_requests() if path.endswith(".zip")}
    assert zips == {"BTCUSDT-1h-2024-05.zip", "BTCUSDT-1h-2024-06.zip"} | {
        f"BTCUSDT-1h-2024-07-{day:02d}.zip" for day in range(1, 20)
    }
    assert not any("2024-07.zip" in path for path in archive.archive_requests())


def test_microsecond_and_header_files_read_like_millisecond_ones(
    tmp_path: Path, source_text: pd.DataFrame
) -> None:
    rows = source_text[
        (source_text.index >= utc("2024-07-05")) & (source_text.index < utc("2024-07-06"))
    ]
    frames = []
    for unit, header in [("ms", False), ("us", False), ("us", True)]:
        path = tmp_path / f"{unit}-{header}.zip"
        path.write_bytes(kline_zip("BTCUSDT-1h-2024-07-05", rows, unit=unit, header=header))
        frames.append(read_kline_zip(path))
    assert len(frames[0]) == 24
    assert frames[0].index[0] == utc("2024-07-05")
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frame, frames[0], check_exact=True)


def test_second_fetch_reads_the_cache_without_any_request(
    home: Path, archive: Archive, source_candles: pd.DataFrame
) -> None:
    archive.publish("monthly", "2024-05")
    archive.publish("monthly", "2024-06")
    source = make_source(home, archive)

    first = source.fetch("BTCUSDT", "1h", utc("2024-05-01"), utc("2024-07-01"))
    made = len(archive.archive_requests())
    second = source.fetch("BTCUSDT", "1h", utc("2024-05-01"), utc("2024-07-01"))

    assert made == 4  # two CHECKSUM files and two zips
    assert len(archive.archive_requests()) == made
    pd.testing.assert_frame_equal(second, first, check_exact=True)
    pd.testing.assert_frame_equal(second, expected(source_candles, "2024-05-01", "2024-07-01"))
    folder = home / "cache" / "binance" / "spot" / "BTCUSDT" / "1h"
    assert cached_files(home) == [
        folder / "BTCUSDT-1h-2024-05.zip",
        folder / "BTCUSDT-1h-2024-06.zip",
    ]


def test_checksum_mismatch_raises_and_caches_nothing(home: Path, archive: Archive) -> None:
    archive.publish("monthly", "2024-05", checksum_of=b"some other file")

    with pytest.raises(ChecksumError, match=r"BTCUSDT-1h-2024-05\.zip: SHA-256 .* does not match"):
        make_source(home, archive).fetch("BTCUSDT", "1h", utc("2024-05-01"), utc("2024-06-01"))

    assert cached_files(home) == []


def test_unpublished_monthly_file_falls_back_to_daily_files(
    home: Path, archive: Archive, source_candles: pd.DataFrame
) -> None:
    # On July 3rd the June monthly file is not out yet: June comes from its daily files.
    archive.publish("monthly", "2024-05")
    for day in pd.date_range("2024-06-01", "2024-07-02", freq="D"):
        archive.publish("daily", f"{day:%Y-%m-%d}")
    source = make_source(home, archive, now=utc("2024-07-03T08:00"))

    frame = source.fetch("BTCUSDT", "1h", utc("2024-05-01"))

    pd.testing.assert_frame_equal(frame, expected(source_candles, "2024-05-01", "2024-07-03"))
    requests = archive.archive_requests()
    assert f"{ROOT}/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-06.zip.CHECKSUM" in requests
    assert f"{ROOT}/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-06-30.zip" in requests
    # Today's file is never published before tomorrow, so it is not asked for.
    assert not any("2024-07-03" in path for path in requests)


def test_months_before_the_listing_are_skipped_and_remembered(
    home: Path, archive: Archive, source_candles: pd.DataFrame
) -> None:
    # BTCUSDT starts on 2017-08-17: May to July 2017 are not in the archive.
    archive.publish("monthly", "2017-08")
    archive.publish("monthly", "2017-09")
    source = make_source(home, archive)

    frame = source.fetch("BTCUSDT", "1h", utc("2017-05-01"), utc("2017-10-01"))

    pd.testing.assert_frame_equal(frame, expected(source_candles, "2017-05-01", "2017-10-01"))
    assert frame.index[0] == utc("2017-08-17T04:00")
    requests = archive.archive_requests()
    assert not any("/daily/" in path for path in requests)
    assert sum(path.endswith("2017-06.zip.CHECKSUM") for path in requests) == 1

    source.fetch("BTCUSDT", "1h", utc("2017-05-01"), utc("2017-10-01"))
    assert archive.archive_requests() == requests


@pytest.mark.parametrize("timeframe", ["10m", "7h", "2d", "2w"])
def test_unpublished_interval_lists_the_supported_ones(home: Path, timeframe: str) -> None:
    source = BinanceArchiveSource(Settings(home=home, binance_data_url="http://127.0.0.1:9"))
    with pytest.raises(
        ConfigError, match=rf"'{timeframe}' is not published .* supported: 1s, 1m, 3m"
    ):
        source.fetch("BTCUSDT", timeframe, utc("2024-01-01"), utc("2024-02-01"))


def test_symbol_without_any_file_is_a_clear_error(home: Path, archive: Archive) -> None:
    archive.publish("monthly", "2024-05")
    source = make_source(home, archive)

    with pytest.raises(NotFoundError, match=r"no NOPEUSDT 1h \(spot\) klines between 2023-01-01"):
        source.fetch("nope/usdt", "1h", utc("2023-01-01"), utc("2023-04-01"))

    assert len(archive.archive_requests()) == 3  # one CHECKSUM per month, nothing else
    assert cached_files(home) == []  # a failed fetch leaves no "missing" markers behind


@pytest.mark.parametrize("spelling", ["BTCUSDT", "btcusdt", "BTC/USDT", " btc/usdt "])
def test_symbol_spellings(spelling: str) -> None:
    assert normalize_symbol(spelling) == "BTCUSDT"


def test_symbol_with_other_characters_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'BTC-USDT' is not a Binance pair"):
        normalize_symbol("BTC-USDT")


def test_registered_with_optional_market(settings: Settings) -> None:
    import trademl.data.sources.binance  # noqa: F401  (registers the source)

    spot = get_source("binance", settings)
    futures = get_source("binance:futures/um", settings)
    assert isinstance(spot, BinanceArchiveSource)
    assert isinstance(futures, BinanceArchiveSource)
    assert (spot.market, futures.market) == ("spot", "futures/um")


def test_conformance(home: Path, archive: Archive, source_candles: pd.DataFrame) -> None:
    """The shipped source checks: validated candles inside the range, exact values, clipping,
    attrs; a month before the listing raises."""
    for day in pd.date_range("2024-07-01", "2024-07-03", freq="D"):
        archive.publish("daily", f"{day:%Y-%m-%d}")
    check_source(
        SourceCase(
            make_source(home, archive),
            "BTCUSDT",
            "1h",
            utc("2024-07-01"),
            utc("2024-07-04"),
            expected=source_candles,
            empty=(utc("2024-02-01"), utc("2024-02-03")),
        )
    )
