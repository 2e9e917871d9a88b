"""Rolling coverage of prediction intervals along the out-of-sample rows.

Pooled coverage can sit at nominal while the intervals miss badly for months and over-cover
for the rest; a coverage that holds must hold window by window. :func:`rolling_coverage` gives
the share of covered rows over each trailing window of ``window`` out-of-sample rows, and
:func:`worst_window` the window farthest from nominal.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from trademl.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


def rolling_coverage(
    y_true: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike, window: int
) -> FloatArray:
    """Coverage over each trailing window of ``window`` rows (rows in time order).

    Rows where any of the three is NaN are dropped first. With fewer rows than ``window`` the
    one value is the coverage of all of them.

    Parameters
    ----------
    y_true, lower, upper : array-like
        Observed values and interval bounds, 1-D and of one length.
    window : int
        Rows per window, at least 1.

    Returns
    -------
    numpy.ndarray
        One value per full window (the window ending at each row from the ``window``-th on).

    Raises
    ------
    ConfigError
        ``window`` is not a positive integer, or the arrays differ in length or are not 1-D.

    Examples
    --------
    >>> rolling_coverage([1, 2, 3, 4], [0, 0, 0, 0], [9, 9, 2, 9], window=2).tolist()
    [1.0, 0.5, 0.5]
    """
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ConfigError(f"window must be an integer >= 1 (rows), got {window!r}")
    arrays = [np.asarray(a, dtype=np.float64) for a in (y_true, lower, upper)]
    if any(a.ndim != 1 for a in arrays) or len({len(a) for a in arrays}) > 1:
        raise ConfigError(
            f"y_true, lower and upper must be 1-D of one length, got shapes "
            f"{[a.shape for a in arrays]}"
        )
    y, lo, hi = arrays
    keep = ~(np.isnan(y) | np.isnan(lo) | np.isnan(hi))
    covered = ((lo[keep] <= y[keep]) & (y[keep] <= hi[keep])).astype(np.float64)
    if len(covered) == 0:
        return np.empty(0)
    size = min(int(window), len(covered))
    cumulative = np.concatenate([[0.0], np.cumsum(covered)])
    return np.asarray((cumulative[size:] - cumulative[:-size]) / size, dtype=np.float64)


def worst_window(coverage: npt.ArrayLike, nominal: float) -> float:
    """The rolling coverage value farthest from ``nominal`` (NaN when there is none).

    >>> worst_window([0.9, 0.84, 0.93], 0.9)
    0.84
    """
    values = np.asarray(coverage, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan
    return float(values[np.argmax(np.abs(values - nominal))])


__all__ = ["rolling_coverage", "worst_window"]
