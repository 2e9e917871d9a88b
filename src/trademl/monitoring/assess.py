"""How a served model is doing: its logged predictions scored on matured labels, beside the
baseline on the same bars, with the calibrated alarms and the drift of its inputs.

:func:`assess` reads one model version's rows of the prediction log for a recent window of bars,
joins them with the labels the store's candles have matured (the same label code as training),
and per served target reports:

* the realised loss of what was served and of the profile's baseline on the same bars, with the
  Diebold–Mariano mean difference and its Newey–West interval (labels overlap);
* the CUSUM path of the loss differential against the threshold calibrated at training, and the
  first bar it crossed it;
* for ranges, the rolling interval coverage with its binomial alarm.

Drift is diagnosis: the window's features and served forecasts against the profile's sketches.
Every number is about mature rows only, and the report says what share of the window that is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trademl.errors import TradeMLError
from trademl.monitoring.alarms import CoverageMonitor
from trademl.monitoring.drift import DriftReport, drift_report
from trademl.monitoring.predictions import LoggedPrediction, horizon_records, score
from trademl.monitoring.profile import MonitoringProfile, TargetWatch, differentials
from trademl.monitoring.reference import MIN_ROWS
from trademl.pipeline import PipelineModel
from trademl.validation.selection import compare
from trademl.validation.significance import row_losses

# What each target's served forecast and interval bounds are called in a logged row.
OUTPUT_OF = {"direction": "p_up", "max_high": "high_log", "min_low": "low_log"}
_DRIFT_COLUMNS = ("column", "n", "n_effective", "psi", "ks", "wasserstein", "qvalue", "drifted")
BOUNDS_OF = {"max_high": ("high_lo", "high_hi"), "min_low": ("low_lo", "low_hi")}


class MonitoringError(TradeMLError):
    """A model cannot be monitored as asked (no reference, too few mature labels)."""


@dataclass(frozen=True)
class TargetHealth:
    """One served target over the window.

    Attributes
    ----------
    name, served, baseline : str
        ``{kind}_{bars}``, what serves it, the baseline it is compared with.
    rows : int
        Mature predictions scored (one per bar).
    model_loss, baseline_loss : float
        Mean realised losses.
    difference, low, high, p_value : float
        Mean ``loss(served) - loss(baseline)``, its 95 % HAC interval and the one-sided p-value
        of "served is better"; NaN when the two are the same forecast.
    threshold : float or None
        The calibrated CUSUM threshold; None where nothing is watched (``note`` says why).
    statistic : pandas.Series
        The CUSUM statistic after each mature bar.
    alarm_at : pandas.Timestamp or None
        The first bar after which the statistic exceeded the threshold.
    coverage : pandas.Series or None
        Rolling interval coverage (ranges with intervals).
    coverage_alarm_at : pandas.Timestamp or None
        The first bar the coverage alarm fired.
    nominal_coverage : float
        ``1 - alpha`` (NaN for direction).
    note : str
        What could not be measured, and why.
    in_control_arl : float
        The bootstrap's estimate of the bars between false alarms at ``threshold`` (NaN when
        not watched): longer than asked when the training run's reference is short, since a
        threshold can only be placed between the simulated paths' peaks.
    losses : pandas.DataFrame
        Per mature bar, the realised loss of the served forecast (``served``) and of the
        baseline (``baseline``), on the bars where both are known (their means are
        ``model_loss`` and ``baseline_loss``).
    """

    name: str
    served: str
    baseline: str
    rows: int
    model_loss: float
    baseline_loss: float
    difference: float
    low: float
    high: float
    p_value: float
    threshold: float | None
    statistic: pd.Series
    alarm_at: pd.Timestamp | None
    coverage: pd.Series | None
    coverage_alarm_at: pd.Timestamp | None
    nominal_coverage: float
    note: str = ""
    in_control_arl: float = math.nan
    losses: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"served": [], "baseline": []}, dtype=np.float64)
    )

    @property
    def last_statistic(self) -> float:
        """The CUSUM statistic now (0 before any mature bar)."""
        return float(self.statistic.iloc[-1]) if len(self.statistic) else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types, without the series."""
        return {
            "target": self.name,
            "served": self.served,
            "baseline": self.baseline,
            "rows": self.rows,
            "model_loss": _num(self.model_loss),
            "baseline_loss": _num(self.baseline_loss),
            "difference": _num(self.difference),
            "difference_interval": [_num(self.low), _num(self.high)],
            "p_value": _num(self.p_value),
            "cusum": _num(self.last_statistic),
            "cusum_max": _num(float(self.statistic.max())) if len(self.statistic) else 0.0,
            "threshold": self.threshold,
            "in_control_arl": _num(self.in_control_arl),
            "alarm_at": _stamp(self.alarm_at),
            "coverage": (
                _num(float(self.coverage.iloc[-1]))
                if self.coverage is not None and len(self.coverage)
                else None
            ),
            "nominal_coverage": _num(self.nominal_coverage),
            "coverage_alarm_at": _stamp(self.coverage_alarm_at),
            "note": self.note,
        }


