"""The promotion gate: a statistical test, per served target, on out-of-sample rows.

Every training run keeps its out-of-sample predictions (``predictions.parquet``: the targets,
each model's and each baseline's prediction per test row) and says what serves each target
(the primary model where it beat every baseline in a Diebold–Mariano test, else the best
baseline: :func:`trademl.validation.selection.choose_sources`). The gate judges what a version
*serves*, target by target, with the per-row losses of
:func:`trademl.validation.significance.row_losses` (log loss for direction, squared error for
ranges) and one-sided Diebold–Mariano tests with a Newey–West variance (lag at least the
horizon, since overlapping labels make the loss differential autocorrelated). A version passes
when:

1. on every gated target, what it serves is not significantly worse than any baseline (true by
   construction where a baseline serves: the best one was chosen) — a version must never make
   a served forecast worse than the one-line alternative it was measured against;
2. at least one gated target is served by a learned model that beats every baseline at
   ``level`` — otherwise the version is a set of baselines, and registering it as champion
   would claim skill it did not show;
3. the intervals of every served max-high / min-low forecast cover within
   ``coverage_tolerance`` of nominal — an interval that does not cover is a wrong promise;
4. against a champion, on the rows both predicted: no gated target significantly worse (a
   promotion must not trade one target's quality for another's), and at least one
   significantly better (a change must be shown to help, not be noise).

A point estimate would promote noise half of the time; the test asks for evidence, and records
per target and comparison the loss difference, its HAC interval, the p-value and the rows
compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trademl.config import GateSection
from trademl.errors import ConfigError
from trademl.validation.metrics import interval_coverage
from trademl.validation.selection import (
    SERVED_KINDS,
    Comparison,
    baselines_of,
    compare,
    targets_in,
)

CLASSIFICATION_METRICS = frozenset(
    {"log_loss", "brier", "accuracy", "balanced_accuracy", "roc_auc"}
)
REGRESSION_METRICS = frozenset({"r2", "mae", "rmse", "ic", "rank_ic"})
INTERVAL_KINDS = ("max_high", "min_low")


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
    sources : dict of str to str or None
        ``{kind}_{bars}`` → the forecast serving that target (the model's or a baseline's
        column name); None for versions from before the gate chose per target, which serve
        their model everywhere.
    """

    predictions: pd.DataFrame
    model: str
    horizons: dict[str, int]
    alpha: float
    label: str
    sources: dict[str, str] | None = None

    def served(self, target: str) -> str:
        """The forecast that serves ``target`` (``{kind}_{bars}``)."""
        return (self.sources or {}).get(target, self.model)


