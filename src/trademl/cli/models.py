"""``trademl models list|show|promote|rollback|export|card``: the MLflow model registry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trademl.cli.output import JsonOpt, emit_json

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
app = typer.Typer(help="Registered pipeline models: list, show, promote, rollback, export, card.")
app.info.no_args_is_help = True


@app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """Every registered model with its champion and challenger versions."""
    from trademl.tracking.registry import list_models as registered

    if as_json:
        emit_json({"models": list(registered())})
        return
    table = Table(title="registered models")
    for column in ("name", "versions", "latest", "champion", "challenger"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for row in registered():
        table.add_row(
            row["name"],
            str(row["versions"]),
            str(row["latest"]),
            str(row["champion"] or "-"),
            str(row["challenger"] or "-"),
        )
    console.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The registered model.")], as_json: JsonOpt = False
) -> None:
    """A model's versions (aliases, run, gate verdict) and its decision history."""
    from trademl.tracking.registry import history, list_versions

    versions = list_versions(name)
    if as_json:
        emit_json(
            {
                "name": name,
                "versions": [
                    {
                        "version": info.version,
                        "aliases": list(info.aliases),
                        "created": info.created,
                        "run_id": info.run_id,
                        "tags": info.tags,
                    }
                    for info in versions
                ],
                "history": history(name),
            }
        )
        return
    table = Table(title=name)
    for column in ("version", "aliases", "created", "run id", "data hash", "decision"):
        table.add_column(column)
    for info in versions:
        table.add_row(
            str(info.version),
            ", ".join(info.aliases) or "-",
            f"{info.created:%Y-%m-%d %H:%M}" if info.created else "-",
            str(info.run_id),
            info.tags.get("data_hash", "-")[:12],
            info.tags.get("decision.reason", "-")[:90],
        )
    console.print(table)
    events = Table(title="history")
    for column in ("at", "action", "version", "previous", "reason"):
        events.add_column(column, overflow="fold")
    for event in history(name):
        events.add_row(
            event["at"],
            event["action"],
            str(event["version"]),
            str(event.get("previous", "-")),
            str(event["reason"]),
        )
    console.print(events)


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="The registered model.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Version or alias; default the challenger.")
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Override the gate metric.")
    ] = None,
    margin: Annotated[
        float | None, typer.Option("--margin", min=0.0, help="Override the gate margin.")
    ] = None,
    level: Annotated[
        float | None,
        typer.Option("--level", min=0.0, max=1.0, help="Override the gate's significance level."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote despite a failing gate (recorded).")
    ] = False,
) -> None:
    """Make a version champion if it passes the gate: per served target, Diebold–Mariano
    tests against the baselines and the champion out of sample, and interval coverage."""
    from trademl.tracking.registry import promote as run_promotion

    decision = run_promotion(name, version, force=force, metric=metric, margin=margin, level=level)
    console.print(
        f"{name} version {decision.version} is now champion"
        + (f" (was version {decision.previous})" if decision.previous else "")
    )
    console.print(f"gate: {decision.reason}")


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="The registered model.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the history.")] = "",
) -> None:
    """Give the champion alias back to the version the current champion replaced."""
    from trademl.tracking.registry import rollback as run_rollback

    decision = run_rollback(name, reason=reason)
    console.print(f"{name}: champion is version {decision.version} again (was {decision.previous})")


@app.command("export")
def export(
    name: Annotated[str, typer.Argument(help="The registered model.")],
    version: Annotated[str, typer.Option("--version", help="Version or alias.")] = "champion",
    export_format: Annotated[str, typer.Option("--format", help="Only 'onnx'.")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
) -> None:
    """Export a registered version's models as ONNX graphs with a manifest."""
    from trademl.errors import ConfigError
    from trademl.tracking.export import export_version

    if export_format != "onnx":
        raise ConfigError(f"--format {export_format!r}: only 'onnx' is supported")
    folder = out or Path(f"{name}-{version}-onnx")
    manifest = export_version(name, version, folder)
    console.print(f"written {manifest} and the graphs it lists under {folder}")


@app.command("card")
def card(
    name: Annotated[str, typer.Argument(help="The registered model.")],
    version: Annotated[str, typer.Option("--version", help="Version or alias.")] = "champion",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """The version's model card (Markdown), printed or written to --out."""
    from trademl.tracking.registry import model_card_text

    text = model_card_text(name, version)
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text)
    console.print(f"written {out}")
