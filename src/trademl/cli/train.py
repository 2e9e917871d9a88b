"""``trademl train CONFIG.yaml``: a validated, recorded, out-of-sample training run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trademl.api import train as run_training
from trademl.cli.output import JsonOpt, emit_json
from trademl.config import load_run_config

if TYPE_CHECKING:
    from trademl.run_outputs import RunResult

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def train(
    config: Annotated[
        Path,
        typer.Argument(
            help="Run config (YAML): data, features, labels, models, validation, output."
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", help="Override the config's output folder.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train and validate out of sample (purged), beside the naive baselines."""
    cfg = load_run_config(config)
    if output is not None:
        cfg = cfg.model_copy(update={"output": str(output)})
    result = run_training(cfg)
    if as_json:
        emit_json(train_json(result))
        return
    print_summary(result.summary)
    console.print(
        f"written to {result.output} (predictions.parquet, folds.csv, summary.md, pipeline.pkl) in {result.seconds:.1f}s"
    )
    print_tracking(result)


def train_json(result: RunResult) -> dict[str, Any]:
    """The ``--json`` document of ``trademl train`` (keys documented in the README)."""
    return {
        "output": result.output,
        "seconds": result.seconds,
        "data_hash": result.data_hash,
        "run_id": result.run_id,
        "model_name": result.model_name,
        "registered_version": result.model_version,
        "alias": result.alias,
        "registry_reason": result.registry_reason,
        "served_by": {target: choice.source for target, choice in result.choices.items()},
        "summary": result.summary,
    }


def print_tracking(result: object) -> None:
    """The MLflow run, the registered version, its alias (or why none) and the UI command."""
    from trademl.run_outputs import RunResult

    assert isinstance(result, RunResult)
    if result.choices:
        # Per target, the learned model only where it beat every baseline significantly.
        console.print(
            "served by:        "
            + ", ".join(f"{target} {choice.source}" for target, choice in result.choices.items())
        )
    if result.run_id is None:
        return
    console.print(f"MLflow run:       {result.run_id}")
    if result.model_name is not None:
        console.print(
            f"registered model: {result.model_name} version {result.model_version}, "
            f"alias {result.alias or 'none'}"
        )
        console.print(f"registry:         {result.registry_reason}")
    console.print("MLflow UI:        trademl mlflow ui")


def print_summary(summary: object) -> None:
    """The pooled out-of-sample table, one block per target and horizon, baselines included."""
    import pandas as pd

    from trademl.validation.summary import summary_tables

    assert isinstance(summary, pd.DataFrame)
    for block in summary_tables(summary, brief=True):
        table = Table(title=f"{block.title}: out of sample")
        for header in block.headers:
            table.add_column(header, justify="left" if header == "model" else "right")
        for row in block.rows:
            table.add_row(*row)
        console.print(table)
