"""``trademl tune CONFIG.yaml``: hyperparameter search (or AutoML) on the purged walk-forward."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trademl.cli.output import JsonOpt, emit_json, recorder
from trademl.config import load_run_config
from trademl.tuning import TuneResult
from trademl.tuning import tune as run_tuning

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
TOP_ROWS = 10


def tune(
    config: Annotated[
        Path, typer.Argument(help="Run config (YAML); its first model kind is tuned.")
    ],
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Trials this process runs.")
    ] = None,
    automl: Annotated[
        bool | None,
        typer.Option(
            "--automl/--no-automl",
            help="Search model kinds too, then stack the best trials (default: the config's "
            "tuning.automl).",
        ),
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit",
            min=0,
            help="Wall-time budget in seconds of the whole call: data, trials and the stack.",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="'memory', 'sqlite' (optuna.db under the home) or a database URL shared by "
            "workers (default TRADEML_OPTUNA_STORAGE, else memory).",
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name; workers with one name share it.")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="Label kind to tune, or kind:horizon (default the first)."),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", min=1, help="Trials at once (threads).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Tune hyperparameters on the config's purged walk-forward; write tuning/ under output."""
    cfg = load_run_config(config)
    result = run_tuning(
        cfg,
        trials=trials,
        storage=storage,
        study_name=study,
        target=target,
        time_limit=time_limit,
        automl=automl,
        n_jobs=jobs,
        recorder=recorder(),
    )
    if as_json:
        emit_json(tune_json(result))
        return
    print_result(result)


def tune_json(result: TuneResult) -> dict[str, Any]:
    """The ``--json`` document of ``trademl tune`` (keys documented in the README)."""
    return {
        "target": result.target,
        "metric": result.metric,
        "direction": result.direction,
        "best_value": result.best_value,
        "best_kind": result.best_kind,
        "best_params": result.best_params,
        "n_trials": result.n_trials,
        "n_complete": result.n_complete,
        "n_pruned": result.n_pruned,
        "best_residual": result.best_residual,
        "stacked_score": result.stacked_score,
        "stack_chosen": result.stack_chosen,
        "stack_note": result.stack_note,
        "time_limit": result.time_limit,
        "output": result.output,
        "seconds": result.seconds,
        "trials": result.trials,
    }


def print_result(result: TuneResult) -> None:
    """The best trials as a table, then the counts and where the outputs are.

    Parameters
    ----------
    result : TuneResult
        The tuning result.
    """
    complete = result.trials[result.trials["state"] == "COMPLETE"]
    top = complete.sort_values("value", ascending=result.direction == "minimize").head(TOP_ROWS)
    table = Table(title=f"{result.target}: best trials by mean out-of-sample {result.metric}")
    for column in ("trial", "kind", result.metric, "seconds", "params"):
        table.add_column(column, justify="left" if column in ("kind", "params") else "right")
    for _, row in top.iterrows():
        table.add_row(
            str(row["number"]),
            str(row["kind"]),
            f"{row['value']:.5f}",
            "-" if math.isnan(row["seconds"]) else f"{row['seconds']:.1f}",
            str(row["params"]),
        )
    console.print(table)
    console.print(
        f"trials: {result.n_trials} ({result.n_complete} complete, {result.n_pruned} pruned, "
        f"{result.n_trials - result.n_complete - result.n_pruned} other); "
        f"best {result.metric} {result.best_value:.5f} ({result.best_kind})"
    )
    if result.stack_note:
        console.print(f"AutoML: {result.stack_note}")
    budget = "" if result.time_limit is None else f" (time limit {result.time_limit:g}s)"
    console.print(
        f"written to {result.output} (trials.csv, best.yaml, summary.json) in "
        f"{result.seconds:.1f}s{budget}"
    )
