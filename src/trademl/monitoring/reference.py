"""Reference statistics of a training frame: one quantile sketch per column.

A sketch keeps the values at evenly spaced probabilities, a few more in both tails, and both
ends of every value that holds at least ``_ATOM_SHARE`` of the rows (the atoms of count and 0/1
features), so that :mod:`trademl.monitoring.drift` can rebuild the column's CDF and quantile
function; plus count, effective count (after autocorrelation), NaN share, mean and std.
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

__all__ = ["MIN_ROWS", "ColumnSketch", "ReferenceStats", "reference_stats"]

FloatArray = NDArray[np.float64]

#: Fewest finite values a column needs before its distribution means anything.
MIN_ROWS = 30
#: Extra sketch probabilities in each tail, where linear interpolation between percentiles errs.
_TAIL_PROBABILITIES = (1e-4, 3e-4, 1e-3, 3e-3)
#: Values holding at least this share of the reference rows are kept as exact atoms.
_ATOM_SHARE = 1e-3
#: PSI bins on the deciles, so the evenly spaced grid must include them.
PSI_BINS = 10


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


def finite_values(series: pd.Series, name: str, role: str) -> tuple[FloatArray, float]:
    """The finite values of a numeric column, in order, and the share of rows that were not."""
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


def ranks(values: FloatArray) -> FloatArray:
    """Ranks scaled into (0, 1], ties averaged."""
    return np.asarray(stats.rankdata(values) / len(values), dtype=np.float64)


def autocorrelation_time(values: FloatArray) -> float:
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
    if quantiles < PSI_BINS or quantiles % PSI_BINS:
        raise DataValidationError(
            f"quantiles={quantiles!r}; expected a multiple of {PSI_BINS} (the PSI deciles)",
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
        values, nan_share = finite_values(frame[name], str(name), "reference")
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
            effective_count=len(values) / autocorrelation_time(ranks(values)),
            nan_share=nan_share,
            mean=float(values.mean()),
            std=float(values.std()),
        )
    return ReferenceStats(sketches)
