"""``trademl features``: list indicators and presets, build a feature set on stored candles."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trademl.config import get_settings
from trademl.data import ingest as data_library
from trademl.data.sources.base import parse_time
from trademl.data.timeframes import Timeframe
from trademl.features.cache import FeatureCache
from trademl.features.engine import build_features, warmup_bars
from trademl.features.indicators import FAMILIES, all_indicators
from trademl.features.io import write_frame
from trademl.features.sets import load_feature_set, preset_names

app = typer.Typer(help="Indicators, feature sets and feature building.", no_args_is_help=True)
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@app.command("list")
def list_command(
    family: Annotated[
        str | None, typer.Option("--family", help=f"Only one family: {', '.join(FAMILIES)}.")
    ] = None,
    timeframe: Annotated[
        str, typer.Option("--timeframe", help="Base timeframe for preset warm-ups.")
    ] = "1h",
) -> None:
    """Every indicator with its parameters and outputs, and every preset."""
    indicators = [i for i in all_indicators() if family is None or i.family == family]
    if family is not None and not indicators:
        raise typer.BadParameter(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    table = Table(title=f"{len(indicators)} indicators")
    for column in ("name", "family", "parameters (defaults)", "columns at defaults", "source"):
        table.add_column(column)
    for indicator in indicators:
        params = indicator.resolve()
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "-"
        table.add_row(
            indicator.name,
            indicator.family,
            shown,
            ", ".join(indicator.columns(params)),
            indicator.source,
        )
    console.print(table)
    presets = Table(title="presets")
    for column in ("name", "version", "columns", f"warm-up bars at {timeframe}", "description"):
        presets.add_column(column)
    for name in preset_names():
        fs = load_feature_set(name)
        presets.add_row(
            name,
            str(fs.version),
            str(len(fs.columns(timeframe))),
            f"{warmup_bars(fs, timeframe):,}",
            " ".join(fs.description.split())[:90],
        )
    console.print(presets)


@app.command("build")
def build_command(
    feature_set: Annotated[str, typer.Option("--set", help="Preset name or YAML file.")],
    symbol: Annotated[str, typer.Option("--symbol", help="Stored symbol.")],
    timeframe: Annotated[str, typer.Option("--timeframe", help="Stored timeframe.")],
    out: Annotated[Path, typer.Option("--out", help="Output .parquet, .csv or .csv.gz.")],
    start: Annotated[str | None, typer.Option("--start", help="First bar (inclusive).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="End (exclusive).")] = None,
    keep_warmup: Annotated[
        bool,
        typer.Option("--keep-warmup/--drop-warmup", help="Keep the NaN warm-up rows or drop them."),
    ] = False,
    use_cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Reuse cached features.")
    ] = True,
) -> None:
    """Build a feature set on stored candles and write it to a file."""
    fs = load_feature_set(feature_set)
    tf = Timeframe.parse(timeframe)
    settings = get_settings()
    first, last = parse_time(start, argument="--start"), parse_time(end, argument="--end")
    with data_library.open_default_store(settings) as store:
        candles = data_library.read_series(store, symbol, tf.name, first, last)
    candles.attrs.update(symbol=symbol, timeframe=tf.name)
    cache = FeatureCache(settings.cache_dir / "features") if use_cache else None
    started = time.perf_counter()
    features = build_features(candles, fs, warmup="keep" if keep_warmup else "drop", cache=cache)
    seconds = time.perf_counter() - started
    target = write_frame(features, out)
    warm = features.attrs["warmup_bars"]
    nan_cells = int(features.isna().to_numpy().sum())
    console.print(
        f"{fs.name} v{fs.version} on {symbol} {tf.name}: {features.shape[1]} features × "
        f"{len(features):,} rows in {seconds:.2f}s; {warm:,} warm-up rows "
        f"{'kept (NaN)' if keep_warmup else 'dropped'}; {nan_cells:,} NaN cells; wrote {target}"
    )
