"""``trademl runs list|show|compare``: MLflow runs of train, tune and backtest."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trademl.cli.output import JsonOpt, emit_json

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
app = typer.Typer(help="MLflow runs: list, show, compare.", no_args_is_help=True)

MatchOpt = Annotated[str, typer.Option("--match", help="Only metrics whose name contains this.")]


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


# `runs list`: each column's header and the search_runs column it shows ("-" when absent).
_LIST_COLUMNS = {
    "run id": "run_id",
    "experiment": "experiment",
    "name": "run_name",
    "kind": "tags.run_kind",
    "symbol": "tags.symbol",
    "tf": "tags.timeframe",
    "status": "status",
}


@app.command("list")
def list_runs(
    filter_string: Annotated[
        str, typer.Option("--filter", help="MLflow filter, e.g. \"tags.symbol = 'BTCUSDT'\".")
    ] = "",
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", help="Experiment name (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The newest runs, with their kind, symbol, timeframe and registered version."""
    from trademl.tracking.runs import search_runs

    runs = search_runs(filter_string, experiments=experiment or None, max_results=limit)
    if as_json:
        emit_json({"runs": [_listed(row) for _, row in runs.iterrows()]})
        return
    table = Table(title=f"{len(runs)} run(s)")
    for column in (*_LIST_COLUMNS, "started"):
        table.add_column(column)
    for _, row in runs.iterrows():
        cells = [str(row.get(key, "-")) for key in _LIST_COLUMNS.values()]
        table.add_row(*cells, f"{row['start_time']:%Y-%m-%d %H:%M:%S}")
    console.print(table)


def _listed(row: Any) -> dict[str, Any]:
    # `runs list --json`: the table's columns under stable snake_case keys.
    keys = {"kind": "tags.run_kind", "symbol": "tags.symbol", "timeframe": "tags.timeframe"}
    keys |= {name: name for name in ("run_id", "experiment", "run_name", "status")}
    out = {key: row.get(column) for key, column in keys.items()}
    out["start_time"] = row["start_time"].isoformat()
    return out


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="The MLflow run id.")],
    match: MatchOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """A run's tags, params, metrics and artifacts."""
    from trademl.tracking.runs import get_run

    run = get_run(run_id)
    if as_json:
        shown = {key: value for key, value in run["metrics"].items() if match in key}
        emit_json(run | {"metrics": shown})
        return
    console.print(f"[bold]{run['run_name']}[/]  {run_id}  ({run['experiment']}, {run['status']})")
    for title, values in (("tags", run["tags"]), ("params", run["params"])):
        table = Table(title=title)
        table.add_column("key")
        table.add_column("value", overflow="fold")
        for key, value in sorted(values.items()):
            if not key.startswith("mlflow."):
                table.add_row(key, str(value)[:200])
        console.print(table)
    metrics = Table(title="metrics")
    metrics.add_column("name")
    metrics.add_column("value", justify="right")
    for key, value in sorted(run["metrics"].items()):
        if match in key:
            metrics.add_row(key, _number(value))
    console.print(metrics)
    console.print("artifacts: " + ", ".join(run["artifacts"]))


@app.command("compare")
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    match: MatchOpt = "",
) -> None:
    """Metrics side by side, one column per run (metrics that any of them logged)."""
    from trademl.tracking.runs import get_run

    runs = [get_run(run_id) for run_id in run_ids]
    table = Table(title="metrics by run")
    table.add_column("metric")
    for run in runs:
        table.add_column(f"{run['run_name']}\n{run['run_id'][:8]}", justify="right")
    names = sorted({k for run in runs for k in run["metrics"] if match in k})
    for name in names:
        table.add_row(name, *(_number(run["metrics"].get(name)) for run in runs))
    for key in ("data_hash", "feature_set", "primary_model", "git_commit"):
        table.add_row(f"tag {key}", *(str(run["tags"].get(key, "-"))[:12] for run in runs))
    console.print(table)