@dataclass(frozen=True)
class Assessment:
    """A model version's monitoring report over a window (see the module docstring).

    Attributes
    ----------
    model, version : str, int
        The registered model and version assessed.
    symbol, timeframe : str
        Its series.
    start, end : pandas.Timestamp
        The window's first and last bar.
    logged, mature : int
        Distinct (bar, horizon) predictions logged in the window, and how many have matured.
    targets : dict of str to TargetHealth
        Per served target.
    feature_drift, forecast_drift : DriftReport or None
        The window against the profile's sketches (None: too few rows, ``notes`` say).
    notes : list of str
        What could not be measured.
    """

    model: str
    version: int
    symbol: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    logged: int
    mature: int
    targets: dict[str, TargetHealth]
    feature_drift: DriftReport | None
    forecast_drift: DriftReport | None
    arl0: int
    notes: list[str] = field(default_factory=list)

    @property
    def mature_share(self) -> float:
        """Mature predictions over logged ones."""
        return self.mature / self.logged if self.logged else math.nan

    @property
    def alarms(self) -> list[str]:
        """Every alarm that fired in the window, with its numbers."""
        found = []
        for t in self.targets.values():
            if t.alarm_at is not None and t.threshold is not None:
                found.append(
                    f"{t.name}: the loss of {t.served} rose against {t.baseline} (CUSUM "
                    f"{float(t.statistic.max()):.2f} > threshold {t.threshold:.2f}; the model's "
                    f"detectors together: one false alarm per {self.arl0:,} bars) at "
                    f"{t.alarm_at:%Y-%m-%d %H:%M}"
                )
            if t.coverage_alarm_at is not None:
                found.append(
                    f"{t.name}: interval coverage fell below nominal "
                    f"{t.nominal_coverage:.2f} at {t.coverage_alarm_at:%Y-%m-%d %H:%M}"
                )
        return found

    @property
    def drifted(self) -> list[str]:
        """Features flagged as drifted (Benjamini–Hochberg across features)."""
        return [] if self.feature_drift is None else self.feature_drift.drifted

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON types (what ``GET .../monitoring`` returns)."""

        def drift(report: DriftReport | None, top: int) -> dict[str, Any] | None:
            if report is None:
                return None
            table = report.to_frame().head(top)
            return {
                "alpha": report.alpha,
                "columns": len(report),
                "drifted": report.drifted,
                "drifted_share": _num(report.drifted_share),
                "table": [
                    {k: (_num(v) if isinstance(v, float) else v) for k, v in row.items()}
                    for row in table[list(_DRIFT_COLUMNS)].to_dict("records")
                ],
            }

        return {
            "model": self.model,
            "version": self.version,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "window": {"start": _stamp(self.start), "end": _stamp(self.end)},
            "logged": self.logged,
            "mature": self.mature,
            "mature_share": _num(self.mature_share),
            "arl0": self.arl0,
            "alarms": self.alarms,
            "targets": [t.as_dict() for t in self.targets.values()],
            "feature_drift": drift(self.feature_drift, 20),
            "forecast_drift": drift(self.forecast_drift, 20),
            "notes": self.notes,
        }


def _num(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _stamp(value: pd.Timestamp | None) -> str | None:
    return None if value is None else pd.Timestamp(value).isoformat()


def served_records(
    predictions: pd.DataFrame,
    pipeline: PipelineModel,
    *,
    model_name: str,
    model_version: int,
    request_id: str = "replay",
    source: str = "store",
) -> list[LoggedPrediction]:
    """The prediction-log rows a server writes for each row of ``pipeline.predict(...)``: a
    replay of served bars in one batch (served = validated, so the values are the same)."""
    rows: list[LoggedPrediction] = []
    for stamp, values in predictions.iterrows():
        rows += horizon_records(
            {str(k): float(v) for k, v in values.items()},
            pipeline.horizons,
            request_id=request_id,
            model_name=model_name,
            model_version=model_version,
            symbol=pipeline.symbol,
            timeframe=pipeline.timeframe,
            bar_timestamp=stamp,
            source=source,
        )
    return rows


def require_profile(pipeline: PipelineModel, label: str) -> MonitoringProfile:
    """The pipeline's monitoring profile, or an error saying how to get one."""
    profile = pipeline.monitoring  # a pickle from before profiles reads the class default
    if profile is None:
        raise MonitoringError(
            f"{label} has no monitoring reference statistics (trained by an earlier trademl, as "
            "a panel, or with monitoring.enabled: false): train it again with `trademl train "
            "CONFIG` (monitoring.enabled: true, the default) to save them with the model"
        )
    return profile


