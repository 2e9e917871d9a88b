"""The ``trademl`` command: global options, command groups, and the one place where
TradeMLError becomes a one-line message and a non-zero exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from trademl import __version__
from trademl.cli import backtest as backtest_commands
from trademl.cli import data as data_commands
from trademl.cli import demo as demo_commands
from trademl.cli import evaluate as evaluate_commands
from trademl.cli import features as feature_commands
from trademl.cli import jobs as jobs_commands
from trademl.cli import labels as labels_commands
from trademl.cli import mlflow_ui as mlflow_commands
from trademl.cli import models as models_commands
from trademl.cli import monitor as monitor_commands
from trademl.cli import quickstart as quickstart_commands
from trademl.cli import runs as runs_commands
from trademl.cli import serve as serve_commands
from trademl.cli import trade as trade_commands
from trademl.cli import train as train_commands
from trademl.cli import tune as tune_commands
from trademl.cli import worker as worker_commands
from trademl.config import get_settings, reload_settings
from trademl.errors import TradeMLError
from trademl.log import configure_logging

app = typer.Typer(
    name="trademl",
    help="trademl: honest, causal, reproducible ML models from OHLCV candles.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_commands.app, name="data")
app.add_typer(feature_commands.app, name="features")
app.add_typer(labels_commands.app, name="labels")
app.add_typer(runs_commands.app, name="runs")
app.add_typer(models_commands.app, name="models")
app.add_typer(mlflow_commands.app, name="mlflow")
app.command("quickstart")(quickstart_commands.quickstart)
app.command("demo")(demo_commands.demo)
app.command("train")(train_commands.train)
app.command("backtest")(backtest_commands.backtest)
app.command("tune")(tune_commands.tune)
app.command("evaluate")(evaluate_commands.evaluate)
app.command("worker")(worker_commands.worker)
app.command("serve")(serve_commands.serve)
app.command("dashboard")(serve_commands.dashboard)
app.command("monitor")(monitor_commands.monitor)
app.command("retrain")(monitor_commands.retrain)
app.command("watch")(monitor_commands.watch)
app.command("trade")(trade_commands.trade)
app.command("trade-stop")(trade_commands.trade_stop)
app.add_typer(jobs_commands.app, name="jobs")

_errors = Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"trademl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="State folder (overrides TRADEML_HOME).", show_default=False),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="Log level on stderr (overrides TRADEML_LOG_LEVEL)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Global options, applied before any command runs."""
    overrides: dict[str, object] = {}
    if home is not None:
        overrides["home"] = home.expanduser().resolve()
    if log_level is not None:
        overrides["log_level"] = log_level
    settings = reload_settings(**overrides) if overrides else get_settings()
    configure_logging(settings.log_level, settings.log_format)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, mapping TradeMLError to a message and exit code."""
    try:
        app(args=argv, prog_name="trademl")
    except TradeMLError as error:
        _errors.print(f"[bold red]error:[/] {escape(str(error))}", markup=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        _errors.print("interrupted; the store is unchanged by the unfinished write")
        sys.exit(130)
    except BrokenPipeError:
        # `trademl data show ... | head` closes stdout early; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
