"""``trademl mlflow ui``: the MLflow UI on the configured tracking backend."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer

from trademl.config import Settings, get_settings

app = typer.Typer(help="The MLflow UI on trademl's tracking backend.", no_args_is_help=True)


def ui_command(settings: Settings, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The command line that serves the UI on ``settings``' backend."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.mlflow_uri,
        "--default-artifact-root",
        settings.mlflow_artifacts,
        "--host",
        host,
        "--port",
        str(port),
    ]


@app.command("ui")
def ui(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 5000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the command instead of running it.")
    ] = False,
) -> None:
    """Start the MLflow UI (runs, metrics, artifacts, registered models) until Ctrl-C."""
    from trademl.tracking.client import connect, redact

    settings = get_settings()
    command = ui_command(settings, host, port)
    if dry_run:
        typer.echo(" ".join(command))
        return
    connect(settings)  # an unreachable backend: a clear error now, not a UI that fails later
    typer.echo(f"MLflow UI on {redact(settings.mlflow_uri)}: http://{host}:{port}")
    raise typer.Exit(subprocess.call(command))
