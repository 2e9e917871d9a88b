"""``trademl jobs``: submit, list, show, cancel and retry background jobs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trademl.errors import ConfigError
from trademl.jobs import JobInfo, JobState, open_queue

app = typer.Typer(help="Background jobs: submit, list, show, cancel, retry.", no_args_is_help=True)
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

JobIdArg = Annotated[str, typer.Argument(help="A job id, as printed by `trademl jobs submit`.")]


def _print_json(info: JobInfo) -> None:
    typer.echo(json.dumps(info.to_dict(), indent=2))


@app.command("submit")
def submit(
    kind: Annotated[str, typer.Argument(help="train, backtest, or echo / sleep / fail.")],
    payload: Annotated[
        str | None, typer.Option("--payload", help="The payload as JSON, e.g. '{\"seconds\": 2}'.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="train / backtest: a config file, sent as its mapping; its paths resolve "
            "under TRADEML_HOME (runs/, configs/) as every job's do.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job and print it.")] = False,
) -> None:
    """Submit a job and print its id (in-process: wait and print the job; it runs here)."""
    body: Any = {}
    if payload is not None:
        try:
            body = json.loads(payload)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--payload: not valid JSON: {error}") from None
    if config is not None:
        # Jobs take configs as mappings only: the file is read here, by its owner.
        mapping = _read_mapping(config)
        body = {**body, "config": mapping} if isinstance(body, dict) else body
    with open_queue() as queue:
        job_id = queue.submit(kind, body)
        if not (wait or queue.backend == "inprocess"):
            typer.echo(job_id)
            return
        info = queue.wait(job_id)
    _print_json(info)
    if info.state is not JobState.SUCCEEDED:
        raise typer.Exit(1)


def _read_mapping(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"--config: {path} is not a file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"--config: {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} does not hold a mapping")
    return data


@app.command("list")
def list_jobs(
    state: Annotated[
        str | None, typer.Option("--state", help="Only jobs in this state (queued, running...).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
) -> None:
    """The newest jobs, with state and progress."""
    with open_queue() as queue:
        jobs = queue.list(limit, state)
    table = Table(title=f"{len(jobs)} job(s)")
    for column in ("id", "kind", "state", "progress", "message", "created (UTC)"):
        table.add_column(column, justify="right" if column == "progress" else "left")
    for job in jobs:
        table.add_row(
            job.id,
            job.kind,
            job.state.value,
            f"{job.progress:.0%}",
            job.message[:60],
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@app.command("show")
def show(job_id: JobIdArg) -> None:
    """One job as JSON: state, progress, result or error, timestamps, attempts."""
    with open_queue() as queue:
        _print_json(queue.get(job_id))


@app.command("cancel")
def cancel(job_id: JobIdArg) -> None:
    """Cancel a queued job, or ask a running one to stop at its next progress report."""
    with open_queue() as queue:
        _print_json(queue.cancel(job_id))


@app.command("retry")
def retry(job_id: JobIdArg) -> None:
    """Queue a failed, retryable job again."""
    with open_queue() as queue:
        info = queue.retry(job_id)
        if queue.backend == "inprocess":
            info = queue.wait(job_id)
    _print_json(info)
