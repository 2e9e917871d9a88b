"""Drift as diagnosis: how far a recent window has left the training distribution, per column.

At training, :func:`reference_stats` keeps a quantile sketch of every feature and prediction
column (values at evenly spaced probabilities, with extra points in both tails, plus count,
NaN share, min, max, mean and std). Later, :func:`drift_report` scores a recent window against
it with three statistics:

- PSI over the reference's decile bins (right-closed, ties merged),
- the Kolmogorov–Smirnov distance between the window and the sketch's CDF (linear between
  quantiles; atoms, where quantiles tie, are kept as jumps and the window's values on them are
  spread by a seeded randomised probability-integral transform, so the test stays exact),
- Wasserstein-1 between the window and the sketch's quantile function, divided by the
  reference's interquartile range (its std, or 1, when that is zero).

Why not a fixed threshold (the familiar ``PSI > 0.1``): every statistic shrinks like a power of
the sample size under no drift, so a fixed cut flags most batches of identical data at 100 rows
and almost no real drift at 100,000 — or, for a large window, flags every feature. Here each
statistic gets a p-value under "same distribution" at the window's size. The reference is a
sample too, so the null uses the effective size ``n_eff = n m / (n + m)`` of a two-sample test
(``n`` window rows, ``m`` reference rows): KS refers to the exact one-sample distribution at
``n_eff``; PSI and Wasserstein to a seeded simulation, ``n_eff`` draws from the sketch's
quantile function, rescaled by their ``1 / n`` and ``1 / sqrt(n)`` laws when ``n_eff`` passes
``max_simulated_rows``. A column's p-value is the Bonferroni minimum of its three, and the
Benjamini–Hochberg step-up across columns decides ``drifted`` at the false-discovery rate
``alpha``.

Rows of a market series are not independent: a 50-bar moving-average feature barely moves from
one hour to the next, and a month of it holds a handful of independent values, not 720. Both
sizes are therefore effective ones, ``n / tau``, where ``tau = 1 + 2 sum_k rho_k`` is the
integrated autocorrelation time of the column's ranks (summed over lags until the first
non-positive autocorrelation, Geyer's initial positive sequence); on independent rows
``tau`` is about 1. It is an approximation (exact for mean-like statistics, close for the
others), so a flag is a diagnosis to look at, never a decision on its own. Measured on
identical synthetic data, each p-value rejects at about its level at 100 and at 100,000 rows,
except Wasserstein on count (Poisson) columns at 100,000 rows, which runs up to about twice it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from trademl.errors import DataValidationError

__all__ = ["ColumnSketch", "DriftReport", "ReferenceStats", "drift_report", "reference_stats"]

FloatArray = NDArray[np.float64]

#: Fewest finite values a window column needs before its drift means anything.
MIN_ROWS = 30
#: Extra sketch probabilities in each tail, where linear interpolation between percentiles errs.
_TAIL_PROBABILITIES = (1e-4, 3e-4, 1e-3, 3e-3)
#: Values holding at least this share of the reference rows are kept as exact atoms.
_ATOM_SHARE = 1e-3
_PSI_BINS = 10
#: Wasserstein skips this much probability in each tail.
_WASSERSTEIN_TRIM = 0.01
_PSI_FLOOR = 1e-4
_REPORT_COLUMNS = (
    "column",
    "n",
    "n_effective",
    "nan_share",
    "reference_nan_share",
    "psi",
    "psi_pvalue",
    "ks",
    "ks_pvalue",
    "wasserstein",
    "wasserstein_pvalue",
    "pvalue",
    "qvalue",
    "drifted",
)


@dataclass(frozen=True)
class ColumnSketch:
    """The quantile sketch of one reference column.

    Parameters
    ----------
    probabilities:
        Increasing probabilities from 0 to 1.
    values:
        The column's quantiles at ``probabilities`` (non-decreasing; the first is the minimum,
        the last the maximum).
    count:
        Finite values the sketch was built from.
    effective_count:
        ``count`` divided by the column's integrated autocorrelation time (the number of
        independent values it is worth).
    nan_share:
        Share of the column's rows that were NaN or infinite.
    mean, std:
        Mean and standard deviation of the finite values.
    """

    probabilities: tuple[float, ...]
    values: tuple[float, ...]
    count: int
    effective_count: float
    nan_share: float
    mean: float
    std: float

    @property
    def minimum(self) -> float:
        """The smallest reference value."""
        return self.values[0]

    @property
    def maximum(self) -> float:
        """The largest reference value."""
        return self.values[-1]

    def quantile(self, u: FloatArray) -> FloatArray:
        """The sketch's quantile function at probabilities ``u`` (linear between knots)."""
        knots = np.asarray(self.probabilities), np.asarray(self.values)
        return np.asarray(np.interp(u, *knots), dtype=np.float64)

    def cdf_bounds(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``F(x-)`` and ``F(x)`` of the sketch's distribution (they differ on atoms only)."""
        values = np.asarray(self.values)
        probabilities = np.asarray(self.probabilities)
        # Tied quantiles are an atom: F jumps from the first to the last probability at it.
        knots, first = np.unique(values, return_index=True)
        last = len(values) - 1 - np.unique(values[::-1], return_index=True)[1]
        below, at_or_above = probabilities[first], probabilities[last]
        index = np.searchsorted(knots, x, side="left")
        inside = np.clip(index, 1, len(knots) - 1) if len(knots) > 1 else np.zeros_like(index)
        lower_knot, upper_knot = knots[inside - 1], knots[inside]
        width = np.where(upper_knot > lower_knot, upper_knot - lower_knot, 1.0)
        linear = at_or_above[inside - 1] + (x - lower_knot) / width * (
            below[inside] - at_or_above[inside - 1]
        )
        exact = (index < len(knots)) & (knots[np.minimum(index, len(knots) - 1)] == x)
        on_knot = np.minimum(index, len(knots) - 1)
        left = np.where(exact, below[on_knot], linear)
        right = np.where(exact, at_or_above[on_knot], linear)
        left = np.where(x < knots[0], 0.0, np.where(x > knots[-1], 1.0, left))
        right = np.where(x < knots[0], 0.0, np.where(x > knots[-1], 1.0, right))
        return left, right

    def to_dict(self) -> dict[str, Any]:
        """The sketch as plain JSON types."""
        return {
            "probabilities": list(self.probabilities),
            "values": list(self.values),
            "count": self.count,
            "effective_count": self.effective_count,
            "nan_share": self.nan_share,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSketch:
        """The sketch :meth:`to_dict` wrote."""
        return cls(
            probabilities=tuple(float(p) for p in data["probabilities"]),
            values=tuple(float(v) for v in data["values"]),
            count=int(data["count"]),
            effective_count=float(data["effective_count"]),
            nan_share=float(data["nan_share"]),
            mean=float(data["mean"]),
            std=float(data["std"]),
        )


@dataclass(frozen=True)
class ReferenceStats:
    """Quantile sketches of the training distribution, one per column.

    Build it with :func:`reference_stats`; it pickles and round-trips through JSON with
    :meth:`to_dict` / :meth:`from_dict`.

    Parameters
    ----------
    columns:
        Column name to its :class:`ColumnSketch`, in the frame's order.
    """

    columns: Mapping[str, ColumnSketch] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The statistics as plain JSON types."""
        return {"columns": {name: sketch.to_dict() for name, sketch in self.columns.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceStats:
        """The statistics :meth:`to_dict` wrote."""
        return cls({name: ColumnSketch.from_dict(s) for name, s in data["columns"].items()})


def _probability_grid(quantiles: int) -> FloatArray:
    tails = np.array(_TAIL_PROBABILITIES)
    grid = np.concatenate([np.linspace(0.0, 1.0, quantiles + 1), tails, 1.0 - tails])
    return np.unique(np.round(grid, 12))


def _finite(series: pd.Series, name: str, role: str) -> tuple[FloatArray, float]:
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise DataValidationError(
            f"{role} column {name!r} has dtype {series.dtype}; expected a numeric column",
            rule="not_numeric",
        )
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    nan_share = float(1.0 - finite.mean()) if len(values) else 0.0
    return values[finite], nan_share


def _knots(values: FloatArray, probabilities: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Quantile knots of ``values``: the grid, plus both ends of every heavy atom.

    Percentiles alone place an atom's edges only to within a grid step (a 0/1 feature's
    ``P(0)`` to 1 %), which a KS test at 100,000 rows sees as drift; each value holding at
    least ``_ATOM_SHARE`` of the rows therefore gets its exact ``F(v-)`` and ``F(v)``.
    """
    grid_values = np.quantile(values, probabilities, method="inverted_cdf")
    distinct, counts = np.unique(values, return_counts=True)
    shares = counts / len(values)
    heavy = shares >= _ATOM_SHARE
    at_or_below = np.cumsum(shares)[heavy]
    atom_values = distinct[heavy]
    knot_probabilities = np.concatenate([probabilities, at_or_below - shares[heavy], at_or_below])
    knot_values = np.concatenate([grid_values, atom_values, atom_values])
    knot_probabilities = np.clip(knot_probabilities, 0.0, 1.0)
    order = np.lexsort((knot_values, knot_probabilities))
    knots = np.unique(np.column_stack([knot_probabilities[order], knot_values[order]]), axis=0)
    return knots[:, 0], knots[:, 1]


def _ranks(values: FloatArray) -> FloatArray:
    return np.asarray(stats.rankdata(values) / len(values), dtype=np.float64)


def _autocorrelation_time(values: FloatArray) -> float:
    """``1 + 2 sum_k rho_k`` over lags up to the first non-positive autocorrelation."""
    n = len(values)
    centred = values - values.mean()
    variance = float(centred @ centred)
    if n < 3 or variance <= 0:
        return 1.0
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size)
    autocovariance = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    rho = autocovariance[1 : n // 2] / variance
    negative = np.flatnonzero(rho <= 0)
    positive_run = rho[: negative[0]] if len(negative) else rho
    return max(1.0, 1.0 + 2.0 * float(positive_run.sum()))


def reference_stats(frame: pd.DataFrame, quantiles: int = 100) -> ReferenceStats:
    """Quantile sketches of every column of a training frame.

    Parameters
    ----------
    frame:
        Numeric columns (features and predictions) of the training rows.
    quantiles:
        Number of evenly spaced quantile intervals (``quantiles + 1`` values, plus a few in
        each tail); at least 10, since PSI bins on the deciles.

    Returns
    -------
    ReferenceStats
        One :class:`ColumnSketch` per column.

    Raises
    ------
    DataValidationError
        When the frame has no columns, a column is not numeric or has fewer than
        ``MIN_ROWS`` finite values.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> frame = pd.DataFrame({"x": np.arange(1000.0)})
    >>> sketch = reference_stats(frame).columns["x"]
    >>> sketch.count, sketch.minimum, sketch.maximum
    (1000, 0.0, 999.0)
    """
    if quantiles < _PSI_BINS or quantiles % _PSI_BINS:
        raise DataValidationError(
            f"quantiles={quantiles!r}; expected a multiple of {_PSI_BINS} (the PSI deciles)",
            rule="bad_quantiles",
        )
    if frame.shape[1] == 0:
        raise DataValidationError(
            "the reference frame has no columns; expected the feature and prediction columns",
            rule="no_columns",
        )
    probabilities = _probability_grid(quantiles)
    sketches: dict[str, ColumnSketch] = {}
    for name in frame.columns:
        values, nan_share = _finite(frame[name], str(name), "reference")
        if len(values) < MIN_ROWS:
            raise DataValidationError(
                f"reference column {name!r} has {len(values)} finite values; expected at "
                f"least {MIN_ROWS}",
                rule="too_few_rows",
            )
        knot_probabilities, knot_values = _knots(values, probabilities)
        sketches[str(name)] = ColumnSketch(
            probabilities=tuple(float(p) for p in knot_probabilities),
            values=tuple(float(v) for v in knot_values),
            count=len(values),
            effective_count=len(values) / _autocorrelation_time(_ranks(values)),
            nan_share=nan_share,
            mean=float(values.mean()),
            std=float(values.std()),
        )
    return ReferenceStats(sketches)


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift of a window against reference statistics, most drifted first.

    Parameters
    ----------
    table:
        One row per column: ``column``, window size ``n`` and its autocorrelation-adjusted
        ``n_effective``, ``nan_share`` and
        ``reference_nan_share``, the statistics ``psi``, ``ks``, ``wasserstein`` each with its
        p-value, the column's Bonferroni ``pvalue``, its Benjamini–Hochberg ``qvalue`` and the
        decision ``drifted`` (``qvalue <= alpha``), sorted by ``pvalue`` then ``ks``.
    alpha:
        The false-discovery rate the decisions control.
    """

    table: pd.DataFrame
    alpha: float

    @property
    def drifted(self) -> list[str]:
        """Names of the columns flagged as drifted, most drifted first."""
        return [str(c) for c in self.table.loc[self.table["drifted"], "column"]]

    @property
    def drifted_share(self) -> float:
        """Share of the columns flagged as drifted."""
        return float(self.table["drifted"].mean())

    def to_frame(self) -> pd.DataFrame:
        """A copy of the per-column table."""
        return self.table.copy()

    def __len__(self) -> int:
        return len(self.table)


def _psi(actual: FloatArray, expected: FloatArray) -> FloatArray:
    actual = np.maximum(actual, _PSI_FLOOR)
    expected = np.maximum(expected, _PSI_FLOOR)
    return np.asarray(np.sum((actual - expected) * np.log(actual / expected), axis=-1))


def _psi_bins(sketch: ColumnSketch) -> tuple[FloatArray, FloatArray]:
    """Interior decile edges (ties merged) and the reference share of each bin."""
    deciles = sketch.quantile(np.linspace(0.0, 1.0, _PSI_BINS + 1)[1:-1])
    edges = np.unique(deciles)
    _, cdf = sketch.cdf_bounds(edges)
    expected = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return edges, expected


def _bin_shares(values: FloatArray, edges: FloatArray) -> FloatArray:
    """Share of ``values`` (last axis) in the right-closed bins between ``edges``."""
    index = np.searchsorted(edges, values, side="left")
    bins = len(edges) + 1
    if values.ndim == 1:
        return np.asarray(np.bincount(index, minlength=bins) / values.shape[-1], dtype=np.float64)
    offsets = np.arange(values.shape[0])[:, None] * bins
    counts = np.bincount((index + offsets).ravel(), minlength=bins * values.shape[0])
    return np.asarray(counts.reshape(values.shape[0], bins) / values.shape[-1], dtype=np.float64)


def _wasserstein(sorted_values: FloatArray, sketch: ColumnSketch, scale: float) -> FloatArray:
    n = sorted_values.shape[-1]
    # Midpoint rule: the i-th order statistic against the quantile at (i - 1/2) / n, over the
    # central probabilities only: a sketch cannot pin down the extreme tails (a t(3) feature's
    # top 0.1 % spans more than its whole body), and PSI's end bins and KS watch their mass.
    midpoints = (np.arange(n) + 0.5) / n
    central = (midpoints >= _WASSERSTEIN_TRIM) & (midpoints <= 1.0 - _WASSERSTEIN_TRIM)
    target = sketch.quantile(midpoints[central])
    distance = np.abs(sorted_values[..., central] - target)
    return np.asarray(np.mean(distance, axis=-1) / scale)


def _scale(sketch: ColumnSketch) -> float:
    q25, q75 = sketch.quantile(np.array([0.25, 0.75]))
    for candidate in (float(q75 - q25), sketch.std):
        if candidate > 0 and np.isfinite(candidate):
            return candidate
    return 1.0


def _benjamini_hochberg(pvalues: FloatArray) -> FloatArray:
    """Benjamini–Hochberg adjusted p-values (q-values), in the input order."""
    m = len(pvalues)
    order = np.argsort(pvalues)
    ranked = pvalues[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    qvalues = np.empty(m)
    qvalues[order] = np.minimum(adjusted, 1.0)
    return qvalues


def _check_window(reference: ReferenceStats, recent: pd.DataFrame) -> list[Any]:
    if not reference.columns:
        raise DataValidationError(
            "the reference statistics have no columns; build them with reference_stats(frame) "
            "on the training features and predictions",
            rule="no_columns",
        )
    unknown = [str(c) for c in recent.columns if str(c) not in reference.columns]
    if unknown:
        raise DataValidationError(
            f"the recent frame has columns the reference lacks: {', '.join(map(repr, unknown))}; "
            f"the reference has {', '.join(map(repr, reference.columns))}",
            rule="unknown_columns",
        )
    if recent.shape[1] == 0:
        raise DataValidationError("the recent frame has no columns", rule="no_columns")
    if len(recent) < MIN_ROWS:
        raise DataValidationError(
            f"the recent window has {len(recent)} rows; expected at least {MIN_ROWS}",
            rule="too_few_rows",
        )
    return list(recent.columns)


def drift_report(
    reference: ReferenceStats,
    recent: pd.DataFrame,
    *,
    alpha: float = 0.05,
    simulations: int = 999,
    max_simulated_rows: int = 2000,
    random_state: int = 0,
) -> DriftReport:
    """Score each column of a recent window for drift against the reference statistics.

    Parameters
    ----------
    reference:
        Statistics of the training rows, from :func:`reference_stats`.
    recent:
        The window: any subset of the reference's columns.
    alpha:
        False-discovery rate of the Benjamini–Hochberg decision across columns.
    simulations:
        Draws of the null distribution of PSI and Wasserstein (p-values are no finer than
        ``1 / (simulations + 1)``).
    max_simulated_rows:
        Largest simulated sample; beyond it the statistics are rescaled by their rates.
    random_state:
        Seed of the simulation and of the randomised transform on atoms.

    Returns
    -------
    DriftReport
        The per-column table, most drifted first.

    Raises
    ------
    DataValidationError
        When the reference has no columns, the window has a column the reference lacks, a
        non-numeric column, or fewer than ``MIN_ROWS`` (finite) rows.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> train = pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000)})
    >>> window = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(1.0, 1.0, size=500)})
    >>> report = drift_report(reference_stats(train), window)
    >>> report.drifted
    ['b']
    >>> report.table["column"].tolist(), report.table["drifted"].tolist()
    (['b', 'a'], [True, False])
    """
    if not 0 < alpha < 1:
        raise DataValidationError(f"alpha={alpha!r}; expected 0 < alpha < 1", rule="bad_alpha")
    columns = _check_window(reference, recent)
    rng = np.random.default_rng(random_state)
    uniforms: dict[int, FloatArray] = {}  # sorted null draws, shared by columns of one size
    rows: list[dict[str, Any]] = []
    for label in columns:
        name = str(label)
        sketch = reference.columns[name]
        values, nan_share = _finite(recent[label], name, "recent")
        n = len(values)
        if n < MIN_ROWS:
            raise DataValidationError(
                f"recent column {name!r} has {n} finite values; expected at least {MIN_ROWS}",
                rule="too_few_rows",
            )
        n_window = n / _autocorrelation_time(_ranks(values))  # values keep their time order
        n_eff = n_window * sketch.effective_count / (n_window + sketch.effective_count)
        n_sim = max(2, min(round(n_eff), max_simulated_rows))
        if n_sim not in uniforms:
            uniforms[n_sim] = np.sort(rng.random((simulations, n_sim)), axis=1)
        null_draws = sketch.quantile(uniforms[n_sim])

        edges, expected = _psi_bins(sketch)
        psi = float(_psi(_bin_shares(values, edges), expected))
        null_psi = _psi(_bin_shares(null_draws, edges), expected) * (n_sim / n_eff)

        scale = _scale(sketch)
        wasserstein = float(_wasserstein(np.sort(values), sketch, scale))
        null_wasserstein = _wasserstein(null_draws, sketch, scale) * np.sqrt(n_sim / n_eff)

        left, right = sketch.cdf_bounds(values)
        pit = np.sort(left + rng.random(n) * (right - left))
        steps = np.arange(1, n + 1) / n
        ks = float(max(np.max(steps - pit), np.max(pit - (steps - 1.0 / n))))
        ks_pvalue = float(stats.kstwo.sf(ks, max(1, round(n_eff))))

        psi_pvalue = (1.0 + np.sum(null_psi >= psi)) / (simulations + 1.0)
        wasserstein_pvalue = (1.0 + np.sum(null_wasserstein >= wasserstein)) / (simulations + 1.0)
        rows.append(
            {
                "column": name,
                "n": n,
                "n_effective": n_window,
                "nan_share": nan_share,
                "reference_nan_share": sketch.nan_share,
                "psi": psi,
                "psi_pvalue": float(psi_pvalue),
                "ks": ks,
                "ks_pvalue": min(max(ks_pvalue, 0.0), 1.0),
                "wasserstein": wasserstein,
                "wasserstein_pvalue": float(wasserstein_pvalue),
                "pvalue": min(1.0, 3.0 * min(psi_pvalue, ks_pvalue, wasserstein_pvalue)),
            }
        )
    table = pd.DataFrame(rows)
    table["qvalue"] = _benjamini_hochberg(table["pvalue"].to_numpy(dtype=np.float64))
    table["drifted"] = table["qvalue"] <= alpha
    table = table.sort_values(["pvalue", "ks"], ascending=[True, False], kind="stable")
    return DriftReport(table=table.reset_index(drop=True)[list(_REPORT_COLUMNS)], alpha=alpha)
