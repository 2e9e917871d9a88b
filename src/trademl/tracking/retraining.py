"""One retraining cycle: a challenger trained on recent data with the champion's config, scored
beside the champion on the same recent window of matured labels, promoted only through the
statistical gate; and the decision, its trigger and its numbers recorded as an MLflow run in the
retraining experiment.

The window is the last ``monitoring.window`` bars whose labels have matured, cut to start after
every bar the champion saw in training (its last rows' labels included), so that both models
are out of sample on it; with fewer than ``monitoring.min_mature`` such bars the cycle refuses,
saying so. The challenger trains on the bars before the window (the last
``retraining.train_bars`` of them, or all).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from trademl.config import Settings, get_settings
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError, PromotionRefusedError
from trademl.features.labels import build_labels
from trademl.monitoring.assess import (
    BOUNDS_OF,
    OUTPUT_OF,
    Assessment,
    MonitoringError,
    require_profile,
)
from trademl.pipeline import PipelineModel
from trademl.tracking.client import connect
from trademl.tracking.decisions import CHAMPION
from trademl.tracking.gate import Evidence, GateCheck, GateResult, evaluate_gate
from trademl.tracking.pipeline import load_pipeline
from trademl.tracking.recorders import recorder_for
from trademl.tracking.registry import VersionInfo, apply_verdict, rollback, version_gate
from trademl.tracking.runs import base_tags, log_metrics, tracked_run
from trademl.tracking.watch import monitoring_section, store_candles, version_config
from trademl.validation.selection import SERVED_KINDS
from trademl.workflow import run

# Fewest bars a challenger may train on: below it no walk-forward validation says anything.
MIN_TRAIN_BARS = 1000
PROMOTED_AT = "promoted_at_bar"
LAST_CYCLE = "last_cycle_bar"


@dataclass(frozen=True)
class Cycle:
    """What a retraining cycle did.

    Attributes
    ----------
    name, trigger : str
        The registered model and why the cycle ran (manual, scheduled, performance, drift).
    champion, challenger : int or None
        The versions compared (challenger None when training failed before registering).
    decision : str
        ``promoted``, ``rejected`` or ``rolled_back``.
    reason : str
        The gate's verdict with its numbers.
    start, end : pandas.Timestamp
        The window both were scored on.
    gate : GateResult or None
        Every check and comparison.
    run_id : str
        The cycle's MLflow run (retraining experiment).
    alarms : list of str
        The alarms that triggered it, with their statistics.
    """

    name: str
    trigger: str
    champion: int | None
    challenger: int | None
    decision: str
    reason: str
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    gate: GateResult | None
    run_id: str
    alarms: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "name": self.name,
            "trigger": self.trigger,
            "champion": self.champion,
            "challenger": self.challenger,
            "decision": self.decision,
            "reason": self.reason,
            "window": [None if t is None else t.isoformat() for t in (self.start, self.end)],
            "run_id": self.run_id,
            "alarms": self.alarms,
        }


def window_evidence(
    pipeline: PipelineModel,
    info: VersionInfo,
    candles: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> Evidence:
    """A version's predictions on ``start..end`` as the gate reads them: the targets, what it
    serves per target (intervals as log ratios), and its profile's baseline on the same bars."""
    profile = require_profile(pipeline, f"model {info.name} version {info.version}")
    first = int(candles.index.searchsorted(start))
    context = candles.iloc[max(first - pipeline.warmup_bars, 0) :]
    context = context[context.index <= end]
    out = pipeline.predict(context).loc[start:end]
    features = pipeline.features(context).loc[start:end]
    close = candles["close"].reindex(out.index)
    sources = json.loads(info.tags.get("sources", "{}"))
    primary = info.tags.get("primary_model", "")
    frame = pd.DataFrame(index=out.index)
    for horizon, bars in pipeline.horizons.items():
        labels = build_labels(candles, [{"kind": k, "horizon": bars} for k in SERVED_KINDS])
        complete = labels[f"complete_{bars}"].reindex(out.index).fillna(False).astype(bool)
        for kind in SERVED_KINDS:
            target = f"{kind}_{bars}"
            raw = labels[f"{kind}_{bars}"].reindex(out.index).where(complete)
            if kind == "direction":
                raw = (raw > 0).astype(np.float64).where(raw.notna() & (raw != 0))
            frame[f"target__{target}"] = raw
            served = sources.get(target, primary)
            frame[f"{served}__{target}"] = out[f"{horizon}__{OUTPUT_OF[kind]}"]
            if kind in BOUNDS_OF and f"{horizon}__{BOUNDS_OF[kind][0]}" in out:
                for bound, column in zip(("lo", "hi"), BOUNDS_OF[kind], strict=True):
                    frame[f"{served}__{target}__{bound}"] = np.log(
                        out[f"{horizon}__{column}"] / close
                    )
            watch = profile.targets.get(target)
            if watch is not None and watch.baseline != served:
                frame[f"{watch.baseline}__{target}"] = watch.baseline_forecast(
                    features.reindex(out.index)
                )
    return Evidence(
        predictions=frame,
        model=primary,
        horizons=dict(pipeline.horizons),
        alpha=float(info.tags.get("alpha", "0.1")),
        label=f"version {info.version} on the recent window",
        sources=sources or None,
    )


