"""The model registry on MLflow: versions, the ``champion`` and ``challenger`` aliases,
promotion through the gate, rollback, and the history of every decision with its reason.

MLflow is the single source of truth: aliases say what serves, version tags say why (the
gate's verdict and numbers), and a registered-model tag keeps the history as JSON.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from trademl.config import GateSection, Settings
from trademl.errors import ConfigError, ModelNotFoundError, PromotionRefusedError
from trademl.tracking.client import connect, fluent
from trademl.tracking.gate import Evidence, GateCheck, GateResult, evaluate_gate

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "trademl.history"
HISTORY_EVENTS = 200


@dataclass(frozen=True)
class VersionInfo:
    """The registry's record of one model version."""

    name: str
    version: int
    aliases: list[str]
    run_id: str | None
    tags: dict[str, str]
    description: str
    created: datetime | None
    source: str


@dataclass(frozen=True)
class Decision:
    """What a registration, promotion or rollback did, and why."""

    name: str
    version: int
    alias: str | None
    previous: int | None
    reason: str
    gate: GateResult | None = None


def _info(version: Any) -> VersionInfo:
    created = version.creation_timestamp
    return VersionInfo(
        name=version.name,
        version=int(version.version),
        aliases=list(getattr(version, "aliases", []) or []),
        run_id=version.run_id,
        tags=dict(version.tags or {}),
        description=version.description or "",
        created=datetime.fromtimestamp(created / 1000, UTC) if created else None,
        source=version.source or "",
    )


