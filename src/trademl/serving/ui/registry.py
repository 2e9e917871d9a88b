"""What the Models page shows: registered models, their versions and aliases, the decision
history with its reasons, and the promotion gate's numbers for the candidate against the
champion, per target."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from trademl.config import Settings
from trademl.errors import ConfigError, NotFoundError, TradeMLError
from trademl.tracking.registry import (
    check_gate,
    history,
    list_models,
    list_versions,
)

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
VERSION_PATTERN = re.compile(r"^(?:[0-9]{1,9}|champion|challenger)$")


def check_model_name(name: str) -> str:
    """``name`` when it can be a registered model name, else a NotFoundError."""
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise NotFoundError(f"model {name[:40]!r} is not a registered model name")
    return name


def check_version(version: str) -> str:
    """A version number or alias (``champion``, ``challenger``), else a ConfigError."""
    if not VERSION_PATTERN.fullmatch(version):
        raise ConfigError(
            f"version {version[:20]!r} is not a version number, 'champion' or 'challenger'"
        )
    return version


@dataclass
class ModelView:
    """One registered model on the Models page."""

    name: str
    champion: int | None
    challenger: int | None
    versions: list[dict[str, Any]]
    history: list[dict[str, Any]]
    candidate: int | None  # the version the gate table compares with the champion
    checks: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    gate_passed: bool | None
    gate_note: str | None


def models_overview(settings: Settings) -> list[dict[str, Any]]:
    """Every registered model with its version count and aliases."""
    return list_models(settings)


def model_view(settings: Settings, name: str) -> ModelView:
    """The versions, history and gate table of ``name``."""
    check_model_name(name)
    rows = {row["name"]: row for row in list_models(settings)}
    if name not in rows:
        raise NotFoundError(f"model {name!r} is not registered")
    row = rows[name]
    champion = int(row["champion"]) if row.get("champion") is not None else None
    challenger = int(row["challenger"]) if row.get("challenger") is not None else None
    infos = list_versions(name, settings)
    aliases: dict[str, Any] = row.get("aliases") or {}
    versions = [
        {
            "version": info.version,
            # The registry's search leaves aliases out of versions: the model's own map.
            "aliases": sorted(a for a, n in aliases.items() if int(n) == info.version),
            "created": info.created,
            "run_id": info.run_id,
            "status": info.tags.get("status", ""),
        }
        for info in infos
    ]
    others = [info.version for info in infos if info.version != champion]
    candidate = challenger if challenger is not None else next(iter(others), None)
    view = ModelView(
        name=name,
        champion=champion,
        challenger=challenger,
        versions=versions,
        history=list(reversed(history(name, settings))),
        candidate=candidate,
        checks=[],
        comparisons=[],
        gate_passed=None,
        gate_note=None,
    )
    if candidate is not None:
        _gate(settings, view, candidate)
    return view


def _gate(settings: Settings, view: ModelView, candidate: int) -> None:
    try:
        _, _, result = check_gate(view.name, candidate, settings=settings)
    except TradeMLError as error:
        view.gate_note = str(error)
        return
    view.gate_passed = result.passed
    view.checks = [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in result.checks]
    for comparison in result.comparisons:
        outcome = comparison.result
        view.comparisons.append(
            {
                "target": comparison.target,
                "model": comparison.model,
                "reference": comparison.reference,
                "loss": comparison.loss,
                "difference": outcome.mean_difference if outcome else None,
                "low": outcome.low if outcome else None,
                "high": outcome.high if outcome else None,
                "p_value": outcome.p_value if outcome else None,
                "rows": outcome.rows if outcome else None,
                "note": comparison.note,
            }
        )
