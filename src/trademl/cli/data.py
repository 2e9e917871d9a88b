"""``trademl data``: import, ingest, list, show, validate, resample, export."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from trademl.config import get_settings
from trademl.data import ingest as library
from trademl.data.candles import COLUMNS, candle_index
from trademl.data.gaps import GapReport, gap_report
from trademl.data.sources.base import parse_time
from trademl.data.timeframes import Timeframe

app = typer.Typer(
    help="Market data: import, ingest, inspect, resample and export candles.", no_args_is_help=True
)
# Piped output is not a terminal: give tables room rather than Rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
_TIME = "%Y-%m-%d %H:%M"


class OutputFormat(StrEnum):
    """Output formats of ``data show``."""

    table = "table"
    csv = "csv"
    json = "json"


SymbolArg = Annotated[str, typer.Argument(help="Symbol as stored, e.g. BTCUSDT.")]
TimeframeArg = Annotated[str, typer.Argument(help="Timeframe, e.g. 1m, 15m, 1h, 4h, 1d, 1w.")]
StartOpt = Annotated[
    str | None, typer.Option("--start", help="First bar (inclusive), e.g. 2024-01-01.")
]
EndOpt = Annotated[str | None, typer.Option("--end", help="End (exclusive), e.g. 2024-02-01.")]


def _gaps_text(report: GapReport) -> str:
    if report.missing_bars == 0:
        return "none"
    return f"{report.missing_bars:,} bars in {len(report.gaps):,} gaps"


@app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(help="A candle file or a folder of them.")],
    symbol: Annotated[
        str | None, typer.Option("--symbol", help="Symbol (inferred from SYMBOL_TF.csv).")
    ] = None,
    timeframe: Annotated[
        str | None, typer.Option("--timeframe", help="Timeframe (inferred from SYMBOL_TF.csv).")
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="Time zone of naive timestamps.")] = "UTC",
    adjusted: Annotated[
        bool, typer.Option("--adjusted", help="Scale OHLC by the Adj Close column.")
    ] = False,
) -> None:
    """Import CSV/Parquet candles into the store (all files in one transaction)."""
    if timeframe:
        Timeframe.parse(timeframe)
    settings = get_settings()
    with library.open_default_store(settings) as store:
        results = library.import_path(
            path, store, symbol=symbol, timeframe=timeframe, tz=tz, adjusted=adjusted
        )
    table = Table(title=f"imported into {settings.market_store_url}")
    for column in (
        "symbol",
        "tf",
        "rows",
        "first (UTC)",
        "last (UTC)",
        "new",
        "updated",
        "missing bars",
    ):
        table.add_column(
            column, justify="right" if column in ("rows", "new", "updated") else "left"
        )
    for result in results:
        r = result.report
        table.add_row(
            r.symbol,
            r.timeframe,
            f"{result.rows:,}",
            result.first.strftime(_TIME),
            result.last.strftime(_TIME),
            f"{r.inserted:,}",
            f"{r.updated:,}",
            _gaps_text(result.gaps),
        )
    console.print(table)


@app.command("ingest")
def ingest_command(
    source: Annotated[str, typer.Argument(help="binance, ccxt:<exchange>, polygon or yahoo.")],
    symbol: Annotated[
        str, typer.Option("--symbol", help="Symbol at the source, e.g. BTCUSDT, BTC/USDT, SPY.")
    ],
    timeframe: Annotated[str, typer.Option("--timeframe", help="Timeframe, e.g. 1h.")],
    start: StartOpt = None,
    end: EndOpt = None,
) -> None:
    """Download candles from a network source into the store."""
    settings = get_settings()
    tf = Timeframe.parse(timeframe)
    first, last = parse_time(start, argument="--start"), parse_time(end, argument="--end")
    with library.open_default_store(settings) as store:
        result = library.ingest(
            source, store, settings, symbol=symbol, timeframe=tf.name, start=first, end=last
        )
    r = result.report
    console.print(
        f"{source} {r.symbol} {r.timeframe}: {result.rows:,} bars from {result.first.strftime(_TIME)} "
        f"to {result.last.strftime(_TIME)} UTC; inserted {r.inserted:,}, updated {r.updated:,}, "
        f"unchanged {r.unchanged:,}; missing bars: {_gaps_text(result.gaps)}"
    )


@app.command("list")
def list_command() -> None:
    """List the stored series with row counts, spans and missing bars."""
    settings = get_settings()
    with library.open_default_store(settings) as store:
        series = store.list_series()
    if not series:
        console.print(
            f"the store {settings.market_store_url} is empty; try 'trademl data import PATH'"
        )
        return
    table = Table(title=settings.market_store_url)
    for column in ("symbol", "tf", "rows", "first (UTC)", "last (UTC)", "missing bars"):
        table.add_column(column, justify="right" if column in ("rows", "missing bars") else "left")
    for info in series:
        step = Timeframe.parse(info.timeframe).delta
        expected = int((info.last - info.first) / step) + 1
        table.add_row(
            info.symbol,
            info.timeframe,
            f"{info.rows:,}",
            info.first.strftime(_TIME),
            info.last.strftime(_TIME),
            f"{expected - info.rows:,}",
        )
    console.print(table)


@app.command("show")
def show_command(
    symbol: SymbolArg,
    timeframe: TimeframeArg,
    start: StartOpt = None,
    end: EndOpt = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table, or csv/json (data only, on stdout).")
    ] = OutputFormat.table,
    rows: Annotated[
        int, typer.Option("--rows", min=1, help="Rows shown at each end (table format).")
    ] = 10,
) -> None:
    """Show stored candles; csv and json write only the data, so they can be piped."""
    tf = Timeframe.parse(timeframe)
    first, last = parse_time(start, argument="--start"), parse_time(end, argument="--end")
    with library.open_default_store(get_settings()) as store:
        candles = library.read_series(store, symbol, tf.name, first, last)
    if output is OutputFormat.csv:
        library.to_csv_frame(candles).to_csv(sys.stdout, index=False)
        return
    if output is OutputFormat.json:
        records = library.to_csv_frame(candles).to_dict(orient="records")
        json.dump(records, sys.stdout)
        sys.stdout.write("\n")
        return
    table = Table(title=f"{symbol} {tf.name}: {len(candles):,} bars")
    table.add_column("timestamp (UTC)")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    shown = (
        candles if len(candles) <= 2 * rows else pd.concat([candles.head(rows), candles.tail(rows)])
    )
    for position, (stamp, bar) in enumerate(shown.iterrows()):
        if len(candles) > 2 * rows and position == rows:
            table.add_row("…", "", "", "", "", "")
        table.add_row(
            pd.Timestamp(str(stamp)).strftime(_TIME),
            *(f"{bar[c]:.10g}" for c in COLUMNS),
        )
    console.print(table)


@app.command("validate")
def validate_command(
    path: Annotated[Path, typer.Argument(help="A candle file or a folder of them.")],
    symbol: Annotated[
        str | None, typer.Option("--symbol", help="Symbol (inferred from SYMBOL_TF.csv).")
    ] = None,
    timeframe: Annotated[
        str | None, typer.Option("--timeframe", help="Timeframe (inferred from SYMBOL_TF.csv).")
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="Time zone of naive timestamps.")] = "UTC",
) -> None:
    """Check files against the Candles contract without storing them; report gaps."""
    files = library.candle_files(path)
    loaded = library.load_files(files, symbol=symbol, timeframe=timeframe, tz=tz)
    table = Table(title=f"{len(loaded)} valid file(s) in {path}")
    for column in ("file", "rows", "first", "last", "missing bars", "largest gap"):
        table.add_column(column)
    for file, batch in loaded:
        report = gap_report(candle_index(batch.candles), batch.timeframe)
        largest = report.largest(1)
        table.add_row(
            str(file.relative_to(path)) if path.is_dir() else file.name,
            f"{len(batch.candles):,}",
            batch.candles.index[0].strftime(_TIME),
            batch.candles.index[-1].strftime(_TIME),
            _gaps_text(report),
            f"{largest[0].missing_bars} bars from {largest[0].start.strftime(_TIME)}"
            if largest
            else "-",
        )
    console.print(table)


@app.command("gaps")
def gaps_command(
    symbol: SymbolArg,
    timeframe: TimeframeArg,
    top: Annotated[
        int, typer.Option("--top", min=1, help="How many of the largest gaps to list.")
    ] = 10,
) -> None:
    """Gap report of a stored series: expected vs present bars, and the largest holes."""
    with library.open_default_store(get_settings()) as store:
        candles = library.read_series(store, symbol, timeframe)
    report = gap_report(candle_index(candles), timeframe)
    console.print(
        f"{symbol} {report.timeframe}: expected {report.expected_bars:,} bars, present "
        f"{report.present_bars:,}, missing {report.missing_bars:,} ({report.coverage:.4%} coverage)"
    )
    for gap in report.largest(top):
        console.print(
            f"  {gap.start.strftime(_TIME)} → {gap.end.strftime(_TIME)}: {gap.missing_bars:,} bars"
        )


@app.command("resample")
def resample_command(
    symbol: SymbolArg,
    source_timeframe: Annotated[
        str, typer.Argument(metavar="FROM", help="Stored timeframe, e.g. 1m.")
    ],
    target_timeframe: Annotated[
        str, typer.Argument(metavar="TO", help="Higher timeframe, e.g. 1h.")
    ],
) -> None:
    """Aggregate a stored series to a higher timeframe and store the result."""
    with library.open_default_store(get_settings()) as store:
        result, report = library.resample_stored(store, symbol, source_timeframe, target_timeframe)
    console.print(
        f"{symbol} {source_timeframe} → {report.timeframe}: {len(result.candles):,} bars "
        f"(inserted {report.inserted:,}, updated {report.updated:,}, unchanged {report.unchanged:,})"
    )
    if result.incomplete_bars:
        console.print(
            f"  {result.incomplete_bars:,} bars built from fewer than {result.expected_per_bar} "
            f"{Timeframe.parse(source_timeframe).name} bars (gaps in the source), e.g. "
            + ", ".join(t.strftime(_TIME) for t in result.incomplete.index[:3])
        )
    if result.dropped_unfinished is not None:
        console.print(
            f"  dropped the unfinished last bar {result.dropped_unfinished.strftime(_TIME)}"
        )


@app.command("export")
def export_command(
    symbol: SymbolArg,
    timeframe: TimeframeArg,
    path: Annotated[Path, typer.Argument(help="Output .csv, .csv.gz or .parquet.")],
    start: StartOpt = None,
    end: EndOpt = None,
) -> None:
    """Export a stored series to a file (written atomically)."""
    first, last = parse_time(start, argument="--start"), parse_time(end, argument="--end")
    with library.open_default_store(get_settings()) as store:
        candles = library.read_series(store, symbol, timeframe, first, last)
    target = library.export_candles(candles, path)
    console.print(f"wrote {len(candles):,} bars to {target}")
