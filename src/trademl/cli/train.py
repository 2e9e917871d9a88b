"""``trademl train CONFIG.yaml``: a validated, recorded, out-of-sample training run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trademl.config import load_run_config
from trademl.workflow import run

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
) -> None:
    """Train and validate out of sample (purged), beside the naive baselines."""
    cfg = load_run_config(config)
    if output is not None:
        cfg = cfg.model_copy(update={"output": str(output)})
    result = run(cfg)
    print_summary(result.summary)
    console.print(
        f"written to {result.output} (predictions.parquet, folds.csv, summary.md, models/) in {result.seconds:.1f}s"
    )
    print_tracking(result)


def print_tracking(result: object) -> None:
    """The MLflow run, the registered version, its alias (or why none) and the UI command."""
    from trademl.workflow import RunResult

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

    assert isinstance(summary, pd.DataFrame)
    for (target, horizon), part in summary.groupby(["target", "horizon"], sort=False):
        table = Table(
            title=f"{target}, {horizon} ({int(part['horizon_bars'].iloc[0])} bars): out of sample"
        )
        if target == "direction":
            columns = ["model", "accuracy", "95% CI", "AUC", "log loss", "Brier", "n"]
        else:
            columns = ["model", "R²", "MAE", "IC", "coverage", "MC-dropout cov.", "n"]
        for column in columns:
            table.add_column(column, justify="left" if column == "model" else "right")
        for _, r in part.iterrows():
            if target == "direction":
                cells = [
                    f"{r['accuracy']:.4f}",
                    f"[{r['accuracy_lo']:.4f}, {r['accuracy_hi']:.4f}]",
                    f"{r['roc_auc']:.4f}",
                    f"{r['log_loss']:.4f}",
                    f"{r['brier']:.4f}",
                    f"{int(r['n']):,}",
                ]
            else:
                coverage, mc = (r.get(key) for key in ("coverage", "coverage_mc_dropout"))
                cells = [
                    f"{r['r2']:+.4f}",
                    f"{r['mae']:.5f}",
                    f"{r['ic']:+.4f}",
                    "-" if coverage is None or pd.isna(coverage) else f"{coverage:.3f}",
                    "-" if mc is None or pd.isna(mc) else f"{mc:.3f}",
                    f"{int(r['n']):,}",
                ]
            table.add_row(str(r["model"]), *cells)
        console.print(table)
