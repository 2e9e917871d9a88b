"""The promotion gate: a candidate model must beat the naive baselines and the current champion
on the same out-of-sample rows, and its intervals must cover as promised.

Every training run keeps its out-of-sample predictions (``predictions.parquet``: the targets,
each model's and each baseline's prediction per test row); comparing two versions means
scoring both on the rows both predicted, never on rows one of them was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trademl.config import GateSection
from trademl.errors import ConfigError
from trademl.validation.metrics import (
    classification_metrics,
    interval_coverage,
    regression_metrics,
)

BASELINE_PREFIX = "naive_"
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mae", "rmse"})
CLASSIFICATION_METRICS = frozenset(
    {"log_loss", "brier", "accuracy", "balanced_accuracy", "roc_auc"}
)
REGRESSION_METRICS = frozenset({"r2", "mae", "rmse", "ic", "rank_ic"})


@dataclass(frozen=True)
class Evidence:
    """One model version's out-of-sample record.

    Attributes
    ----------
    predictions : pandas.DataFrame
        A run's ``predictions.parquet``.
    model : str
        The primary model's column name (the first of the config's models).
    horizons : dict of str to int
        Horizon name → bars, as trained.
    alpha : float
        Nominal miscoverage of the intervals.
    label : str
        How messages name it (``version 3``).
    """

    predictions: pd.DataFrame
    model: str
    horizons: dict[str, int]
    alpha: float
    label: str


@dataclass(frozen=True)
class GateCheck:
    """One comparison of the gate."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict with every check's numbers."""

    passed: bool
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """The failing checks (all checks when it passed), one per clause."""
        chosen = [c for c in self.checks if not c.passed] or self.checks
        return "; ".join(c.detail for c in chosen)


def check_gate_config(gate: GateSection) -> None:
    """Refuse a metric that does not fit the gate's target."""
    allowed = CLASSIFICATION_METRICS if gate.target == "direction" else REGRESSION_METRICS
    if gate.metric not in allowed:
        raise ConfigError(
            f"registry.gate.metric {gate.metric!r} does not score target {gate.target!r}; "
            f"choose one of {', '.join(sorted(allowed))}"
        )


def _bars(evidence: Evidence, horizon: str | int | None) -> int:
    if horizon is None:
        return next(iter(evidence.horizons.values()))
    if str(horizon) in evidence.horizons:
        return evidence.horizons[str(horizon)]
    if isinstance(horizon, int) and horizon in evidence.horizons.values():
        return horizon
    raise ConfigError(
        f"registry.gate.horizon {horizon!r} was not trained by {evidence.label}; "
        f"trained: {', '.join(f'{k} ({v} bars)' for k, v in evidence.horizons.items())}"
    )


def score(y: np.ndarray, prediction: np.ndarray, metric: str) -> float:
    """``metric`` of ``prediction`` against ``y`` (classification metrics for probabilities)."""
    if metric in CLASSIFICATION_METRICS:
        return float(classification_metrics(y, prediction)[metric])
    return float(regression_metrics(y, prediction)[metric])


def _beats(candidate: float, reference: float, metric: str, margin: float) -> bool:
    if not (np.isfinite(candidate) and np.isfinite(reference)):
        return False
    if metric in LOWER_IS_BETTER:
        return candidate < reference - margin
    return candidate > reference + margin


def _compare(
    metric: str, margin: float, ours: float, theirs: float, who: str, rows: int
) -> GateCheck:
    passed = _beats(ours, theirs, metric, margin)
    better = "lower" if metric in LOWER_IS_BETTER else "higher"
    verdict = "beats" if passed else "does not beat"
    return GateCheck(
        f"vs {who}",
        passed,
        f"{metric} {ours:.5f} {verdict} {who} {theirs:.5f} by the margin {margin:g} "
        f"({better} is better, {rows:,} common out-of-sample rows)",
    )