def _window(candles: pd.DataFrame, bars: int, horizon: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The last ``bars`` bars whose ``horizon``-bar labels have matured."""
    usable = candles.index[: len(candles) - horizon]
    if len(usable) < bars:
        raise MonitoringError(
            f"the store holds {len(candles):,} bars: a {bars:,}-bar window whose {horizon}-bar "
            "labels have matured needs more; lower monitoring.window or wait for more bars"
        )
    return pd.Timestamp(usable[-bars]), pd.Timestamp(usable[-1])


def _gate(
    challenger: Evidence, champion: Evidence, info: VersionInfo, overrides: dict[str, Any]
) -> GateResult:
    learned = [c for c in challenger.predictions if str(c).startswith(f"{challenger.model}__")]
    if not learned:
        return GateResult(
            False,
            [
                GateCheck(
                    "learned",
                    False,
                    f"the challenger's learned model ({challenger.model}) serves no target: "
                    "baselines serve them all, so there is nothing learned to promote",
                )
            ],
        )
    try:
        return evaluate_gate(challenger, champion, version_gate(info, **overrides))
    except ConfigError as error:
        return GateResult(False, [GateCheck("gate", False, f"gate not applicable: {error}")])


def retrain(
    name: str,
    *,
    trigger: str = "manual",
    window: int | None = None,
    assessment: Assessment | None = None,
    until: pd.Timestamp | None = None,
    settings: Settings | None = None,
    **gate_overrides: Any,
) -> Cycle:
    """Run one cycle for the registered model ``name`` (see the module docstring).

    Parameters
    ----------
    name : str
        The registered model; it must have a champion with a monitoring profile.
    trigger : str
        ``manual``, ``scheduled``, ``performance`` or ``drift`` (tags the MLflow runs).
    window : int or None
        Bars of the recent window; the champion's ``monitoring.window`` by default.
    assessment : Assessment or None
        The monitoring report that triggered the cycle (its alarms are recorded).
    until : pandas.Timestamp or None
        Run as of this bar (a replay of the policy over the past); the store's last bar by
        default.
    settings : Settings or None
        Tracking backend, store and home; the process settings by default.
    **gate_overrides
        Gate fields (``level``, ``margin``, ``min_rows``...) replacing the champion config's.

    Returns
    -------
    Cycle
        The decision and where it was recorded.

    Raises
    ------
    MonitoringError
        No champion profile, a window the champion trained on, or too little data to train.
    """
    settings = settings or get_settings()
    base_tags("retrain", trigger)  # an unknown trigger fails before any work
    champion, champion_info = load_pipeline(name, CHAMPION, settings)
    profile = require_profile(champion, f"model {name!r} version {champion_info.version}")
    cfg = version_config(champion_info, settings)
    section = monitoring_section(champion_info, settings)
    candles = store_candles(champion, settings, until=until)
    horizon = max(champion.horizons.values())
    start, end = _window(candles, window or section.window, horizon)
    # The champion's last training rows had labels reaching ``horizon`` bars past them: a bar
    # is out of sample for it only after those (overlapping labels leak otherwise).
    step = pd.Timedelta(seconds=Timeframe.parse(champion.timeframe).seconds)
    unseen = profile.trained_until + (horizon + 1) * step
    if unseen > start:
        scored = int(((candles.index >= unseen) & (candles.index <= end)).sum())
        if scored < section.min_mature:
            raise MonitoringError(
                f"model {name!r} champion version {champion_info.version} saw bars until "
                f"{unseen - step:%Y-%m-%d %H:%M} in training; since then {scored:,} bars have "
                f"matured labels, and a cycle scores both models on at least "
                f"{section.min_mature:,}: wait for more bars"
            )
        start = pd.Timestamp(candles.index[candles.index >= unseen][0])
    history = candles[candles.index < start]
    train_bars = section.retraining.train_bars
    if train_bars is not None:
        history = history.iloc[-train_bars:]
    if len(history) < MIN_TRAIN_BARS:
        raise MonitoringError(
            f"retraining {name!r}: only {len(history):,} bars before the window "
            f"{start:%Y-%m-%d %H:%M}; a challenger needs at least {MIN_TRAIN_BARS:,}"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    challenger_cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(
                update={"start": history.index[0].isoformat(), "end": start.isoformat()}
            ),
            "output": str(Path(settings.home) / "retraining" / name / stamp),
            "registry": cfg.registry.model_copy(update={"name": name, "enabled": True}),
        }
    )
    logger.info("retraining {} ({}): {} bars before {}", name, trigger, len(history), start)
    try:
        result = run(
            challenger_cfg,
            settings=settings,
            candles=history,
            recorder=recorder_for(settings, trigger),
        )
    except (ConfigError, DataValidationError) as error:
        raise MonitoringError(
            f"retraining {name!r} on {len(history):,} bars ({history.index[0]:%Y-%m-%d} to "
            f"{start:%Y-%m-%d}) failed: {error}"
        ) from None
    if result.model_version is None:
        raise MonitoringError(f"retraining {name!r}: the challenger was not registered")
    challenger, challenger_info = load_pipeline(name, result.model_version, settings)
    gate = _gate(
        window_evidence(challenger, challenger_info, candles, start, end),
        window_evidence(champion, champion_info, candles, start, end),
        challenger_info,
        gate_overrides,
    )
    why = f"{trigger} retraining cycle, window {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
    try:
        decision = apply_verdict(name, challenger_info, gate, settings=settings, reason=why)
        outcome, reason = "promoted", decision.reason
        connect(settings).set_model_version_tag(
            name, str(challenger_info.version), PROMOTED_AT, candles.index[-1].isoformat()
        )
    except PromotionRefusedError:
        outcome, reason = "rejected", f"refused: {gate.explain()}"
    cycle = Cycle(
        name=name,
        trigger=trigger,
        champion=champion_info.version,
        challenger=challenger_info.version,
        decision=outcome,
        reason=reason,
        start=start,
        end=end,
        gate=gate,
        run_id="",
        alarms=[] if assessment is None else assessment.alarms,
    )
    run_id = record_cycle(cycle, assessment, settings, challenger_run=result.run_id)
    connect(settings).set_registered_model_tag(name, LAST_CYCLE, candles.index[-1].isoformat())
    return Cycle(**{**cycle.__dict__, "run_id": run_id})


def record_cycle(
    cycle: Cycle,
    assessment: Assessment | None,
    settings: Settings,
    *,
    challenger_run: str | None = None,
) -> str:
    """The cycle as an MLflow run in the retraining experiment; returns its id."""
    tags = {
        **base_tags("retraining_cycle", cycle.trigger),
        "registered_model": cycle.name,
        "decision": cycle.decision,
        "reason": cycle.reason[:5000],
        "champion_version": str(cycle.champion),
        "challenger_version": str(cycle.challenger),
        "window_start": "" if cycle.start is None else cycle.start.isoformat(),
        "window_end": "" if cycle.end is None else cycle.end.isoformat(),
        "alarms": json.dumps(cycle.alarms)[:5000],
    }
    if challenger_run:
        tags["challenger_run_id"] = challenger_run
    metrics: dict[str, float] = {}
    if cycle.gate is not None:
        for c in cycle.gate.comparisons:
            if c.result is None:
                continue
            key = f"gate.{c.target}.{c.model}_vs_{c.reference}".replace(" ", "_")
            metrics[f"{key}.difference"] = c.result.mean_difference
            metrics[f"{key}.p_value"] = c.result.p_value
    if assessment is not None:
        for t in assessment.targets.values():
            metrics[f"monitor.{t.name}.cusum"] = t.last_statistic
            if t.threshold is not None:
                metrics[f"monitor.{t.name}.threshold"] = t.threshold
            metrics[f"monitor.{t.name}.model_loss"] = t.model_loss
            metrics[f"monitor.{t.name}.baseline_loss"] = t.baseline_loss
        metrics["monitor.mature_share"] = assessment.mature_share
    finite = {k[:250]: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    run_name = f"cycle_{cycle.name}_{cycle.trigger}"
    experiment = settings.mlflow_experiment_retraining
    with tracked_run(experiment, run_name=run_name, tags=tags, settings=settings) as (client, rid):
        log_metrics(client, rid, finite)
        text = json.dumps(cycle.as_dict() | {"run_id": rid}, indent=2)
        client.log_text(rid, text, "cycle.json")
        if cycle.gate is not None:
            client.log_text(rid, "\n".join(cycle.gate.table()), "gate.md")
        if assessment is not None:
            client.log_text(rid, json.dumps(assessment.as_dict(), indent=2), "monitoring.json")
    return rid


def rollback_if_alarmed(
    name: str, assessment: Assessment, bars: int, settings: Settings | None = None
) -> Cycle | None:
    """Give the champion alias back when an alarm fired within ``bars`` bars of the current
    champion's promotion by a cycle; None when that is not the case."""
    settings = settings or get_settings()
    info = connect(settings).get_model_version(name, str(assessment.version))
    promoted = info.tags.get(PROMOTED_AT)
    if not promoted or not assessment.alarms:
        return None
    at = pd.Timestamp(promoted)
    fired = [t.alarm_at for t in assessment.targets.values() if t.alarm_at is not None]
    step = pd.Timedelta(seconds=Timeframe.parse(assessment.timeframe).seconds)
    early = [f for f in fired if f >= at and (f - at) / step <= bars]
    if not early:
        return None
    why = f"an alarm fired {int((early[0] - at) / step)} bars after the promotion: " + "; ".join(
        assessment.alarms
    )
    decision = rollback(name, settings=settings, reason=why)
    cycle = Cycle(
        name=name,
        trigger="performance",
        champion=assessment.version,
        challenger=None,
        decision="rolled_back",
        reason=f"{decision.reason} (version {decision.version} is champion again)",
        start=assessment.start,
        end=assessment.end,
        gate=None,
        run_id="",
        alarms=assessment.alarms,
    )
    run_id = record_cycle(cycle, assessment, settings)
    return Cycle(**{**cycle.__dict__, "run_id": run_id})
