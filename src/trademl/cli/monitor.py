"""``trademl monitor NAME``, ``trademl retrain NAME`` and ``trademl watch NAME``: a served
model's realised quality against its baseline, its alarms and drift; one retraining cycle; the
loop that checks and retrains as the model's policy says."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from trademl.config import Settings
    from trademl.monitoring.assess import Assessment
    from trademl.pipeline import PipelineModel

NAME = typer.Argument(help="The registered model.")


def monitor(
    name: Annotated[str, NAME],
    window: Annotated[
        int | None,
        typer.Option(
            "--window", min=20, help="Recent bars (default: the model's monitoring.window)."
        ),
    ] = None,
    version: Annotated[
        str, typer.Option("--version", help="Version number or alias.")
    ] = "champion",
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the HTML report here.", dir_okay=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Realised loss against the baseline on matured labels, calibrated alarms, coverage and
    drift of a registered model's logged predictions."""
    from trademl.config import get_settings
    from trademl.tracking.watch import monitor as assess_model
    from trademl.tracking.watch import report_json, summary_lines

    settings = get_settings()
    chosen: str | int = int(version) if version.isdigit() else version
    report, _, pipeline = assess_model(name, chosen, window=window, settings=settings)
    if as_json:
        typer.echo(report_json(report))
    else:
        for line in summary_lines(report):
            typer.echo(line)
    target = html or Path(settings.home) / "monitoring" / f"{name}.html"
    written = _write_html(report, pipeline, target, settings)
    if not as_json:
        typer.echo(f"report: {written}")


def _write_html(
    report: Assessment, pipeline: PipelineModel, target: Path, settings: Settings
) -> Path:
    from trademl.monitoring.html import write_report
    from trademl.tracking.watch import window_features

    target.parent.mkdir(parents=True, exist_ok=True)
    assert pipeline.monitoring is not None  # assess refused a pipeline without one
    features = window_features(report, pipeline, settings)
    return write_report(report, pipeline.monitoring, features, target)


def retrain(
    name: Annotated[str, NAME],
    trigger: Annotated[
        str,
        typer.Option("--trigger", help="Recorded trigger: manual, scheduled, performance, drift."),
    ] = "manual",
    window: Annotated[
        int | None,
        typer.Option("--window", min=20, help="Recent bars both models are scored on."),
    ] = None,
) -> None:
    """One retraining cycle by hand: a challenger trained before the recent window, scored
    beside the champion on it, promoted only through the gate; recorded in MLflow."""
    from trademl.config import get_settings
    from trademl.tracking.retraining import retrain as run_cycle

    cycle = run_cycle(name, trigger=trigger, window=window, settings=get_settings())
    typer.echo(
        f"{name}: {cycle.trigger} cycle, challenger version {cycle.challenger} vs champion "
        f"version {cycle.champion} on {cycle.start:%Y-%m-%d %H:%M} to {cycle.end:%Y-%m-%d %H:%M}: "
        f"{cycle.decision.upper()}"
    )
    typer.echo(f"  {cycle.reason}")
    typer.echo(
        f"  MLflow run {cycle.run_id} (experiment {get_settings().mlflow_experiment_retraining})"
    )


def watch(
    name: Annotated[str, NAME],
    once: Annotated[bool, typer.Option("--once", help="Check once and exit.")] = False,
    every: Annotated[
        str, typer.Option("--check", help="Cron string (UTC) of the checks.")
    ] = "5 * * * *",
) -> None:
    """Check the champion on a schedule and retrain as its policy says (alarm, drift, cron)."""
    from trademl.config import get_settings
    from trademl.tracking.policy import check, scheduler

    settings = get_settings()
    if once:
        typer.echo(json.dumps(check(name, settings=settings), indent=2, default=str))
        return
    loop = scheduler(name, settings, every).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for job, status in loop.status().items():
        typer.echo(f"{job}: {status.schedule}, next at {status.next_due:%Y-%m-%d %H:%M} UTC")
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        loop.stop()