@dataclass(frozen=True)
class GateCheck:
    """One clause of the gate."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict with every check's numbers.

    Attributes
    ----------
    passed : bool
        Every check passed.
    checks : list of GateCheck
        The clauses, each with its numbers.
    comparisons : list of Comparison
        Every Diebold–Mariano comparison made, per target.
    sources : dict of str to str
        What serves each gated target.
    """

    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """The failing checks (all checks when it passed), one per clause."""
        chosen = [c for c in self.checks if not c.passed] or self.checks
        return "; ".join(c.detail for c in chosen)

    @property
    def record(self) -> str:
        """Every comparison with its numbers: what the decision log keeps."""
        return "; ".join(c.describe() for c in self.comparisons)

    def explain(self) -> str:
        """The verdict's reason and, when it failed, every comparison's numbers too."""
        if self.passed or not self.comparisons:
            return self.reason
        return f"{self.reason} | every comparison: {self.record}"

    def table(self) -> list[str]:
        """The comparisons as Markdown table lines."""
        lines = [
            "| target | served by | compared | loss | mean difference | 95% interval | "
            "one-sided p | rows |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in self.comparisons:
            served = self.sources.get(c.target, "-")
            if c.result is None:
                lines.append(
                    f"| {c.target} | {served} | {c.model} vs {c.reference} | {c.loss} | "
                    f"{c.note} | - | - | - |"
                )
                continue
            r = c.result
            lines.append(
                f"| {c.target} | {served} | {c.model} vs {c.reference} | {c.loss} | "
                f"{r.mean_difference:+.4g} | [{r.low:+.4g}, {r.high:+.4g}] | {r.p_value:.4f} | "
                f"{r.rows:,} |"
            )
        return lines


def check_gate_config(
    gate: GateSection,
    horizons: Mapping[str, int] | None = None,
    kinds: Iterable[str] | None = None,
) -> None:
    """Refuse an unknown metric, a metric that does not fit the older ``target`` key, and
    (given what a run trains) gated targets it does not train.

    Parameters
    ----------
    gate : GateSection
        The gate config.
    horizons : mapping of str to int, optional
        Horizon name → bars the run trains.
    kinds : iterable of str, optional
        The label kinds the run validates.

    Raises
    ------
    ConfigError
        Naming the offending key and value.
    """
    known = CLASSIFICATION_METRICS | REGRESSION_METRICS
    if gate.metric not in known:
        raise ConfigError(
            f"registry.gate.metric {gate.metric!r} is not a metric the gate reports; choose one "
            f"of {', '.join(sorted(known))}"
        )
    if gate.target is not None and gate.targets is None:
        allowed = CLASSIFICATION_METRICS if gate.target == "direction" else REGRESSION_METRICS
        if gate.metric not in allowed:
            raise ConfigError(
                f"registry.gate.metric {gate.metric!r} does not score target {gate.target!r}; "
                f"choose one of {', '.join(sorted(allowed))}"
            )
    if horizons is not None and kinds is not None:
        trained = [(k, b) for b in horizons.values() for k in kinds if k in SERVED_KINDS]
        resolve_targets(gate, dict(horizons), trained)


def resolve_targets(
    gate: GateSection, horizons: dict[str, int], trained: list[tuple[str, int]]
) -> list[tuple[str, int]]:
    """The gated (kind, bars) among ``trained``: those the gate names, or all.

    Raises
    ------
    ConfigError
        An entry names a target that was not trained (the entries and what was trained named).
    """
    requested = gate.requested
    if requested is None:
        return sorted(set(trained), key=lambda t: (t[1], SERVED_KINDS.index(t[0])))
    bad: list[str] = []
    chosen: list[tuple[str, int]] = []
    for entry in requested:
        kind, _, horizon = entry.partition("@")
        if kind not in SERVED_KINDS:
            bad.append(entry)
            continue
        if not horizon or horizon == "None":
            matches = [t for t in trained if t[0] == kind]
        elif horizon in horizons:
            matches = [(kind, horizons[horizon])] if (kind, horizons[horizon]) in trained else []
        elif horizon.isdigit():
            matches = [(kind, int(horizon))] if (kind, int(horizon)) in trained else []
        else:
            matches = []
        if not matches:
            bad.append(entry)
        chosen += [m for m in matches if m not in chosen]
    if bad:
        available = [
            f"{k}@{n} ({b} bars)"
            for n, b in horizons.items()
            for k in SERVED_KINDS
            if (k, b) in trained
        ]
        raise ConfigError(
            f"registry.gate.targets {', '.join(repr(b) for b in bad)} name no served target this "
            f"run validates; validated: {', '.join(available) or 'none'}"
        )
    return chosen


def evaluate_gate(candidate: Evidence, champion: Evidence | None, gate: GateSection) -> GateResult:
    """Judge what ``candidate`` serves against its run's baselines and ``champion``.

    Parameters
    ----------
    candidate, champion : Evidence
        Out-of-sample records; ``champion`` None when there is none yet.
    gate : GateSection
        Level, gated targets, coverage tolerance, the fewest common rows, margin.

    Returns
    -------
    GateResult
        Passed when every check passed; each check carries its numbers.

    Raises
    ------
    ConfigError
        The gate names a target the candidate did not validate, or its metric is unknown.
    """
    check_gate_config(gate)
    frame = candidate.predictions
    trained = [(k, b) for k, b in targets_in(frame) if f"{candidate.model}__{k}_{b}" in frame]
    targets = resolve_targets(gate, candidate.horizons, trained)
    if not targets:
        raise ConfigError(
            f"{candidate.label} holds no out-of-sample predictions of a served target for "
            f"model {candidate.model!r}"
        )
    checks: list[GateCheck] = []
    comparisons: list[Comparison] = []
    sources = {f"{k}_{b}": candidate.served(f"{k}_{b}") for k, b in targets}
    winners = []
    for kind, bars in targets:
        target_checks, target_comparisons, won = _against_baselines(candidate, gate, kind, bars)
        checks += target_checks
        comparisons += target_comparisons
        if won:
            winners.append(f"{kind}_{bars}")
    served_learned = [t for t, source in sources.items() if source == candidate.model]
    margin = f" by more than the margin {gate.margin:g}" if gate.margin else ""
    checks.append(
        GateCheck(
            "learned",
            bool(winners),
            f"a learned model serves and beats every baseline{margin} (one-sided p < "
            f"{gate.level:g}) on "
            + (
                ", ".join(winners)
                if winners
                else "no gated target"
                + ("" if served_learned else ": the baselines serve them all")
            ),
        )
    )
    checks += _coverage(candidate, targets, gate.coverage_tolerance)
    if champion is not None:
        champion_checks, champion_comparisons = _versus_champion(candidate, champion, gate, targets)
        checks += champion_checks
        comparisons += champion_comparisons
    return GateResult(all(c.passed for c in checks), checks, comparisons, sources)


def _column(evidence: Evidence, name: str, kind: str, bars: int) -> pd.Series:
    return evidence.predictions[f"{name}__{kind}_{bars}"]


def _against_baselines(
    candidate: Evidence, gate: GateSection, kind: str, bars: int
) -> tuple[list[GateCheck], list[Comparison], bool]:
    """Checks of one target: its served forecast is not significantly worse than any
    baseline; and whether the learned model serves it and beats them all."""
    frame, target = candidate.predictions, f"{kind}_{bars}"
    y = frame[f"target__{target}"]
    served = candidate.served(target)
    baselines = baselines_of(frame, kind, bars)
    model_vs = [
        compare(
            y,
            _column(candidate, candidate.model, kind, bars),
            _column(candidate, baseline, kind, bars),
            kind=kind,
            bars=bars,
            names=(candidate.model, baseline),
            min_rows=gate.min_rows,
            margin=gate.margin,
        )
        for baseline in baselines
    ]
    won = served == candidate.model and all(c.better(gate.level) for c in model_vs)
    served_vs = (
        model_vs
        if served == candidate.model
        else [
            compare(
                y,
                _column(candidate, served, kind, bars),
                _column(candidate, baseline, kind, bars),
                kind=kind,
                bars=bars,
                names=(served, baseline),
                min_rows=gate.min_rows,
            )
            for baseline in baselines
            if baseline != served
        ]
    )
    checks = []
    for comparison in served_vs:
        worse = comparison.worse(gate.level)
        checks.append(
            GateCheck(
                f"{target} vs {comparison.reference}",
                not worse,
                f"{target} served by {served} is "
                f"{'significantly worse than' if worse else 'not significantly worse than'} "
                f"{comparison.reference}: {comparison.describe()}",
            )
        )
    if served != candidate.model:
        why = "; ".join(c.describe() for c in model_vs if not c.better(gate.level))
        checks.append(
            GateCheck(
                f"{target} source",
                True,
                f"{target} is served by the baseline {served}: {candidate.model} does not beat "
                f"every baseline at {gate.level:g} ({why})",
            )
        )
    return checks, model_vs + (served_vs if served_vs is not model_vs else []), won


def _versus_champion(
    candidate: Evidence, champion: Evidence, gate: GateSection, targets: list[tuple[str, int]]
) -> tuple[list[GateCheck], list[Comparison]]:
    comparisons: list[Comparison] = []
    checks: list[GateCheck] = []
    who = f"the champion ({champion.label})"
    for kind, bars in targets:
        target = f"{kind}_{bars}"
        theirs_name = champion.served(target)
        theirs_column = f"{theirs_name}__{target}"
        if bars not in champion.horizons.values() or theirs_column not in champion.predictions:
            checks.append(
                GateCheck(
                    f"{target} vs champion",
                    False,
                    f"{who} has no {kind} predictions at {bars} bars to compare with",
                )
            )
            continue
        ours_name = candidate.served(target)
        comparison = compare(
            candidate.predictions[f"target__{target}"],
            _column(candidate, ours_name, kind, bars),
            champion.predictions[theirs_column],
            kind=kind,
            bars=bars,
            names=(f"{ours_name} (this version)", f"{theirs_name} ({champion.label})"),
            min_rows=gate.min_rows,
            margin=gate.margin,
        )
        comparisons.append(comparison)
        if comparison.result is None:
            checks.append(GateCheck(f"{target} vs champion", False, comparison.describe()))
            continue
        worse = comparison.worse(gate.level)
        checks.append(
            GateCheck(
                f"{target} vs champion",
                not worse,
                f"{target} {'is significantly worse than' if worse else 'is not significantly worse than'} "
                f"{who}: {comparison.describe()}",
            )
        )
    better = [c.target for c in comparisons if c.better(gate.level)]
    checks.append(
        GateCheck(
            "better than champion",
            bool(better),
            f"significantly better than {who} (one-sided p < {gate.level:g}) on "
            + (", ".join(better) if better else "no gated target"),
        )
    )
    return checks, comparisons


def _coverage(
    candidate: Evidence, targets: list[tuple[str, int]], tolerance: float
) -> list[GateCheck]:
    checks = []
    nominal = 1.0 - candidate.alpha
    frame = candidate.predictions
    for kind, bars in targets:
        if kind not in INTERVAL_KINDS:
            continue
        target = f"{kind}_{bars}"
        served = candidate.served(target)
        lo, hi = f"{served}__{target}__lo", f"{served}__{target}__hi"
        if lo not in frame or hi not in frame:
            continue
        rows = frame[[f"target__{target}", lo, hi]].dropna()
        coverage = interval_coverage(
            rows.iloc[:, 0].to_numpy(), rows[lo].to_numpy(), rows[hi].to_numpy()
        )["coverage"]
        passed = bool(np.isfinite(coverage) and abs(coverage - nominal) <= tolerance)
        checks.append(
            GateCheck(
                f"{target} coverage",
                passed,
                f"{target} interval coverage of {served} {coverage:.3f} is "
                f"{'within' if passed else 'outside'} {tolerance:g} of nominal {nominal:.2f}",
            )
        )
    return checks
