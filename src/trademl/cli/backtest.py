"""``trademl backtest CONFIG.yaml`` and ``trademl backtest sweep CONFIG.yaml``."""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trademl.cli.output import JsonOpt, emit_json, recorder
from trademl.json_values import backtest_payload

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

_SHOWN = (
    ("total_return", "{:+.2%}"), ("annual_return", "{:+.2%}"), ("sharpe", "{:.2f}"),
    ("sortino", "{:.2f}"), ("calmar", "{:.2f}"), ("max_drawdown", "{:.2%}"),
    ("win_rate", "{:.1%}"), ("profit_factor", "{:.2f}"), ("expectancy_r", "{:+.3f}"),
    ("total_r", "{:+.1f}"), ("exposure", "{:.1%}"), ("n_trades", "{:,.0f}"),
    ("deflated_sharpe", "{:.3f}"), ("grid_trials", "{:,.0f}"), ("deflated_sharpe_grid", "{:.3f}"),
    ("pbo", "{:.2f}"),
)  # fmt: skip


def backtest(
    first: Annotated[
        str,
        typer.Argument(metavar="[sweep] CONFIG", help="A backtest config, or 'sweep' then one."),
    ],
    second: Annotated[
        str | None, typer.Argument(metavar="", help="The config after 'sweep'.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Backtest a training run's out-of-sample predictions (or sweep a parameter grid)."""
    from trademl.api import backtest as run_backtest
    from trademl.backtest.runner import sweep

    if first == "sweep":
        if second is None:
            raise typer.BadParameter("usage: trademl backtest sweep CONFIG.yaml")
        table = sweep(second, recorder=recorder())
        if as_json:
            emit_json({key: table.attrs.get(key) for key in _SWEEP_KEYS} | {"grid": table})
            return
        print_sweep(table)
        return
    result = run_backtest(first)
    if as_json:
        emit_json(backtest_payload(result))
        return
    print_metrics(result.metrics, result.baseline_metrics)
    out = result.output
    console.print(
        f"report: {out / 'report.html'}  metrics: {out / 'metrics.json'}  "
        f"trades: {out / 'trades.csv'}"
    )


# `backtest sweep --json`: the sweep's attributes beside its grid.
_SWEEP_KEYS = ("n_trials", "best", "deflated_sharpe", "pbo")


def _fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return pattern.format(value)


def print_metrics(metrics: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Strategy and buy-and-hold side by side."""
    table = Table(title="backtest, out-of-sample predictions, after costs")
    for column in ("metric", "strategy", "buy & hold"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, pattern in _SHOWN:
        table.add_row(name, _fmt(metrics.get(name), pattern), _fmt(baseline.get(name), pattern))
    console.print(table)


def print_sweep(table: Any) -> None:
    """The grid, best first, with the deflated Sharpe ratio and PBO."""
    shown = table.sort_values("sharpe", ascending=False).head(15)
    out = Table(title=f"sweep: {table.attrs['n_trials']} configurations")
    for column in ("config", "sharpe", "total_return", "n_trades", "max_drawdown"):
        out.add_column(column, justify="left" if column == "config" else "right")
    for _, row in shown.iterrows():
        out.add_row(
            str(row["config"]),
            _fmt(row["sharpe"], "{:.2f}"),
            _fmt(row["total_return"], "{:+.2%}"),
            _fmt(row["n_trades"], "{:,.0f}"),
            _fmt(row["max_drawdown"], "{:.2%}"),
        )
    console.print(out)
    console.print(
        f"best: {table.attrs['best']}; deflated Sharpe {table.attrs['deflated_sharpe']:.3f} given "
        f"{table.attrs['n_trials']} trials; PBO {table.attrs['pbo']:.2f}"
    )
