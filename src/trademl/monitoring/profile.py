"""What a served model is watched against, saved with its pipeline at training.

A :class:`MonitoringProfile` holds, per served target, the baseline its realised loss is
compared with (fitted on the training rows, computed from the pipeline's own features), the
CUSUM threshold calibrated on the run's out-of-sample loss differentials to the configured
average run length without change, and the nominal miscoverage of its intervals; and, for
drift, quantile sketches of the training features and of the out-of-sample forecasts.

Everything here comes from the run's validation: the differentials are out of sample (the
walk-forward's test rows), so an alarm threshold reflects how the model behaved on data it did
not see, autocorrelation included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from trademl.config import RunConfig
from trademl.errors import ConfigError
from trademl.har import interval_scale
from trademl.monitoring.alarms import Calibration, calibrate_threshold
from trademl.monitoring.reference import ReferenceStats, reference_stats
from trademl.targets import baseline_models, model_factory, model_name, servable, target
from trademl.validation.selection import SERVED_KINDS, TargetChoice, baselines_of, targets_in
from trademl.validation.significance import loss_for, row_losses

PROFILE_VERSION = 1
# Reference rows kept for the feature sketches: enough for 1% quantiles many times over.
MAX_REFERENCE_ROWS = 50_000


@dataclass(frozen=True)
class TargetWatch:
    """How one served target is watched.

    Attributes
    ----------
    kind, bars : str, int
        The target (``direction``, ``max_high`` or ``min_low``) and its horizon in bars.
    served : str
        The forecast serving it (the primary model's name or a baseline's).
    baseline : str
        The baseline the realised loss is compared with: the one with the lowest
        out-of-sample loss among those the pipeline can compute, other than ``served``.
    baseline_model : Any
        That baseline fitted on the training rows; it reads the pipeline's features.
    calibration : Calibration or None
        The CUSUM on the relative loss differential (:func:`differentials`); None where the
        run had too few
        out-of-sample rows (``note`` says).
    alpha : float
        Nominal miscoverage of the served intervals (ranges only; NaN for direction).
    note : str
        Why there is no calibration, if there is none.
    """

    kind: str
    bars: int
    served: str
    baseline: str
    baseline_model: Any
    calibration: Calibration | None
    alpha: float
    note: str = ""

    @property
    def name(self) -> str:
        """``{kind}_{bars}``, as predictions and gates name it."""
        return f"{self.kind}_{self.bars}"

    @property
    def loss(self) -> str:
        """The per-row loss: log loss for direction, squared error for ranges."""
        return loss_for(self.kind)

    def baseline_forecast(self, features: pd.DataFrame) -> pd.Series:
        """The baseline's forecast (P(up) for direction) on each row of ``features`` (the
        pipeline's); NaN where a feature it reads is missing."""
        known = features.notna().all(axis=1).to_numpy()
        values = np.full(len(features), np.nan)
        if known.any():
            rows = features[known]
            model = self.baseline_model
            values[known] = (
                model.predict_proba(rows)[:, 1] if self.kind == "direction" else model.predict(rows)
            )
        return pd.Series(values, index=features.index, name=self.baseline)


@dataclass(frozen=True)
class MonitoringProfile:
    """The reference a served model is monitored against (see the module docstring).

    Attributes
    ----------
    features : ReferenceStats
        Sketches of the training feature matrix, per column.
    forecasts : ReferenceStats
        Sketches of the out-of-sample served forecasts, one column per target
        (``{kind}_{bars}``).
    targets : dict of str to TargetWatch
        Per served target (``{kind}_{bars}``).
    arl0 : int
        Bars between false alarms of the model as a whole: each of its ``n`` watched targets
        is calibrated to ``n * arl0`` (a union bound).
    trained_until : pandas.Timestamp
        The last training row's bar: a window must start after it to be out of sample.
    version : int
        The profile format.
    """

    features: ReferenceStats
    forecasts: ReferenceStats
    targets: dict[str, TargetWatch]
    arl0: int
    trained_until: pd.Timestamp
    version: int = PROFILE_VERSION
    notes: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, Any]:
        """Per target: the served forecast, the baseline and the calibrated threshold."""
        return {
            name: {
                "served": watch.served,
                "baseline": watch.baseline,
                "threshold": None if watch.calibration is None else watch.calibration.h,
                "in_control_arl": (
                    None if watch.calibration is None else watch.calibration.arl0_estimate
                ),
                "reference_rows": (
                    None if watch.calibration is None else watch.calibration.n_reference
                ),
                "note": watch.note,
            }
            for name, watch in self.targets.items()
        }


def _best_baseline(
    wide: pd.DataFrame, kind: str, bars: int, columns: list[str], y: pd.Series, served: str
) -> str | None:
    """The baseline with the lowest out-of-sample loss among those the pipeline computes,
    other than the served forecast (a baseline that serves is watched against the next one:
    a forecast compared with itself could never alarm)."""
    best, best_loss = None, math.inf
    for name in baselines_of(wide, kind, bars):
        if name == served or not servable(columns, kind, bars, name):
            continue
        rows = pd.concat([y, wide[f"{name}__{kind}_{bars}"]], axis=1).dropna()
        if rows.empty:
            continue
        mean = float(np.mean(row_losses(rows.iloc[:, 0], rows.iloc[:, 1], loss_for(kind))))
        if mean < best_loss:
            best, best_loss = name, mean
    return best