def _series_rows(log: pd.DataFrame, watch: TargetWatch) -> pd.DataFrame:
    """One mature row per bar of the target's horizon: the first answer served for it."""
    rows = log[(log["horizon_bars"] == watch.bars) & log["mature"]]
    rows = rows.sort_values(["bar_timestamp", "logged_at"])
    return rows.drop_duplicates("bar_timestamp", keep="first").set_index("bar_timestamp")


def _target_health(
    watch: TargetWatch,
    rows: pd.DataFrame,
    features: pd.DataFrame,
    close: pd.Series,
    *,
    min_rows: int,
    coverage_window: int,
    coverage_level: float,
) -> TargetHealth:
    at = pd.DatetimeIndex(rows.index)
    realised = rows[f"realised_{watch.kind}"]
    if watch.kind == "direction":
        keep = realised != 0  # the dead zone is left out, as in training
        rows, realised, at = rows[keep], (realised[keep] > 0).astype(np.float64), at[keep]
    served = rows[OUTPUT_OF[watch.kind]].astype(np.float64).rename(watch.name)
    baseline = watch.baseline_forecast(features.reindex(at)).rename("baseline")
    d = differentials(realised, served, baseline, watch.kind)
    model_loss = baseline_loss = difference = low = high = p_value = math.nan
    comparison = compare(
        realised,
        served,
        baseline,
        kind=watch.kind,
        bars=watch.bars,
        names=(watch.served, watch.baseline),
        min_rows=max(min_rows, 2),
    )
    both = pd.concat([realised, served, baseline], axis=1).dropna().sort_index()
    losses = pd.DataFrame(
        {
            "served": row_losses(both.iloc[:, 0], both.iloc[:, 1], watch.loss),
            "baseline": row_losses(both.iloc[:, 0], both.iloc[:, 2], watch.loss),
        },
        index=both.index,
    )
    if len(both):
        model_loss = float(losses["served"].mean())
        baseline_loss = float(losses["baseline"].mean())
    if comparison.result is not None:
        r = comparison.result
        difference, low, high, p_value = r.mean_difference, r.low, r.high, r.p_value
    threshold, statistic, alarm_at = None, pd.Series(dtype=np.float64), None
    if watch.calibration is not None and len(d):
        detector = watch.calibration.detector()
        statistic = pd.Series(detector.path(d.to_numpy()), index=d.index, name="cusum")
        threshold = watch.calibration.h
        crossed = statistic[statistic > threshold]
        alarm_at = pd.Timestamp(crossed.index[0]) if len(crossed) else None
    coverage, coverage_alarm_at = None, None
    if watch.kind in BOUNDS_OF and all(b in rows for b in BOUNDS_OF[watch.kind]):
        lo_name, hi_name = BOUNDS_OF[watch.kind]
        reference = close.reindex(at).to_numpy()
        lo = np.log(rows[lo_name].to_numpy(np.float64) / reference)
        hi = np.log(rows[hi_name].to_numpy(np.float64) / reference)
        y = realised.to_numpy(np.float64)
        valid = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
        covered = (lo[valid] <= y[valid]) & (y[valid] <= hi[valid])
        monitor = CoverageMonitor(
            watch.alpha, window=coverage_window, level=coverage_level, overlap=watch.bars
        )
        fired = [monitor.update(bool(c)) for c in covered]
        stamps = at[valid]
        window = min(coverage_window, max(len(covered), 1))
        coverage = pd.Series(covered.astype(np.float64), index=stamps).rolling(window, 1).mean()
        first = next((i for i, f in enumerate(fired) if f), None)
        coverage_alarm_at = None if first is None else pd.Timestamp(stamps[first])
    note = watch.note
    if comparison.result is None:
        note = "; ".join(n for n in (note, comparison.note) if n)
    return TargetHealth(
        name=watch.name,
        served=watch.served,
        baseline=watch.baseline,
        rows=len(d),
        model_loss=model_loss,
        baseline_loss=baseline_loss,
        difference=difference,
        low=low,
        high=high,
        p_value=p_value,
        threshold=threshold,
        statistic=statistic,
        alarm_at=alarm_at,
        coverage=coverage,
        coverage_alarm_at=coverage_alarm_at,
        nominal_coverage=1.0 - watch.alpha if watch.kind in BOUNDS_OF else math.nan,
        note=note,
        in_control_arl=(math.nan if watch.calibration is None else watch.calibration.arl0_estimate),
        losses=losses,
    )


