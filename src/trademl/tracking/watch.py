"""Monitoring a registered model: its champion's logged predictions, scored on the store's
candles, through :func:`trademl.monitoring.assess.assess`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from trademl.config import MonitoringSection, RunConfig, Settings, get_settings, load_run_config
from trademl.data.ingest import open_default_store
from trademl.errors import ModelNotFoundError
from trademl.monitoring.assess import Assessment, MonitoringError, assess
from trademl.monitoring.predictions import opened
from trademl.pipeline import PipelineModel
from trademl.tracking.client import connect
from trademl.tracking.decisions import CHAMPION
from trademl.tracking.pipeline import load_pipeline
from trademl.tracking.registry import VersionInfo


def log_url(settings: Settings) -> str:
    """Where served predictions are logged: the setting, else the job store's database."""
    return settings.prediction_log_url or settings.jobs_store_url


def version_config(info: VersionInfo, settings: Settings | None = None) -> RunConfig:
    """The run config a version was trained with (its training run's ``config.yaml``)."""
    if info.run_id is None:
        raise ModelNotFoundError(f"model {info.name} version {info.version} has no training run")
    with tempfile.TemporaryDirectory() as folder:
        path = connect(settings).download_artifacts(info.run_id, "config.yaml", folder)
        return load_run_config(Path(path))


def store_candles(
    pipeline: PipelineModel,
    settings: Settings,
    start: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The store's candles of the pipeline's series (from ``start``, up to and including
    ``until``: a replay of the policy as of a past bar sees nothing after it)."""
    end = None if until is None else pd.Timestamp(until) + pd.Timedelta(microseconds=1)
    with open_default_store(settings) as store:
        return store.read(pipeline.symbol, pipeline.timeframe, start, end)


def monitoring_section(info: VersionInfo, settings: Settings) -> MonitoringSection:
    """The version's ``monitoring`` config (defaults for versions trained without one)."""
    try:
        return version_config(info, settings).monitoring
    except (ModelNotFoundError, OSError):
        return MonitoringSection()


def monitor(
    name: str,
    version: str | int = CHAMPION,
    *,
    window: int | None = None,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    settings: Settings | None = None,
) -> tuple[Assessment, VersionInfo, PipelineModel]:
    """Assess a registered version (the champion by default) on its logged predictions.

    Parameters
    ----------
    name : str
        The registered model.
    version : str or int
        An alias or a version number.
    window : int or None
        Recent bars to assess; the version's ``monitoring.window`` by default.
    since : pandas.Timestamp or None
        Only bars after it (the last retraining cycle): detectors restart on fresh evidence.
    until : pandas.Timestamp or None
        Assess as of this bar (a replay of the past); the store's last bar by default.
    settings : Settings or None
        The tracking backend, the store and the prediction log; the process settings by default.

    Returns
    -------
    tuple of (Assessment, VersionInfo, PipelineModel)
        The report, the version assessed and its pipeline.

    Raises
    ------
    MonitoringError
        The version has no monitoring profile, or too few mature labels in the window.
    """
    settings = settings or get_settings()
    pipeline, info = load_pipeline(name, version, settings)
    section = monitoring_section(info, settings)
    bars = window or section.window
    candles = store_candles(pipeline, settings, until=until)
    if since is not None:
        bars = min(bars, int((candles.index > since).sum()))
        if bars == 0:
            raise MonitoringError(
                f"model {name!r} version {info.version}: no bar since the last retraining cycle "
                f"at {pd.Timestamp(since):%Y-%m-%d %H:%M}; the detectors wait for new bars"
            )
    start = (
        candles.index[max(len(candles) - (bars + pipeline.warmup_bars), 0)]
        if len(candles)
        else None
    )
    with opened(log_url(settings)) as log:
        rows = log.read(
            name,
            symbol=pipeline.symbol,
            timeframe=pipeline.timeframe,
            version=info.version,
            start=start,
            end=None if until is None else pd.Timestamp(until) + pd.Timedelta(microseconds=1),
        )
    report = assess(
        pipeline,
        rows,
        candles,
        model=name,
        version=info.version,
        window=bars,
        min_mature=section.min_mature,
        coverage_window=section.coverage_window,
        coverage_level=section.coverage_level,
        drift_alpha=section.drift_alpha,
    )
    return report, info, pipeline


def window_features(
    report: Assessment, pipeline: PipelineModel, settings: Settings | None = None
) -> pd.DataFrame:
    """The pipeline's features over the report's window (what the drift table compared)."""
    candles = store_candles(pipeline, settings or get_settings(), until=report.end)
    window = int((candles.index >= report.start).sum())
    return pipeline.features(candles.iloc[-(window + pipeline.warmup_bars) :]).loc[report.start :]


def summary_lines(report: Assessment) -> list[str]:
    """The report as a few lines of text (the CLI's summary)."""
    lines = [
        f"{report.model} version {report.version} ({report.symbol} {report.timeframe}), "
        f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M}: {report.logged:,} "
        f"predictions logged, {report.mature:,} matured ({report.mature_share:.0%})"
    ]
    for t in report.targets.values():
        lines.append(
            f"  {t.name}: {t.served} loss {t.model_loss:.4g} vs {t.baseline} {t.baseline_loss:.4g}"
            f" (difference {t.difference:+.3g}, 95% [{t.low:+.3g}, {t.high:+.3g}], {t.rows:,} "
            f"bars); CUSUM {t.last_statistic:.2f}"
            + (f" / {t.threshold:.2f}" if t.threshold is not None else " (not watched)")
            + (
                f"; coverage {float(t.coverage.iloc[-1]):.2f} (nominal {t.nominal_coverage:.2f})"
                if t.coverage is not None and len(t.coverage)
                else ""
            )
        )
    lines += [f"  ALARM {alarm}" for alarm in report.alarms] or ["  no alarm"]
    if report.feature_drift is not None:
        drifted = report.drifted
        lines.append(
            f"  drift: {len(drifted)} of {len(report.feature_drift)} features drifted at FDR "
            f"{report.feature_drift.alpha:g}" + (f" ({', '.join(drifted[:5])})" if drifted else "")
        )
    lines += [f"  note: {n}" for n in report.notes]
    return lines


def report_json(report: Assessment) -> str:
    """The report as JSON text."""
    data: dict[str, Any] = report.as_dict()
    return json.dumps(data, indent=2)