def _not_found(error: Exception) -> bool:
    code = getattr(error, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def _registered(client: MlflowClient, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if _not_found(error):
            known = ", ".join(sorted(m.name for m in client.search_registered_models())) or "none"
            raise ModelNotFoundError(
                f"model {name!r} is not registered; registered models: {known}"
            ) from None
        raise


def resolve_version(
    name: str, alias_or_version: str | int, settings: Settings | None = None
) -> VersionInfo:
    """The version an alias (``champion``, ``challenger``) or a number names.

    Raises
    ------
    ModelNotFoundError
        No model ``name``, no such version, or the alias is not set.
    """
    from mlflow.exceptions import MlflowException

    client = connect(settings)
    model = _registered(client, name)
    text = str(alias_or_version)
    try:
        if text.isdigit():
            return _info(client.get_model_version(name, text))
        return _info(client.get_model_version_by_alias(name, text))
    except MlflowException as error:
        if not _not_found(error):
            raise
    aliases = ", ".join(f"{a}={v}" for a, v in (model.aliases or {}).items()) or "none set"
    what = f"version {text}" if text.isdigit() else f"alias {text!r}"
    raise ModelNotFoundError(f"model {name!r} has no {what}; aliases: {aliases}") from None


def _alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    aliases = _registered(client, name).aliases or {}
    value = aliases.get(alias)
    return int(value) if value is not None else None


def list_models(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every registered model: name, latest version, champion, challenger, description."""
    client = connect(settings)
    rows = []
    for model in client.search_registered_models(order_by=["name ASC"]):
        versions = client.search_model_versions(f"name = '{model.name}'")
        aliases = model.aliases or {}
        rows.append(
            {
                "name": model.name,
                "versions": len(versions),
                "latest": max((int(v.version) for v in versions), default=None),
                CHAMPION: aliases.get(CHAMPION),
                CHALLENGER: aliases.get(CHALLENGER),
                "description": model.description or "",
            }
        )
    return rows


def list_versions(name: str, settings: Settings | None = None) -> list[VersionInfo]:
    """Every version of ``name``, newest first."""
    client = connect(settings)
    _registered(client, name)
    versions = [_info(v) for v in client.search_model_versions(f"name = '{name}'")]
    return sorted(versions, key=lambda v: -v.version)


def history(name: str, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every registration, promotion, rejection and rollback of ``name``, oldest first."""
    client = connect(settings)
    raw = (_registered(client, name).tags or {}).get(HISTORY_TAG)
    return list(json.loads(raw)) if raw else []


def _record(client: MlflowClient, name: str, event: dict[str, Any]) -> None:
    event = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **event}
    raw = (client.get_registered_model(name).tags or {}).get(HISTORY_TAG)
    events = [*(json.loads(raw) if raw else []), event][-HISTORY_EVENTS:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(events))
    version = str(event["version"])
    client.set_model_version_tag(name, version, f"decision.{event['action']}", event["at"])
    client.set_model_version_tag(name, version, "decision.reason", str(event["reason"])[:5000])


def evidence(client: MlflowClient, info: VersionInfo) -> Evidence:
    """A version's out-of-sample record, from its training run's ``predictions.parquet``."""
    if info.run_id is None:
        raise ModelNotFoundError(f"model {info.name} version {info.version} has no training run")
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(info.run_id, "predictions.parquet", folder)
        predictions = pd.read_parquet(path)
    return Evidence(
        predictions=predictions,
        model=info.tags.get("primary_model", ""),
        horizons={k: int(v) for k, v in json.loads(info.tags.get("horizons_bars", "{}")).items()},
        alpha=float(info.tags.get("alpha", "0.1")),
        label=f"version {info.version}",
    )


def version_gate(info: VersionInfo, **overrides: Any) -> GateSection:
    """The gate the version's run config asked for, with ``overrides`` (None values ignored)."""
    stored = json.loads(info.tags.get("gate", "{}"))
    return GateSection.model_validate(
        {**stored, **{k: v for k, v in overrides.items() if v is not None}}
    )


def register_trained(
    model_uri: str,
    name: str,
    *,
    candidate: Evidence,
    gate: GateSection,
    description: str,
    tags: dict[str, str],
    settings: Settings | None = None,
) -> Decision:
    """Register a trained pipeline as a new version of ``name``.

    The first version becomes ``champion`` if it beats the naive baselines (and its intervals
    cover); otherwise it stays without an alias, the reason recorded. A later version becomes
    ``challenger``; ``promote`` puts it through the full gate.
    """
    import mlflow

    all_tags = {**tags, "gate": gate.model_dump_json()}
    with fluent(settings) as client:
        version = mlflow.register_model(model_uri, name, tags=all_tags)
    number = int(version.version)
    client.update_model_version(name, str(number), description=description)
    champion = _alias_version(client, name, CHAMPION)
    _record(client, name, {"action": "registered", "version": number, "reason": description})
    if champion is None:
        try:
            result = evaluate_gate(candidate, None, gate)
        except ConfigError as error:
            # A run without the gate's target (say, regression labels only) still registers.
            result = GateResult(False, [GateCheck("gate", False, f"gate not applicable: {error}")])
        if result.passed:
            client.set_registered_model_alias(name, CHAMPION, str(number))
            reason = f"no champion yet; passes the gate: {result.reason}"
            _record(client, name, {"action": "promoted", "version": number, "reason": reason})
            return Decision(name, number, CHAMPION, None, reason, result)
        reason = f"not champion: {result.reason}"
        _record(client, name, {"action": "rejected", "version": number, "reason": reason})
        return Decision(name, number, None, None, reason, result)
    client.set_registered_model_alias(name, CHALLENGER, str(number))
    reason = f"challenger of champion version {champion}; promote it through the gate"
    return Decision(name, number, CHALLENGER, champion, reason, None)


def check_gate(
    name: str,
    version: str | int | None = None,
    *,
    settings: Settings | None = None,
    **gate_overrides: Any,
) -> tuple[VersionInfo, VersionInfo | None, GateResult]:
    """The gate's verdict on ``version`` (default the challenger), without changing anything."""
    client = connect(settings)
    info = resolve_version(name, CHALLENGER if version is None else version, settings)
    champion_number = _alias_version(client, name, CHAMPION)
    champion = (
        resolve_version(name, champion_number, settings) if champion_number is not None else None
    )
    if champion is not None and champion.version == info.version:
        raise ConfigError(f"model {name!r} version {info.version} is already the champion")
    gate = version_gate(info, **gate_overrides)
    result = evaluate_gate(
        evidence(client, info), evidence(client, champion) if champion else None, gate
    )
    return info, champion, result


def promote(
    name: str,
    version: str | int | None = None,
    *,
    force: bool = False,
    settings: Settings | None = None,
    **gate_overrides: Any,
) -> Decision:
    """Make ``version`` (default the challenger) the champion if it passes the gate.

    Parameters
    ----------
    name : str
        The registered model.
    version : str, int or None
        A version number or alias; the ``challenger`` by default.
    force : bool
        Promote even when the gate fails (recorded as forced, with the failing numbers).
    settings : Settings or None
        The tracking backend.
    **gate_overrides
        Gate fields (``metric``, ``margin``, ``horizon``...) replacing the version's own.

    Raises
    ------
    PromotionRefusedError
        The gate failed; the message lists the failing checks with their numbers.
    ModelNotFoundError
        No such model, version or alias.
    """
    client = connect(settings)
    info, champion, result = check_gate(name, version, settings=settings, **gate_overrides)
    previous = champion.version if champion else None
    if not result.passed and not force:
        reason = f"refused: {result.reason}"
        _record(client, name, {"action": "rejected", "version": info.version, "reason": reason})
        raise PromotionRefusedError(
            f"model {name!r} version {info.version} fails the promotion gate: {result.reason}"
        )
    client.set_registered_model_alias(name, CHAMPION, str(info.version))
    if previous is not None:
        client.set_model_version_tag(name, str(info.version), "previous_champion", str(previous))
    if _alias_version(client, name, CHALLENGER) == info.version:
        client.delete_registered_model_alias(name, CHALLENGER)
    reason = ("forced despite the gate: " if not result.passed else "") + result.reason
    _record(
        client,
        name,
        {"action": "promoted", "version": info.version, "previous": previous, "reason": reason},
    )
    return Decision(name, info.version, CHAMPION, previous, reason, result)


def rollback(name: str, *, settings: Settings | None = None, reason: str = "") -> Decision:
    """Give the ``champion`` alias back to the version it replaced.

    Raises
    ------
    ModelNotFoundError
        No champion, or the champion replaced none.
    """
    client = connect(settings)
    current = resolve_version(name, CHAMPION, settings)
    previous = current.tags.get("previous_champion")
    if previous is None:
        raise ModelNotFoundError(
            f"model {name!r}: champion version {current.version} replaced no earlier champion; "
            "nothing to roll back to"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    why = f"rolled back from version {current.version}" + (f": {reason}" if reason else "")
    _record(
        client,
        name,
        {
            "action": "rollback",
            "version": int(previous),
            "previous": current.version,
            "reason": why,
        },
    )
    return Decision(name, int(previous), CHAMPION, current.version, why, None)


def default_name(symbol: str, timeframe: str, output: str) -> str:
    """``{symbol}_{timeframe}_{config}``, the config named by its output folder."""
    config = Path(output).name or "run"
    safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in config)
    return f"{symbol}_{timeframe}_{safe}"


def model_card_text(
    name: str, alias_or_version: str | int = CHAMPION, settings: Settings | None = None
) -> str:
    """The model card logged with the version's training run."""
    info = resolve_version(name, alias_or_version, settings)
    if info.run_id is None:
        raise ModelNotFoundError(f"model {name!r} version {info.version} has no training run")
    with tempfile.TemporaryDirectory() as folder:
        path = connect(settings).download_artifacts(info.run_id, "model_card.md", folder)
        return Path(path).read_text()
