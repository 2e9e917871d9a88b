"""The model registry on MLflow: versions, the ``champion`` and ``challenger`` aliases,
promotion through the gate, rollback, and the history of every decision with its reason.

MLflow is the single source of truth: aliases say what serves, version tags say why (the
gate's verdict and numbers), and a companion registered model keeps the history, one version
per decision, written before the alias moves (see :mod:`trademl.tracking.decisions`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from trademl.config import GateSection, Settings, get_settings
from trademl.errors import ConfigError, ModelNotFoundError, PromotionRefusedError, TrackingError
from trademl.tracking.client import connect, fluent
from trademl.tracking.decisions import (
    Log,
    append,
    decide_champion,
    is_history,
    previous_champion,
    read_log,
    reconcile,
)
from trademl.tracking.gate import Evidence, GateCheck, GateResult, evaluate_gate

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
# Where histories lived before the decision log (read only, for registries of older versions).
HISTORY_TAG = "trademl.history"
DECISION_REASON_CHARS = 4000
PIPELINE_FILE = "pipeline.pkl"
# The SHA-256 of the version's pipeline.pkl, recorded when trademl registers it.
PIPELINE_SHA_TAG = "trademl.pipeline_sha256"


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
            models = client.search_registered_models()
            known = ", ".join(sorted(m.name for m in models if not is_history(m))) or "none"
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
        if is_history(model):
            continue
        versions = client.search_model_versions(f"name = '{model.name}'")
        aliases = model.aliases or {}
        rows.append(
            {
                "name": model.name,
                "versions": len(versions),
                "latest": max((int(v.version) for v in versions), default=None),
                CHAMPION: aliases.get(CHAMPION),
                CHALLENGER: aliases.get(CHALLENGER),
                "aliases": {alias: int(number) for alias, number in aliases.items()},
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
    """Every registration, promotion, rejection, rollback and revert of ``name``, oldest
    first (decisions that lost a race with another process left out)."""
    client = connect(settings)
    raw = (_registered(client, name).tags or {}).get(HISTORY_TAG)
    legacy = list(json.loads(raw)) if raw else []
    return [*legacy, *(event.as_dict() for event in read_log(client, name).events)]


def _tag_version(client: MlflowClient, name: str, version: int, action: str, reason: str) -> None:
    # For `trademl models show`: the last decision on each version, beside its other tags.
    at = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(version), f"decision.{action}", at)
    client.set_model_version_tag(
        name, str(version), "decision.reason", reason[:DECISION_REASON_CHARS]
    )


def _record(client: MlflowClient, name: str, event: dict[str, Any]) -> None:
    """Log a decision that moves no alias (registered, rejected)."""
    append(client, name, lambda log: event)
    _tag_version(client, name, int(event["version"]), str(event["action"]), str(event["reason"]))


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pipeline_file(folder: Path, what: str) -> Path:
    """The one ``pipeline.pkl`` under ``folder`` (a downloaded model); TrackingError when
    there is none or several (which one would be loaded would then be a guess)."""
    found = sorted(folder.rglob(PIPELINE_FILE))
    if len(found) != 1:
        raise TrackingError(f"{what} holds {len(found)} {PIPELINE_FILE} files; expected one")
    return found[0]


def artifact_sha256(model_uri: str, settings: Settings | None = None) -> str:
    """The SHA-256 of the ``pipeline.pkl`` logged at ``model_uri``, as stored."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri,
            dst_path=folder,
            tracking_uri=(settings or get_settings()).mlflow_uri,
        )
        return file_sha256(pipeline_file(Path(local), model_uri))