def assess(
    pipeline: PipelineModel,
    log: pd.DataFrame,
    candles: pd.DataFrame,
    *,
    model: str,
    version: int,
    window: int = 500,
    min_mature: int = 100,
    coverage_window: int = 250,
    coverage_level: float = 0.001,
    drift_alpha: float = 0.05,
) -> Assessment:
    """Assess ``version`` of ``model`` over the last ``window`` bars of ``candles``.

    Parameters
    ----------
    pipeline : PipelineModel
        The version's pipeline (its monitoring profile, features and horizons).
    log : pandas.DataFrame
        Prediction-log rows (:meth:`PredictionLog.read`); rows of other versions and series
        are ignored.
    candles : pandas.DataFrame
        The store's candles of the series up to now, with the window and the warm-up before it.
    model, version : str, int
        The registered model and version assessed.
    window : int
        Bars of the window, ending at the last candle.
    min_mature : int
        Fewest mature predictions (of the shortest-horizon target) the report needs.
    coverage_window, coverage_level : int, float
        The coverage monitor's rolling window and per-check level.
    drift_alpha : float
        False discovery rate of the drift tables.

    Returns
    -------
    Assessment
        Per target the realised losses, alarms and coverage; the drift tables.

    Raises
    ------
    MonitoringError
        The pipeline has no monitoring profile, or the window holds fewer than ``min_mature``
        mature predictions (the message gives the counts).
    """
    label = f"model {model!r} version {version}"
    profile = require_profile(pipeline, label)
    frame = pipeline._candles(candles)
    if len(frame) < window + pipeline.warmup_bars:
        window = max(len(frame) - pipeline.warmup_bars, 0)
    bars = frame.index[-window:] if window else frame.index[:0]
    if not len(bars):
        raise MonitoringError(f"{label}: no candles after the {pipeline.warmup_bars}-bar warm-up")
    start, end = pd.Timestamp(bars[0]), pd.Timestamp(bars[-1])
    ours = log[
        (log["model_name"] == model)
        & (log["model_version"] == version)
        & (log["symbol"] == pipeline.symbol)
        & (log["timeframe"] == pipeline.timeframe)
        & (log["bar_timestamp"] >= start)
        & (log["bar_timestamp"] <= end)
    ]
    scored = score(ours, frame).rows
    distinct = scored.drop_duplicates(["bar_timestamp", "horizon_bars"])
    logged, mature = len(distinct), int(distinct["mature"].sum()) if len(distinct) else 0
    shortest = min((w.bars for w in profile.targets.values()), default=0)
    mature_short = int(distinct.loc[distinct["horizon_bars"] == shortest, "mature"].sum())
    if mature_short < min_mature:
        raise MonitoringError(
            f"{label}: the window {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({window:,} bars) "
            f"holds {logged:,} logged predictions of which {mature:,} have matured "
            f"({mature_short:,} at the {shortest}-bar horizon); a report needs at least "
            f"{min_mature:,}: widen the window or wait for more bars"
        )
    context = frame.iloc[-(window + pipeline.warmup_bars) :]
    features = pipeline.features(context)
    health = {
        name: _target_health(
            watch,
            _series_rows(scored, watch),
            features,
            frame["close"],
            min_rows=min_mature,
            coverage_window=coverage_window,
            coverage_level=coverage_level,
        )
        for name, watch in profile.targets.items()
    }
    notes = list(profile.notes)
    feature_drift = drift_report(profile.features, features, alpha=drift_alpha)
    served = {
        name: _series_rows(scored.assign(mature=True), watch)[OUTPUT_OF[watch.kind]]
        for name, watch in profile.targets.items()
    }
    forecasts = pd.DataFrame(served).astype(np.float64)
    forecast_drift = None
    if len(forecasts.dropna(how="all")) >= MIN_ROWS:
        forecast_drift = drift_report(profile.forecasts, forecasts, alpha=drift_alpha)
    else:
        notes.append(f"forecast drift: fewer than {MIN_ROWS} logged bars in the window")
    return Assessment(
        model=model,
        version=version,
        symbol=pipeline.symbol,
        timeframe=pipeline.timeframe,
        start=start,
        end=end,
        logged=logged,
        mature=mature,
        targets=health,
        feature_drift=feature_drift,
        forecast_drift=forecast_drift,
        arl0=profile.arl0,
        notes=notes,
    )
