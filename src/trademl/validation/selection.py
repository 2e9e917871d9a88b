"""Which forecast serves each target: the primary model where it beats every baseline, out of
sample and significantly; the best baseline elsewhere.

A run keeps its out-of-sample predictions in one wide frame (``predictions.parquet``):
``target__{kind}_{bars}``, ``{model}__{kind}_{bars}`` and ``naive_*__{kind}_{bars}``. For each
target the pipeline serves (direction, max high and min low at each horizon) the primary
model's per-row loss is compared with each baseline's in a one-sided Diebold–Mariano test
(:func:`~trademl.validation.significance.diebold_mariano`, lag at least the horizon). The
model serves the target only if every test says its loss is lower at ``level``; otherwise the
baseline with the lowest mean loss serves it. A model that is better by a margin the data
cannot tell from noise is not worth serving over a forecast with one or a few parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trademl.errors import ConfigError
from trademl.models.naive import BASELINE_PREFIX
from trademl.validation.significance import LossComparison, diebold_mariano, loss_for, row_losses

SERVED_KINDS = ("direction", "max_high", "min_low")


@dataclass(frozen=True)
class Comparison:
    """One forecast's loss against a reference forecast's on one target.

    Attributes
    ----------
    target : str
        ``{kind}_{bars}``.
    model, reference : str
        The two forecasts (``model`` is ``a`` of the test: negative differences favour it).
    loss : str
        The per-row loss compared (``log`` or ``squared``).
    result : LossComparison or None
        The Diebold–Mariano result; None when there were too few rows (``note`` says so).
    note : str
        Why there is no result.
    """

    target: str
    model: str
    reference: str
    loss: str
    result: LossComparison | None
    note: str = ""

    def better(self, level: float) -> bool:
        """Whether ``model``'s loss is significantly lower than ``reference``'s."""
        return self.result is not None and self.result.better(level)

    def worse(self, level: float) -> bool:
        """Whether ``model``'s loss is significantly higher than ``reference``'s."""
        return self.result is not None and self.result.worse(level)

    def describe(self) -> str:
        """One line with the numbers: difference, interval, p-value, rows."""
        if self.result is None:
            return f"{self.target}: {self.model} vs {self.reference}: {self.note}"
        r = self.result
        return (
            f"{self.target}: {self.model} vs {self.reference}: mean {self.loss} loss difference "
            f"{r.mean_difference:+.3g} [{r.low:+.3g}, {r.high:+.3g}], one-sided p {r.p_value:.3g}, "
            f"{r.rows:,} rows (HAC lag {r.lag})"
        )


@dataclass(frozen=True)
class TargetChoice:
    """What serves one target, and the comparisons that decided it."""

    kind: str
    bars: int
    model: str
    source: str
    comparisons: tuple[Comparison, ...]

    @property
    def target(self) -> str:
        """``{kind}_{bars}``."""
        return f"{self.kind}_{self.bars}"

    @property
    def learned(self) -> bool:
        """Whether the learned model serves the target (else a baseline does)."""
        return self.source == self.model


def targets_in(predictions: pd.DataFrame) -> list[tuple[str, int]]:
    """The served targets (kind, bars) that ``predictions`` holds out-of-sample values of."""
    found = []
    for column in predictions.columns:
        name = str(column)
        if not name.startswith("target__"):
            continue
        kind, _, bars = name.removeprefix("target__").rpartition("_")
        if kind in SERVED_KINDS and bars.isdigit():
            found.append((kind, int(bars)))
    return found


def baselines_of(predictions: pd.DataFrame, kind: str, bars: int) -> list[str]:
    """The baseline forecasts of a target held by ``predictions``, in column order."""
    suffix = f"__{kind}_{bars}"
    # On the name, not the column: a primary model named "naive" is no baseline.
    stems = [str(c).removesuffix(suffix) for c in predictions.columns if str(c).endswith(suffix)]
    return [stem for stem in stems if stem.startswith(BASELINE_PREFIX)]


def compare(
    y: pd.Series,
    forecast: pd.Series,
    reference: pd.Series,
    *,
    kind: str,
    bars: int,
    names: tuple[str, str],
    min_rows: int,
    margin: float = 0.0,
    rows_per_bar: int = 1,
) -> Comparison:
    """Diebold–Mariano comparison of two forecasts of one target on the rows both made.

    Parameters
    ----------
    y, forecast, reference : pandas.Series
        The target and the two forecasts, aligned on one time index (NaN rows are dropped).
    kind, bars : str, int
        The target (its loss and the test's horizon).
    names : tuple of str
        How the record names ``forecast`` and ``reference``.
    min_rows : int
        Fewer common rows give no result, with a note naming the count.
    margin : float
        Added to ``forecast``'s loss: it must win by more than this.
    rows_per_bar : int
        Rows of one bar (a panel's symbols): the HAC lag covers ``bars × rows_per_bar`` rows,
        as losses overlap in time across the symbols of a bar too.

    Returns
    -------
    Comparison
        The test's numbers (``forecast`` is ``a``).
    """
    loss = loss_for(kind)
    frame = pd.concat({"y": y, "a": forecast, "b": reference}, axis=1, join="inner").dropna()
    target = f"{kind}_{bars}"
    model, other = names
    if len(frame) < min_rows:
        note = f"only {len(frame):,} out-of-sample rows in common; the gate needs {min_rows:,}"
        return Comparison(target, model, other, loss, None, note)
    observed = frame["y"].to_numpy()
    try:
        result = diebold_mariano(
            row_losses(observed, frame["a"].to_numpy(), loss) + margin,
            row_losses(observed, frame["b"].to_numpy(), loss),
            bars * rows_per_bar,
        )
    except ConfigError as error:
        return Comparison(target, model, other, loss, None, str(error))
    return Comparison(target, model, other, loss, result)


def mean_loss(predictions: pd.DataFrame, name: str, kind: str, bars: int) -> float:
    """Mean out-of-sample loss of forecast ``name`` on a target (NaN when it made none)."""
    suffix = f"{kind}_{bars}"
    rows = predictions[[f"target__{suffix}", f"{name}__{suffix}"]].dropna()
    if rows.empty:
        return float("nan")
    return float(np.mean(row_losses(rows.iloc[:, 0], rows.iloc[:, 1], loss_for(kind))))


def choose_sources(
    predictions: pd.DataFrame,
    model: str,
    *,
    level: float,
    min_rows: int,
    margin: float = 0.0,
    servable: Callable[[str, int, str], bool] | None = None,
    rows_per_bar: int = 1,
) -> dict[str, TargetChoice]:
    """Per served target, the forecast to serve and the comparisons behind the choice.

    Parameters
    ----------
    predictions : pandas.DataFrame
        A run's out-of-sample predictions (wide, time-indexed).
    model : str
        The primary model's column name.
    level : float
        Significance level of the one-sided tests.
    min_rows : int
        Fewest common rows for a test; with fewer the model does not win.
    margin : float
        A loss improvement the model must show beyond zero.
    servable : callable, optional
        ``servable(kind, bars, baseline)``: whether the served pipeline can compute that
        baseline (all by default); only those may serve.
    rows_per_bar : int
        Rows of one bar (a panel's symbols, rows sorted by time); see :func:`compare`.

    Returns
    -------
    dict of str to TargetChoice
        Keyed ``{kind}_{bars}``; targets without a model column are left out.
    """
    choices: dict[str, TargetChoice] = {}
    for kind, bars in targets_in(predictions):
        suffix = f"{kind}_{bars}"
        if f"{model}__{suffix}" not in predictions:
            continue
        y = predictions[f"target__{suffix}"]
        baselines = baselines_of(predictions, kind, bars)
        comparisons = tuple(
            compare(
                y,
                predictions[f"{model}__{suffix}"],
                predictions[f"{baseline}__{suffix}"],
                kind=kind,
                bars=bars,
                names=(model, baseline),
                min_rows=min_rows,
                margin=margin,
                rows_per_bar=rows_per_bar,
            )
            for baseline in baselines
        )
        source = model
        if not all(c.better(level) for c in comparisons):
            usable = [b for b in baselines if servable is None or servable(kind, bars, b)]
            losses = {b: mean_loss(predictions, b, kind, bars) for b in usable}
            finite = {b: v for b, v in losses.items() if np.isfinite(v)}
            source = min(finite, key=finite.__getitem__) if finite else model
        choices[suffix] = TargetChoice(kind, bars, model, source, comparisons)
    return choices
