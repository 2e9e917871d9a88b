"""Library entry points behind ``trademl data ...``: import files, ingest from sources,
resample and export stored series. The CLI and the API call these; no logic lives there."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from loguru import logger

from trademl.atomic import atomic_path
from trademl.config import Settings
from trademl.data.candles import candle_index, validate_candles
from trademl.data.gaps import GapReport, gap_report
from trademl.data.resample import ResampleResult, resample_candles
from trademl.data.sources.base import get_source
from trademl.data.sources.files import infer_name, is_candle_file, read_candle_file
from trademl.data.stores import Batch, MarketStore, WriteReport, open_store
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError, NotFoundError
from trademl.progress import progress_bar


@dataclass(frozen=True)
class ImportResult:
    """One series written by an import, with its gap report."""

    path: str
    report: WriteReport
    rows: int
    first: pd.Timestamp
    last: pd.Timestamp
    gaps: GapReport


def open_default_store(settings: Settings) -> MarketStore:
    """The store configured by settings (DuckDB under TRADEML_HOME unless TRADEML_STORE_URL)."""
    return open_store(settings.market_store_url, chunk_rows=settings.store_chunk_rows)


def candle_files(path: Path) -> list[Path]:
    """The candle files at ``path`` (the file itself, or every candle file below a folder)."""
    if not path.exists():
        raise DataValidationError("no such file or folder", source=str(path), rule="not_found")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and is_candle_file(p))
    if not files:
        raise DataValidationError(
            "the folder holds no .csv, .csv.gz or .parquet files", source=str(path), rule="empty"
        )
    return files


def load_files(
    files: Iterable[Path],
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    tz: str = "UTC",
    adjusted: bool = False,
) -> list[tuple[Path, Batch]]:
    """Read and validate every file before anything is written."""
    files = list(files)
    if symbol and len(files) > 1:
        raise ConfigError(
            "--symbol names one series; with a folder, name files SYMBOL_TIMEFRAME.csv"
        )
    loaded = []
    with progress_bar("reading", len(files), unit="files") as advance:
        for path in files:
            inferred = infer_name(path)
            tf = timeframe or (inferred.timeframe if inferred else None)
            sym = symbol or (inferred.symbol if inferred else None)
            if not sym or not tf:
                raise ConfigError(
                    f"{path}: cannot tell the symbol and timeframe; name the file "
                    "SYMBOL_TIMEFRAME.csv or pass --symbol and --timeframe"
                )
            candles = read_candle_file(path, symbol=sym, timeframe=tf, tz=tz, adjusted=adjusted)
            loaded.append((path, Batch(candles, sym, Timeframe.parse(tf).name)))
            advance()
    return loaded


def import_path(
    path: str | Path,
    store: MarketStore,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    tz: str = "UTC",
    adjusted: bool = False,
) -> list[ImportResult]:
    """Import a file or a folder of files into ``store`` in one transaction.

    Every file is read and validated first; one bad file means nothing is written.
    """
    loaded = load_files(
        candle_files(Path(path)), symbol=symbol, timeframe=timeframe, tz=tz, adjusted=adjusted
    )
    rows = sum(len(batch.candles) for _, batch in loaded)
    logger.info("writing {:,} rows of {} series to {}", rows, len(loaded), _display(store))
    with progress_bar("writing", rows, unit="rows") as advance:
        reports = store.write_many([batch for _, batch in loaded], progress=advance)
    return [_result(str(p), b, r) for (p, b), r in zip(loaded, reports, strict=True)]


def ingest(
    source_name: str,
    store: MarketStore,
    settings: Settings,
    *,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> ImportResult:
    """Fetch candles from a network source and upsert them into ``store``."""
    tf = Timeframe.parse(timeframe)
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"--start {start} must be before --end {end}")
    source = get_source(source_name, settings)
    candles = source.fetch(symbol, tf, start, end)
    validate_candles(candles, source=f"{source_name}:{symbol}")
    report = store.write(candles, symbol, tf.name)
    result = _result(f"{source_name}:{symbol}", Batch(candles, symbol, tf.name), report)
    if result.gaps.misaligned_bars:
        # Kept as the source labels them (moving a bar's start would shift its close in time),
        # but they cannot be resampled on the UTC grid.
        ns = candle_index(candles).as_unit("ns").asi8
        example = candles.index[tf.floor_ns(ns) != ns][0]
        logger.warning(
            "{} of {} {} bars do not start on the UTC {} grid (e.g. {}); stored as labelled",
            result.gaps.misaligned_bars,
            len(candles),
            symbol,
            tf.name,
            example,
        )
    return result


def resample_stored(
    store: MarketStore, symbol: str, source_timeframe: str, target_timeframe: str
) -> tuple[ResampleResult, WriteReport]:
    """Resample a stored series to a higher timeframe and store the result."""
    candles = read_series(store, symbol, source_timeframe)
    result = resample_candles(candles, source_timeframe, target_timeframe)
    report = store.write(result.candles, symbol, Timeframe.parse(target_timeframe).name)
    return result, report


def read_series(
    store: MarketStore,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Read a stored series; a series the store does not hold is a :class:`NotFoundError`."""
    name = Timeframe.parse(timeframe).name
    candles = store.read(symbol, name, start, end)
    if candles.empty and store.series_info(symbol, name) is None:
        held = ", ".join(f"{s.symbol} {s.timeframe}" for s in store.list_series()) or "nothing yet"
        raise NotFoundError(f"no {symbol} {name} candles in the store (it holds: {held})")
    return candles


def export_candles(candles: pd.DataFrame, path: str | Path) -> Path:
    """Write candles to ``.csv``, ``.csv.gz`` or ``.parquet`` atomically (temp file + rename)."""
    target = Path(path)
    lower = target.name.lower()
    if not lower.endswith((".csv", ".csv.gz", ".parquet")):
        raise ConfigError(f"export path {target} must end in .csv, .csv.gz or .parquet")
    with atomic_path(target) as temp:
        if lower.endswith(".parquet"):
            candles.to_parquet(temp)
        else:
            frame = to_csv_frame(candles)
            frame.to_csv(temp, index=False, compression="gzip" if lower.endswith(".gz") else None)
    return target


def to_csv_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """Candles as the plain frame written to CSV: ISO-8601 UTC ``timestamp`` then OHLCV."""
    frame = candles.reset_index()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return frame


def _result(path: str, batch: Batch, report: WriteReport) -> ImportResult:
    index = candle_index(batch.candles)
    return ImportResult(
        path, report, len(index), index[0], index[-1], gap_report(index, batch.timeframe)
    )


def _display(store: MarketStore) -> str:
    display = getattr(store, "display_url", None)
    return str(display) if display else store.url
