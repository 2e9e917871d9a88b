"""``trademl evaluate``: learned models against the baselines on every series of a data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console

from trademl.config import get_settings
from trademl.errors import ConfigError
from trademl.evaluation import DEFAULT_MAX_BARS, DEFAULT_MODELS, evaluate_skill, summary_markdown

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def evaluate(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Folder of SYMBOL_TIMEFRAME.csv[.gz] files (default TRADEML_TEST_DATA, the "
            "shared data).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Where the table and the runs go (default home/skill)."),
    ] = None,
    series: Annotated[
        list[str] | None,
        typer.Option("--series", help="Only this SYMBOL_TIMEFRAME (repeatable)."),
    ] = None,
    models: Annotated[
        Path | None,
        typer.Option(
            "--models",
            help="A run config (YAML) whose models are evaluated (default residual LightGBM).",
        ),
    ] = None,
    max_bars: Annotated[
        int, typer.Option("--max-bars", min=1500, help="Bars kept from the end of each series.")
    ] = DEFAULT_MAX_BARS,
) -> None:
    """Train on every series; compare the best learned model with each baseline (DM test)."""
    settings = get_settings()
    folder = data or Path(os.environ.get("TRADEML_TEST_DATA", "../shared/data"))
    target = output or settings.home / "skill"
    entries = DEFAULT_MODELS
    if models is not None:
        loaded = yaml.safe_load(models.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict) or not isinstance(loaded.get("models"), list):
            raise ConfigError(f"--models {models}: expected a run config with a models list")
        entries = tuple(loaded["models"])
    report = evaluate_skill(
        folder,
        target,
        names=series,
        models=entries,
        max_bars=max_bars,
        progress=lambda name: console.print(f"[bold]{name}[/bold]"),
    )
    console.print(summary_markdown(report.counts, report.table))
    console.print(
        f"table: {report.csv}\npage: {report.html}\nsummary: {report.markdown}\n"
        f"{report.table['series'].nunique()} series in {report.seconds / 60:.1f} min"
    )