def evaluate_gate(candidate: Evidence, champion: Evidence | None, gate: GateSection) -> GateResult:
    """Judge ``candidate`` against its run's naive baselines and ``champion``.

    Parameters
    ----------
    candidate, champion : Evidence
        Out-of-sample records; ``champion`` None when there is none yet.
    gate : GateSection
        Metric, target, horizon, margin, coverage tolerance and the fewest common rows.

    Returns
    -------
    GateResult
        Passed when every check passed; each check carries its numbers.
    """
    check_gate_config(gate)
    bars = _bars(candidate, gate.horizon)
    suffix = f"{gate.target}_{bars}"
    frame = candidate.predictions
    target_column, model_column = f"target__{suffix}", f"{candidate.model}__{suffix}"
    if target_column not in frame or model_column not in frame:
        raise ConfigError(
            f"{candidate.label} holds no out-of-sample {gate.target} predictions at {bars} bars "
            f"for model {candidate.model!r}"
        )
    checks: list[GateCheck] = []
    y = frame[target_column]
    ours = frame[model_column]
    baselines = [
        c[: -len(f"__{suffix}")]
        for c in frame.columns
        if c.startswith(BASELINE_PREFIX) and c.endswith(f"__{suffix}") and c != model_column
    ]
    for baseline in baselines:
        theirs = frame[f"{baseline}__{suffix}"]
        rows = y.notna() & ours.notna() & theirs.notna()
        checks.append(
            _compare(
                gate.metric,
                gate.margin,
                score(y[rows].to_numpy(), ours[rows].to_numpy(), gate.metric),
                score(y[rows].to_numpy(), theirs[rows].to_numpy(), gate.metric),
                baseline,
                int(rows.sum()),
            )
        )
    if champion is not None:
        checks.append(_versus_champion(candidate, champion, gate, bars, suffix))
    checks += _coverage(candidate, bars, gate.coverage_tolerance)
    return GateResult(all(c.passed for c in checks), checks)


def _versus_champion(
    candidate: Evidence, champion: Evidence, gate: GateSection, bars: int, suffix: str
) -> GateCheck:
    theirs_column = f"{champion.model}__{suffix}"
    if bars not in champion.horizons.values() or theirs_column not in champion.predictions:
        return GateCheck(
            "vs champion",
            False,
            f"the champion ({champion.label}) has no {gate.target} predictions at {bars} bars "
            "to compare with",
        )
    joined = pd.concat(
        {
            "y": candidate.predictions[f"target__{suffix}"],
            "ours": candidate.predictions[f"{candidate.model}__{suffix}"],
        },
        axis=1,
    ).join(champion.predictions[theirs_column].rename("theirs"), how="inner")
    joined = joined.dropna()
    if len(joined) < gate.min_rows:
        return GateCheck(
            "vs champion",
            False,
            f"only {len(joined):,} out-of-sample rows in common with the champion "
            f"({champion.label}); the gate needs {gate.min_rows:,}",
        )
    y = joined["y"].to_numpy()
    return _compare(
        gate.metric,
        gate.margin,
        score(y, joined["ours"].to_numpy(), gate.metric),
        score(y, joined["theirs"].to_numpy(), gate.metric),
        f"the champion ({champion.label})",
        len(joined),
    )


def _coverage(candidate: Evidence, bars: int, tolerance: float) -> list[GateCheck]:
    checks = []
    nominal = 1.0 - candidate.alpha
    frame = candidate.predictions
    for kind in ("max_high", "min_low"):
        lo = f"{candidate.model}__{kind}_{bars}__lo"
        hi = f"{candidate.model}__{kind}_{bars}__hi"
        target = f"target__{kind}_{bars}"
        if lo not in frame or hi not in frame or target not in frame:
            continue
        rows = frame[[target, lo, hi]].dropna()
        coverage = interval_coverage(
            rows[target].to_numpy(), rows[lo].to_numpy(), rows[hi].to_numpy()
        )["coverage"]
        passed = bool(np.isfinite(coverage) and abs(coverage - nominal) <= tolerance)
        checks.append(
            GateCheck(
                f"{kind} coverage",
                passed,
                f"{kind} interval coverage {coverage:.3f} is {'within' if passed else 'outside'} "
                f"{tolerance:g} of nominal {nominal:.2f}",
            )
        )
    return checks
