"""What the commands share: ``--json`` output on stdout, and the MLflow recorder when
tracking is on (imported then only, so the CLI starts without the tracking extra)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from trademl.json_values import jsonable

if TYPE_CHECKING:
    from trademl.tracking.recorders import MLflowRecorder

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")
]


def emit_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as one JSON document (NaN as null, paths and times as strings)."""
    typer.echo(json.dumps(jsonable(payload), indent=2, allow_nan=False))


def recorder(trigger: str = "manual") -> MLflowRecorder | None:
    """The MLflow recorder when ``Settings.tracking`` is on, else None.

    Raises
    ------
    MissingExtraError
        Tracking is on and MLflow is not installed.
    """
    from trademl.config import get_settings
    from trademl.extras import require

    settings = get_settings()
    if not settings.tracking:
        return None
    require("mlflow", "tracking", "recording runs (TRADEML_TRACKING=true; false turns it off)")
    from trademl.tracking.recorders import recorder_for

    return recorder_for(settings, trigger)