def verify_pipeline_artifact(info: VersionInfo, path: Path) -> None:
    """Refuse, before anything is unpickled, a pipeline file whose SHA-256 differs from the
    one recorded when the version was registered, or a version registered without one.

    Raises
    ------
    TrackingError
        The tag is missing or the file does not match it.
    """
    expected = info.tags.get(PIPELINE_SHA_TAG, "")
    what = f"model {info.name!r} version {info.version}"
    if not expected:
        raise TrackingError(
            f"{what} carries no {PIPELINE_SHA_TAG} tag (not registered by trademl): refusing to "
            "load it"
        )
    if not hmac.compare_digest(file_sha256(path), expected.lower()):
        raise TrackingError(
            f"{what}: {PIPELINE_FILE} does not match the SHA-256 recorded at registration "
            "(the artifact changed since): refusing to load it"
        )


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
        # Versions from before the gate chose per target serve their model everywhere.
        sources=json.loads(info.tags["sources"]) if "sources" in info.tags else None,
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

    The first version becomes ``champion`` if it passes the gate against its baselines (and
    its intervals cover); otherwise it stays without an alias, the reason recorded. A later version becomes
    ``challenger``; ``promote`` puts it through the full gate.
    """
    import mlflow

    # The artifact's fingerprint goes in with the version: a server loads nothing else.
    all_tags = {
        **tags,
        "gate": gate.model_dump_json(),
        PIPELINE_SHA_TAG: artifact_sha256(model_uri, settings),
    }
    with fluent(settings) as client:
        version = mlflow.register_model(model_uri, name, tags=all_tags)
    number = int(version.version)
    client.update_model_version(name, str(number), description=description)
    champion = reconcile(client, name).champion or _alias_version(client, name, CHAMPION)
    _record(client, name, {"action": "registered", "version": number, "reason": description})
    if champion is None:
        try:
            result = evaluate_gate(candidate, None, gate)
        except ConfigError as error:
            # A run without the gate's target (say, regression labels only) still registers.
            result = GateResult(False, [GateCheck("gate", False, f"gate not applicable: {error}")])
        if result.passed:
            reason = f"no champion yet; passes the gate: {result.explain()}"
            event, _ = decide_champion(client, name, _promotion(number, reason))
            _tag_version(client, name, number, "promoted", reason)
            return Decision(name, number, CHAMPION, event.previous, reason, result)
        reason = f"not champion: {result.explain()}"
        _record(client, name, {"action": "rejected", "version": number, "reason": reason})
        return Decision(name, number, None, None, reason, result)
    client.set_registered_model_alias(name, CHALLENGER, str(number))
    reason = f"challenger of champion version {champion}; promote it through the gate"
    return Decision(name, number, CHALLENGER, champion, reason, None)


def _promotion(version: int, reason: str) -> Any:
    """The decision "``version`` becomes champion", taken on the log as it then is."""

    def decide(log: Log) -> dict[str, Any]:
        return {
            "action": "promoted",
            "version": version,
            "previous": log.champion,
            "reason": reason,
        }

    return decide


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
    reason: str = "",
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
    reason : str
        Why, in the decider's words; recorded after the gate's verdict.
    **gate_overrides
        Gate fields (``level``, ``targets``, ``margin``, ``min_rows``...) replacing the version's own.

    Raises
    ------
    PromotionRefusedError
        The gate failed; the message lists the failing checks with their numbers.
    ModelNotFoundError
        No such model, version or alias.
    """
    client = connect(settings)
    _registered(client, name)
    reconcile(client, name)  # a decision a dead process left half-done is finished first
    info, _, result = check_gate(name, version, settings=settings, **gate_overrides)
    return apply_verdict(name, info, result, force=force, settings=settings, reason=reason)


def apply_verdict(
    name: str,
    info: VersionInfo,
    result: GateResult,
    *,
    force: bool = False,
    settings: Settings | None = None,
    reason: str = "",
) -> Decision:
    """Promote ``info`` if ``result`` passed (or ``force``), else record the refusal.

    The gate's verdict may come from the version's validation (:func:`promote`) or from a
    retraining cycle's recent window; either way the decision log keeps its numbers.

    Raises
    ------
    PromotionRefusedError
        The gate failed and ``force`` is false; the refusal is recorded first.
    """
    client = connect(settings)
    if not result.passed and not force:
        refused = f"refused: {result.explain()}" + (f"; {reason}" if reason else "")
        _record(client, name, {"action": "rejected", "version": info.version, "reason": refused})
        raise PromotionRefusedError(
            f"model {name!r} version {info.version} fails the promotion gate: {result.reason}"
        )
    verdict = ("forced despite the gate: " if not result.passed else "") + result.explain()
    why = f"{verdict}; {reason}" if reason else verdict
    event, _ = decide_champion(client, name, _promotion(info.version, why))
    _tag_version(client, name, info.version, "promoted", why)
    if _alias_version(client, name, CHALLENGER) == info.version:
        client.delete_registered_model_alias(name, CHALLENGER)
    return Decision(name, info.version, CHAMPION, event.previous, why, result)


def rollback(name: str, *, settings: Settings | None = None, reason: str = "") -> Decision:
    """Give the ``champion`` alias back to the version it replaced.

    Raises
    ------
    ModelNotFoundError
        No champion, or the champion replaced none.
    """
    client = connect(settings)
    _registered(client, name)

    def decide(log: Log) -> dict[str, Any]:
        # The champion stack comes from the decision log, not from tags written after an
        # alias move: whatever failed in between, the previous champion is found.
        current, previous = previous_champion(log, name)
        why = f"rolled back from version {current}" + (f": {reason}" if reason else "")
        return {"action": "rollback", "version": previous, "previous": current, "reason": why}

    event, _ = decide_champion(client, name, decide)
    _tag_version(client, name, event.version, "rollback", event.reason)
    return Decision(name, event.version, CHAMPION, event.previous, event.reason, None)


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
