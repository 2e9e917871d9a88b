"""``trademl quickstart``: ingest, features, a validated model, its backtest, the registry and
the server's parity check, then one summary table and the commands that come next."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trademl.config import get_settings

if TYPE_CHECKING:
    from trademl.quickstart import QuickstartResult

console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
_stages = Console(stderr=True, highlight=False)

# Backtest rows of the summary: (metric, format); strategy beside buy and hold.
_BACKTEST = (
    ("total_return", "{:+.2%}"),
    ("sharpe", "{:.2f}"),
    ("max_drawdown", "{:.2%}"),
    ("n_trades", "{:,.0f}"),
    ("deflated_sharpe", "{:.3f}"),
    ("deflated_sharpe_grid", "{:.3f}"),
    ("pbo", "{:.2f}"),
)


def quickstart(
    symbol: Annotated[
        str | None,
        typer.Option("--symbol", help="Series (default BTCUSDT; a file's own name for PATH)."),
    ] = None,
    timeframe: Annotated[
        str | None, typer.Option("--timeframe", help="Bar size (default 1h, or the file's).")
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="'binance' (the public archives, about 400 days) or PATH: a .csv, .csv.gz or "
            ".parquet file, or a folder holding SYMBOL_TIMEFRAME files.",
        ),
    ] = "binance",
    deep: Annotated[
        bool, typer.Option("--deep/--no-deep", help="Train a small GRU too (the deep extra).")
    ] = False,
) -> None:
    """Candles to a validated, backtested, registered and served model in one command."""
    from trademl.extras import require
    from trademl.quickstart import run_quickstart

    settings = get_settings()
    # With tracking off nothing is registered, so nothing is replayed through the server.
    if settings.tracking:
        require("mlflow", "tracking", "the quickstart's registry stage")
        require("fastapi", "serve", "the quickstart's parity check of the server")
    started = time.perf_counter()
    result = run_quickstart(
        settings,
        source=Path(source) if source != "binance" else source,
        symbol=symbol,
        timeframe=timeframe,
        deep=deep,
        say=announce,
    )
    print_quickstart(result, time.perf_counter() - started)


def announce(stage: str) -> None:
    """Print a stage's name on stderr as it starts (stdout keeps the summary)."""
    _stages.print(f"[bold]{stage}[/]")


def _fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return pattern.format(value)


def print_quickstart(result: QuickstartResult, seconds: float) -> None:
    """The one summary table: out-of-sample metrics beside the baselines with their intervals,
    the backtest with its deflated Sharpe ratio, and where to look next."""
    from trademl.validation.summary import summary_tables

    candles = result.candles
    table = Table(
        title=f"trademl quickstart: {result.symbol} {result.timeframe}, {len(candles):,} bars "
        f"{candles.index[0]:%Y-%m-%d} to {candles.index[-1]:%Y-%m-%d} ({result.origin}), "
        f"{seconds:.0f}s"
    )
    for column in ("stage", "model / metric", "result"):
        table.add_column(column, overflow="fold")
    training = result.training
    if training is not None:
        for block in summary_tables(training.summary, brief=True):
            # The columns with intervals: the point estimate and its block-bootstrap 95% CI.
            shown = [i for i, name in enumerate(block.headers) if "CI" in name]
            for n, row in enumerate(block.rows):
                cells = "; ".join(f"{block.headers[i]} {row[i]}" for i in shown)
                table.add_row(block.title if n == 0 else "", row[0], cells)
            table.add_section()
    if result.backtest is not None:
        metrics, held = result.backtest.metrics, result.backtest.baseline_metrics
        for n, (name, pattern) in enumerate(_BACKTEST):
            table.add_row(
                "backtest after costs" if n == 0 else "",
                name,
                f"{_fmt(metrics.get(name), pattern)} (buy & hold {_fmt(held.get(name), pattern)})",
            )
        table.add_section()
    for n, (name, value) in enumerate(next_steps(result)):
        table.add_row("next" if n == 0 else "", name, value)
    console.print(table)
    console.print(
        "Out of sample is not the future: the intervals and the deflated Sharpe ratio say how "
        "much of the result luck and the configurations tried can explain.",
        markup=False,
    )


def next_steps(result: QuickstartResult) -> list[tuple[str, str]]:
    """Where the report, the registry, the server and the dashboard are."""
    settings = get_settings()
    home = f"--home {settings.home} "
    rows = [("features", f"{result.features.shape[1]} columns, {result.features_seconds:.1f}s")]
    if result.stage_seconds:
        rows.append(
            ("stage times", ", ".join(f"{k} {v:.0f}s" for k, v in result.stage_seconds.items()))
        )
    training = result.training
    if training is not None:
        rows.append(("report", str(training.output / "summary.md")))
    if result.backtest is not None:
        rows.append(("backtest report", str(result.backtest.output / "report.html")))
    if training is not None and training.run_id is not None:
        rows.append(("MLflow run", training.run_id))
        registered = (
            f"{training.model_name} version {training.model_version}, alias "
            f"{training.alias or 'none'}"
            if training.model_name
            else "not registered"
        )
        rows.append(("registry", registered))
        rows.append(("MLflow UI", f"trademl {home}mlflow ui"))
    if result.parity is not None:
        rows.append(("served = validated", str(result.parity).removeprefix("served = validated ")))
    rows.append(("serve", f"trademl {home}serve   (API docs at http://127.0.0.1:8000/docs)"))
    rows.append(("dashboard", "http://127.0.0.1:8000/ui"))
    return rows