def differentials(y: pd.Series, served: pd.Series, baseline: pd.Series, kind: str) -> pd.Series:
    """Per row, the served forecast's loss relative to the baseline's on the same bar,
    ``(L_s - L_b) / (L_s + L_b)`` in [-1, 1] (0 where both are 0), on the rows where all three
    are known: positive where the served forecast did worse.

    Relative, not ``L_s - L_b``: squared errors scale with volatility, so a difference in
    levels swings wider in every volatile spell and a one-sided CUSUM on it alarms on
    volatility rather than on the model falling behind its baseline. The ratio is scale-free,
    and bounded, which keeps the bootstrap calibration stable too.

    >>> y = pd.Series([0.0, 0.0, 0.0])
    >>> differentials(y, pd.Series([1.0, 10.0, 0.0]), pd.Series([1.0, 0.0, 0.0]), "max_high").tolist()
    [0.0, 1.0, 0.0]
    """
    rows = pd.concat({"y": y, "a": served, "b": baseline}, axis=1).dropna().sort_index()
    loss = loss_for(kind)
    a, b = row_losses(rows["y"], rows["a"], loss), row_losses(rows["y"], rows["b"], loss)
    total = a + b
    values = np.divide(a - b, total, out=np.zeros_like(total), where=total > 0)
    return pd.Series(values, index=rows.index, name=f"{kind}_{served.name}")


def _fit_baseline(
    cfg: RunConfig, X: pd.DataFrame, labels: pd.DataFrame, kind: str, bars: int, name: str
) -> Any:
    naive_kind, params = baseline_models(kind, bars)[name]
    task, y, keep = target(labels, kind, bars)
    build = model_factory(
        naive_kind, params, task, cfg, bars, scale_features=interval_scale(X, bars)
    )
    rows = y.notna().to_numpy() & (np.ones(len(y), bool) if keep is None else keep)
    model = build()
    model.fit(X[rows], y[rows])
    return model


def build_profile(
    cfg: RunConfig,
    X: pd.DataFrame,
    labels: pd.DataFrame,
    wide: pd.DataFrame,
    choices: Mapping[str, TargetChoice],
    *,
    arl0: int,
    alpha: float,
    seed: int = 0,
) -> MonitoringProfile:
    """The monitoring profile of a single-symbol run.

    Parameters
    ----------
    cfg : RunConfig
        The run's config (the baselines are built as validation built them).
    X, labels : pandas.DataFrame
        The training features and labels (the final fit's rows).
    wide : pandas.DataFrame
        The run's out-of-sample predictions (``predictions.parquet``).
    choices : mapping of str to TargetChoice
        What serves each target; absent targets are served by the primary model.
    arl0 : int
        Bars between false alarms of the model (all its watched targets together).
    alpha : float
        Nominal interval miscoverage.
    seed : int
        The bootstrap's seed.

    Returns
    -------
    MonitoringProfile
        With a watch per served target found in ``wide``.
    """
    primary = model_name(cfg.models[0].kind, cfg.models[0].name)
    columns = list(X.columns)
    watches: dict[str, TargetWatch] = {}
    forecasts: dict[str, pd.Series] = {}
    notes: list[str] = []
    found: list[tuple[str, int, str, str, str]] = []  # kind, bars, name, served, baseline
    for kind, bars in targets_in(wide):
        if kind not in SERVED_KINDS:
            continue
        name = f"{kind}_{bars}"
        choice = choices.get(name)
        served = choice.source if choice is not None else primary
        if f"{served}__{name}" not in wide:
            continue
        forecasts[name] = wide[f"{served}__{name}"]
        baseline = _best_baseline(wide, kind, bars, columns, wide[f"target__{name}"], served)
        if baseline is None:
            notes.append(
                f"{name}: served by {served}, and no other baseline the pipeline computes to "
                "compare it with; its loss is not watched"
            )
            continue
        found.append((kind, bars, name, served, baseline))
    # arl0 is the model's: n detectors each calibrated to n * arl0 bars alarm together no more
    # often than once per arl0 bars in control (a union bound).
    per_target = arl0 * max(len(found), 1)
    for kind, bars, name, served, baseline in found:
        calibration: Calibration | None = None
        note = ""
        y = wide[f"target__{name}"]
        d = differentials(y, wide[f"{served}__{name}"], wide[f"{baseline}__{name}"], kind)
        try:
            calibration = calibrate_threshold(
                d.to_numpy(), arl0=per_target, horizon=bars, seed=seed
            )
        except ConfigError as error:
            note = f"no alarm threshold: {error}"
            logger.info("monitoring profile, {}: {}", name, note)
        watches[name] = TargetWatch(
            kind=kind,
            bars=bars,
            served=served,
            baseline=baseline,
            baseline_model=_fit_baseline(cfg, X, labels, kind, bars, baseline),
            calibration=calibration,
            alpha=alpha if kind != "direction" else math.nan,
            note=note,
        )
    sample = X.iloc[-MAX_REFERENCE_ROWS:]
    return MonitoringProfile(
        features=reference_stats(sample),
        forecasts=reference_stats(pd.DataFrame(forecasts)),
        targets=watches,
        arl0=arl0,
        # One time-zone object whatever the index carried (a cached frame's differs), so that
        # reruns pickle the same bytes.
        trained_until=pd.Timestamp(X.index.max()).tz_convert(UTC),
        notes=tuple(notes),
    )
