"""``trademl labels``: build prediction targets from stored candles."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from trademl.config import get_settings
from trademl.data import ingest as library
from trademl.data.candles import with_meta
from trademl.data.sources.base import parse_time
from trademl.data.timeframes import Timeframe
from trademl.features.labels import build_labels, parse_label_specs

app = typer.Typer(help="Labels: forward-looking targets built from stored candles.")
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
_CLASSES = ("direction", "triple_barrier")


class Kind(StrEnum):
    """Label kinds (see :mod:`trademl.features.labels`)."""

    direction = "direction"
    max_high = "max_high"
    min_low = "min_low"
    forward_return = "forward_return"
    triple_barrier = "triple_barrier"


def _summary(labels: pd.DataFrame, title: str) -> Table:
    """Rows, complete rows and class balance (or mean/std) of every label column."""
    table = Table(title=title)
    for column in ("label", "rows", "complete", "labelled", "-1", "0", "+1", "mean", "std"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for name in labels.columns:
        if name.startswith("complete_"):
            continue
        values = labels[name]
        kind, bars = name.rsplit("_", 1)
        complete = int(labels[f"complete_{bars}"].sum())
        present = values.dropna()
        cells = [name, f"{len(values):,}", f"{complete:,}", f"{len(present):,}"]
        if kind in _CLASSES:
            for label in (-1.0, 0.0, 1.0):
                hits = int((present == label).sum())
                share = hits / len(present) if len(present) else float("nan")
                cells.append(f"{hits:,} ({share:.1%})")
            cells += ["-", "-"]
        else:
            mean = float(np.mean(present)) if len(present) else float("nan")
            std = float(np.std(present, ddof=1)) if len(present) > 1 else float("nan")
            cells += ["-", "-", "-", f"{mean:.6f}", f"{std:.6f}"]
        table.add_row(*cells)
    return table


@app.command("build")
def build_command(
    symbol: Annotated[str, typer.Option("--symbol", help="Symbol as stored, e.g. BTCUSDT.")],
    timeframe: Annotated[str, typer.Option("--timeframe", help="Timeframe, e.g. 1h.")],
    kinds: Annotated[
        list[Kind],
        typer.Option("--kind", help="Label kind; repeat for several (each with every horizon)."),
    ],
    horizons: Annotated[
        list[str],
        typer.Option(
            "--horizon",
            help="Bars ahead (24) or scalping, intraday, swing, position; repeat for several.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output .csv, .csv.gz or .parquet.")],
    dead_zone: Annotated[
        float, typer.Option("--dead-zone", min=0.0, help="direction: |log return| seen as 0.")
    ] = 0.0,
    profit_take: Annotated[
        float, typer.Option("--profit-take", help="triple_barrier: upper barrier in sigmas.")
    ] = 2.0,
    stop_loss: Annotated[
        float, typer.Option("--stop-loss", help="triple_barrier: lower barrier in sigmas.")
    ] = 2.0,
    vol_window: Annotated[
        int, typer.Option("--vol-window", help="triple_barrier: bars in the volatility window.")
    ] = 20,
    start: Annotated[
        str | None, typer.Option("--start", help="First bar (inclusive), e.g. 2024-01-01.")
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--end", help="End (exclusive); label windows never look past it."),
    ] = None,
) -> None:
    """Build every kind × every horizon from a stored series and write them atomically."""
    specs = [
        {
            "kind": kind.value,
            "horizon": horizon,
            "dead_zone": dead_zone,
            "profit_take": profit_take,
            "stop_loss": stop_loss,
            "vol_window": vol_window,
        }
        for kind in kinds
        for horizon in horizons
    ]
    tf = Timeframe.parse(timeframe)
    first, last = parse_time(start, argument="--start"), parse_time(end, argument="--end")
    parsed = parse_label_specs(specs)  # fail on a bad horizon before touching the store
    with library.open_default_store(get_settings()) as store:
        candles = library.read_series(store, symbol, tf.name, first, last)
    with_meta(candles, symbol=symbol, timeframe=tf.name)
    labels = build_labels(candles, parsed)
    target = library.export_candles(labels, out)
    console.print(_summary(labels, f"{symbol} {tf.name}: {len(labels):,} bars → {target}"))
