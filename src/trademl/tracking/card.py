"""The model card: what a registered model is, what it was trained on, how it was validated
and how good it was out of sample, beside the naive baselines, in Markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from trademl.config import RunConfig
from trademl.tracking.gate import GateResult
from trademl.validation.selection import TargetChoice
from trademl.validation.summary import markdown_tables

LIMITATIONS = [
    "Out-of-sample numbers come from one purged walk-forward over one span of one market; "
    "they estimate, with noise, how the model did there, not how it will do.",
    "The model predicts price extremes and direction, not profits: costs, fills and sizing "
    "live in the backtest, whose report says what a strategy on these predictions earned.",
    "Regime changes (volatility, liquidity, market structure) after the training span can "
    "degrade it without warning; monitor drift and retrain.",
    "Interval coverage is marginal (over all rows), not conditional on any market state.",
]


def model_card(
    cfg: RunConfig,
    summary: pd.DataFrame,
    meta: dict[str, Any],
    *,
    name: str | None = None,
    version: int | None = None,
    run_id: str | None = None,
    feature_columns: list[str] | None = None,
    gate_reason: str | None = None,
    choices: Mapping[str, TargetChoice] | None = None,
    gate: GateResult | None = None,
) -> str:
    """A Markdown model card of a training run.

    Parameters
    ----------
    cfg : RunConfig
        The run config.
    summary : pandas.DataFrame
        The pooled out-of-sample summary (``summary.csv``).
    meta : dict
        ``run.json``: data hash, first and last bar, bars, feature-set fingerprint.
    name, version, run_id : optional
        The registry name and version and the MLflow run, when known.
    feature_columns : list of str or None
        The model's input columns.
    gate_reason : str or None
        The promotion gate's verdict at registration.
    choices : mapping of str to TargetChoice, optional
        What serves each target and the Diebold–Mariano tests that chose it.
    gate : GateResult or None
        The gate's result at registration, whose comparisons are tabulated.
    """
    title = f"{name} v{version}" if name and version else name or cfg.data.label
    # A panel model names its symbols wherever a single model names its one.
    what = ", ".join(cfg.data.members) if cfg.data.panel else cfg.data.label
    nominal = 1 - cfg.uncertainty.alpha
    lines = [
        f"# Model card: {title}",
        "",
        "## Model",
        f"- Predicts, per horizon, P(up), confidence, and the future max high and min low "
        f"(log ratios and prices) of {what} {cfg.data.timeframe} candles"
        + (" (one model pooled over the panel's rows)." if cfg.data.panel else "."),
        f"- Primary model: `{cfg.models[0].kind}` {dict(cfg.models[0].params)}",
        f"- Uncertainty: {cfg.uncertainty.intervals} intervals at {nominal:.0%} nominal coverage, "
        f"{cfg.uncertainty.calibration} calibration of P(up).",
        f"- MLflow run: `{run_id}`" if run_id else "- MLflow run: not tracked",
        "",
        "## Data",
        f"- {what} {cfg.data.timeframe}, {meta.get('first_bar')} → "
        f"{meta.get('last_bar')} ({int(meta.get('bars', 0)):,} bars)",
        f"- Data hash: `{meta.get('data_hash')}`",
        "",
        "## Features",
        f"- Feature set `{cfg.features}` (fingerprint `{meta.get('feature_set_fingerprint')}`)"
        + (f", {len(feature_columns)} columns" if feature_columns else ""),
    ]
    if feature_columns:
        shown = ", ".join(f"`{c}`" for c in feature_columns[:40])
        lines.append(f"- Columns: {shown}" + (" …" if len(feature_columns) > 40 else ""))
    lines += [
        "",
        "## Labels",
        f"- Kinds: {', '.join(cfg.labels.kinds)}; horizons: "
        f"{', '.join(str(h) for h in cfg.labels.horizons)}; direction dead zone "
        f"{cfg.labels.dead_zone:g}.",
        "- Labels at bar t look forward over bars t+1 … t+h only.",
        "",
        "## Validation",
        f"- `{cfg.validation.kind}` {dict(cfg.validation.params)}, training rows whose label "
        "window overlaps a test row purged, an embargo after each test block.",
        "- Every number below is out of sample, pooled over the test blocks.",
        "",
        "## Out-of-sample metrics (naive baselines beside the model)",
    ]
    lines += ["", *markdown_tables(summary, heading="###")]
    coverage = summary.dropna(subset=["coverage"]) if "coverage" in summary else summary.iloc[0:0]
    lines += ["## Interval coverage", ""]
    if coverage.empty:
        lines.append("- No intervals were fitted.")
    else:
        for _, row in coverage.iterrows():
            lines.append(
                f"- {row['model']} {row['target']} {row['horizon']}: {row['coverage']:.3f} "
                f"(nominal {nominal:.2f})"
            )
    if choices:
        lines += ["", *served_section(choices)]
    if gate_reason:
        lines += ["", "## Promotion gate at registration", "", f"- {gate_reason}"]
    if gate is not None and gate.comparisons:
        lines += ["", *gate.table()]
    lines += ["", "## Limitations", ""] + [f"- {item}" for item in LIMITATIONS]
    return "\n".join(lines) + "\n"


def served_section(choices: Mapping[str, TargetChoice]) -> list[str]:
    """Markdown lines: what serves each target, the targets a baseline serves, and the
    Diebold–Mariano tests of the learned model against each baseline."""
    baseline_served = [c.target for c in choices.values() if not c.learned]
    lines = [
        "## Served forecasts",
        "",
        "Each target is served by the learned model only where its out-of-sample loss is lower "
        "than every baseline's in a one-sided Diebold–Mariano test (Newey–West variance, lag at "
        "least the horizon); elsewhere by the baseline with the lowest loss.",
        "",
        "- Served by a baseline: "
        + (
            ", ".join(f"{t} ({choices[t].source})" for t in baseline_served)
            if baseline_served
            else "none"
        ),
        "",
        "| target | served by | compared | loss | mean difference | 95% interval | one-sided p "
        "| rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for choice in choices.values():
        for c in choice.comparisons:
            if c.result is None:
                numbers = f"{c.note} | - | - | -"
            else:
                r = c.result
                numbers = (
                    f"{r.mean_difference:+.4g} | [{r.low:+.4g}, {r.high:+.4g}] | "
                    f"{r.p_value:.4f} | {r.rows:,}"
                )
            lines.append(
                f"| {choice.target} | {choice.source} | {c.model} vs {c.reference} | {c.loss} | "
                f"{numbers} |"
            )
    return lines
