"""Out-of-sample metrics of predictions, per fold and pooled.

Every function takes the true values and the predictions as 1-D array-likes of one length,
drops the rows where either is NaN (the key ``n`` reports how many rows were used) and returns
plain ``float`` values, NaN where a metric is undefined on the rows left (one class only, a
constant input, no rows at all).

Classification (``y_true`` in {0, 1}, ``p_up`` = P(y = 1)):

``accuracy``
    Share of rows where ``1[p_up >= threshold] == y_true``; ``accuracy_lo`` / ``accuracy_hi``
    bound it with the 95 % Wilson score interval (:func:`binomial_interval`), or, for labels
    more than one bar ahead (``horizon > 1``: consecutive rows overlap), with the circular
    block bootstrap of :mod:`trademl.validation.bootstrap`.
``balanced_accuracy``
    Mean over the classes present in ``y_true`` of the recall of that class.
``log_loss``
    ``-mean(y log p + (1 - y) log(1 - p))`` with ``p`` clipped to ``[1e-15, 1 - 1e-15]``.
``roc_auc``
    The Mann–Whitney statistic ``(R1 - n1 (n1 + 1) / 2) / (n1 n0)``, ``R1`` the sum of the
    average ranks of ``p_up`` over the positive rows; NaN when one class only.
``brier``
    ``mean((p - y)^2)``.

Regression:

``mae`` / ``rmse``
    ``mean(|e|)`` and ``sqrt(mean(e^2))`` with ``e = y_pred - y_true``.
``r2``
    ``1 - SSE / SST`` with ``SST`` taken about the mean of ``y_true`` *of the same sample*: an
    out-of-sample R² against the test mean, which the model could not have known. It is
    therefore flattering to a model that only guesses the level; pass ``reference_mean`` (the
    training mean) to also get ``r2_vs_train_mean = 1 - SSE / sum((y - reference_mean)^2)``,
    the honest "beats the naive forecast" score.
``directional_accuracy``
    Share of rows where ``sign(y_pred) == sign(y_true)``, rows where either is exactly zero
    excluded (``n_directional`` of them are used).
``ic`` / ``rank_ic``
    Pearson and Spearman correlations of ``y_pred`` with ``y_true``; NaN when either is
    constant or fewer than two rows remain.

Given the label ``horizon``, regression metrics add 95 % block-bootstrap intervals
``r2_lo``/``r2_hi`` and ``ic_lo``/``ic_hi``, and :func:`interval_coverage` adds
``coverage_lo``/``coverage_hi``: blocks of ``max(3 h, n^(1/3))`` consecutive rows keep the
overlap of the labels (and volatility clustering) inside each resampled block.

Per-fold rows are collected with :func:`fold_table` and aggregated with :func:`summarise`
(mean, standard deviation and count of finite values per group); pooled metrics, computed
once on the concatenated out-of-sample predictions of every fold, come from
:func:`pooled_metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from trademl.errors import ConfigError
from trademl.validation.arrays import float_vector
from trademl.validation.bootstrap import block_bootstrap_interval

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

#: Probabilities are clipped to ``[_EPS, 1 - _EPS]`` before taking logarithms.
_EPS = 1e-15


def _vector(name: str, values: ArrayLike) -> FloatArray:
    """Return ``values`` as a 1-D float64 array, or raise a :class:`ConfigError`."""
    return float_vector(name, values, scalar=True)


def _aligned(**named: ArrayLike) -> tuple[list[FloatArray], int]:
    """Convert the arrays, check that they share a length, drop rows with a NaN in any.

    Returns the filtered arrays (in the order given) and the number of rows kept.
    """
    arrays = {name: _vector(name, values) for name, values in named.items()}
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise ConfigError(f"the arrays must have the same length: {described}")
    keep = np.ones(next(iter(lengths.values())), dtype=bool)
    for array in arrays.values():
        keep &= ~np.isnan(array)
    kept = [array[keep] for array in arrays.values()]
    return kept, int(keep.sum())


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie in (0, 1), got {confidence!r}")


def binomial_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    With ``p = successes / n`` and ``z`` the ``(1 + confidence) / 2`` normal quantile::

        centre = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

    Parameters
    ----------
    successes:
        Number of successes, ``0 <= successes <= n``.
    n:
        Number of trials, ``n >= 0``.
    confidence:
        Coverage of the interval, in (0, 1).

    Returns
    -------
    tuple of float
        ``(centre - half, centre + half)``, inside [0, 1]; ``(nan, nan)`` when ``n == 0``.

    References
    ----------
    Wilson, E. B. (1927), "Probable inference, the law of succession, and statistical
    inference", Journal of the American Statistical Association.
    """
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise ConfigError(f"need 0 <= successes <= n, got successes={successes!r} and n={n!r}")
    if n == 0:
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _correlation(x: FloatArray, y: FloatArray) -> float:
    """Pearson correlation; NaN with fewer than two rows or a constant input."""
    if len(x) < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx <= 0.0 or syy <= 0.0:
        return math.nan
    return float(np.clip((dx @ dy) / math.sqrt(sxx * syy), -1.0, 1.0))


def classification_metrics(
    y_true: ArrayLike, p_up: ArrayLike, *, threshold: float = 0.5, horizon: int = 1
) -> dict[str, float]:
    """Metrics of predicted probabilities of the up class.

    The formulas are given in the module docstring.

    Parameters
    ----------
    y_true:
        Observed classes, 0 or 1 (NaN rows are dropped).
    p_up:
        Predicted P(y = 1), in [0, 1] (NaN rows are dropped).
    threshold:
        The predicted class is 1 where ``p_up >= threshold``.
    horizon:
        Label horizon in bars; above 1 the accuracy interval is a block bootstrap (seeded,
        deterministic) instead of Wilson's, which assumes independent rows.

    Returns
    -------
    dict of str to float
        ``n``, ``accuracy``, ``accuracy_lo``, ``accuracy_hi``, ``balanced_accuracy``,
        ``log_loss``, ``roc_auc`` and ``brier``.

    Raises
    ------
    ConfigError
        The arrays differ in length or are not 1-D, ``y_true`` holds a value other than 0 and
        1, ``p_up`` leaves [0, 1], or ``threshold`` leaves (0, 1).
    """
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must lie in (0, 1), got {threshold!r}")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ConfigError(f"horizon must be an integer >= 1 (bars), got {horizon!r}")
    (y, p), n = _aligned(y_true=y_true, p_up=p_up)
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ConfigError(
            f"y_true must hold only 0 and 1, got {y[bad][0]!r} ({int(bad.sum())} such values)"
        )
    if n and (p.min() < 0.0 or p.max() > 1.0):
        raise ConfigError(f"p_up must lie in [0, 1], got values from {p.min()!r} to {p.max()!r}")
    nan = math.nan
    if n == 0:
        keys = ("accuracy", "accuracy_lo", "accuracy_hi", "balanced_accuracy")
        return {"n": 0.0, **dict.fromkeys(keys, nan), "log_loss": nan, "roc_auc": nan, "brier": nan}

    positive = y == 1.0
    predicted = p >= threshold
    hits = predicted == positive
    correct = int(hits.sum())
    if horizon > 1:
        lo, hi = block_bootstrap_interval("mean", hits.astype(np.float64), horizon=horizon)
    else:
        lo, hi = binomial_interval(correct, n)

    recalls = [
        float((predicted[cls] == positive[cls]).mean())
        for cls in (positive, ~positive)
        if cls.any()
    ]
    clipped = np.clip(p, _EPS, 1.0 - _EPS)
    log_loss = -float(np.mean(np.where(positive, np.log(clipped), np.log1p(-clipped))))

    n1 = int(positive.sum())
    n0 = n - n1
    if n1 == 0 or n0 == 0:
        auc = nan
    else:
        ranks = stats.rankdata(p)
        auc = float((ranks[positive].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))

    return {
        "n": float(n),
        "accuracy": correct / n,
        "accuracy_lo": lo,
        "accuracy_hi": hi,
        "balanced_accuracy": float(np.mean(recalls)),
        "log_loss": log_loss,
        "roc_auc": auc,
        "brier": float(np.mean((p - y) ** 2)),
    }


def regression_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    reference_mean: float | None = None,
    horizon: int | None = None,
) -> dict[str, float]:
    """Metrics of point forecasts of a real-valued target.

    The formulas are given in the module docstring. ``r2`` is an *out-of-sample R² against
    the test mean*: its baseline is the mean of ``y_true`` over the very rows scored.

    Parameters
    ----------
    y_true:
        Observed values (NaN rows are dropped).
    y_pred:
        Forecasts (NaN rows are dropped).
    reference_mean:
        A baseline level known before the test period (typically the training-fold mean of
        the target); when given, ``r2_vs_train_mean`` is added.
    horizon:
        Label horizon in bars; when given, the 95 % block-bootstrap intervals ``r2_lo``,
        ``r2_hi``, ``ic_lo`` and ``ic_hi`` are added.

    Returns
    -------
    dict of str to float
        ``n``, ``mae``, ``rmse``, ``r2``, ``directional_accuracy``, ``n_directional``, ``ic``,
        ``rank_ic``, with ``reference_mean`` ``r2_vs_train_mean``, and with ``horizon`` the
        intervals.

    Raises
    ------
    ConfigError
        The arrays differ in length or are not 1-D, or ``reference_mean`` is not finite.
    """
    if reference_mean is not None and not math.isfinite(reference_mean):
        raise ConfigError(f"reference_mean must be finite, got {reference_mean!r}")
    (y, f), n = _aligned(y_true=y_true, y_pred=y_pred)
    nan = math.nan
    result: dict[str, float] = {"n": float(n)}
    if n == 0:
        result.update(
            mae=nan,
            rmse=nan,
            r2=nan,
            directional_accuracy=nan,
            n_directional=0.0,
            ic=nan,
            rank_ic=nan,
        )
        if reference_mean is not None:
            result["r2_vs_train_mean"] = nan
        if horizon is not None:
            result.update(r2_lo=nan, r2_hi=nan, ic_lo=nan, ic_hi=nan)
        return result

    error = f - y
    sse = float(error @ error)
    centred = y - y.mean()
    sst = float(centred @ centred)
    signed = (y != 0.0) & (f != 0.0)
    n_directional = int(signed.sum())
    result.update(
        mae=float(np.mean(np.abs(error))),
        rmse=math.sqrt(sse / n),
        r2=1.0 - sse / sst if sst > 0.0 else nan,
        directional_accuracy=(
            float(np.mean(np.sign(y[signed]) == np.sign(f[signed]))) if n_directional else nan
        ),
        n_directional=float(n_directional),
        ic=_correlation(y, f),
        rank_ic=_correlation(stats.rankdata(y), stats.rankdata(f)) if n >= 2 else nan,
    )
    if reference_mean is not None:
        shifted = y - reference_mean
        sst_reference = float(shifted @ shifted)
        result["r2_vs_train_mean"] = 1.0 - sse / sst_reference if sst_reference > 0.0 else nan
    if horizon is not None:
        result["r2_lo"], result["r2_hi"] = block_bootstrap_interval("r2", y, f, horizon=horizon)
        result["ic_lo"], result["ic_hi"] = block_bootstrap_interval("ic", y, f, horizon=horizon)
    return result


def interval_coverage(
    y_true: ArrayLike, lower: ArrayLike, upper: ArrayLike, *, horizon: int | None = None
) -> dict[str, float]:
    """Empirical coverage and mean width of prediction intervals.

    ``coverage = mean(lower <= y_true <= upper)`` (bounds included) and
    ``mean_width = mean(upper - lower)``, over the rows where none of the three is NaN.

    Parameters
    ----------
    y_true:
        Observed values.
    lower, upper:
        Interval bounds, ``lower <= upper`` on every row used.
    horizon:
        Label horizon in bars; when given, the 95 % block-bootstrap interval of the coverage
        (``coverage_lo``, ``coverage_hi``) is added.

    Returns
    -------
    dict of str to float
        ``coverage``, ``mean_width`` and ``n`` (NaN metrics when ``n == 0``), and with
        ``horizon`` the coverage interval.

    Raises
    ------
    ConfigError
        The arrays differ in length or are not 1-D, or a lower bound exceeds its upper bound
        (crossed quantiles must be repaired before scoring).
    """
    (y, lo, hi), n = _aligned(y_true=y_true, lower=lower, upper=upper)
    crossed = lo > hi
    if crossed.any():
        first = int(np.argmax(crossed))
        raise ConfigError(
            f"lower exceeds upper on {int(crossed.sum())} rows, first at usable row {first}: "
            f"{lo[first]!r} > {hi[first]!r}"
        )
    result = {"coverage": math.nan, "mean_width": math.nan, "n": float(n)}
    covered = ((lo <= y) & (y <= hi)).astype(np.float64)
    if n:
        result.update(coverage=float(covered.mean()), mean_width=float(np.mean(hi - lo)))
    if horizon is not None:
        result["coverage_lo"], result["coverage_hi"] = block_bootstrap_interval(
            "mean", covered, horizon=horizon
        )
    return result


def pooled_metrics(
    y_true_parts: Sequence[ArrayLike],
    pred_parts: Sequence[ArrayLike],
    *,
    task: Literal["classification", "regression"],
    **options: Any,
) -> dict[str, float]:
    """Metrics of the concatenated out-of-sample predictions of several folds.

    Pooled metrics weigh every test row once, whereas the mean of per-fold metrics weighs
    every fold once; report both.

    Parameters
    ----------
    y_true_parts, pred_parts:
        The per-fold true values and predictions, in the same order and pairwise of equal
        length.
    task:
        ``"classification"`` (predictions are P(y = 1)) or ``"regression"``.
    **options:
        Passed on: ``threshold`` for :func:`classification_metrics`, ``reference_mean`` for
        :func:`regression_metrics`.

    Returns
    -------
    dict of str to float
        What :func:`classification_metrics` or :func:`regression_metrics` returns.

    Raises
    ------
    ConfigError
        ``task`` is unknown, the two sequences differ in length or are empty, or a pair of
        parts differs in length.
    """
    if len(y_true_parts) != len(pred_parts):
        raise ConfigError(
            f"y_true_parts has {len(y_true_parts)} parts but pred_parts has {len(pred_parts)}"
        )
    if not y_true_parts:
        raise ConfigError("pooled_metrics needs at least one part, got none")
    ys, ps = [], []
    for i, (y_part, p_part) in enumerate(zip(y_true_parts, pred_parts, strict=True)):
        y_vector, p_vector = (
            _vector(f"y_true_parts[{i}]", y_part),
            _vector(f"pred_parts[{i}]", p_part),
        )
        if len(y_vector) != len(p_vector):
            raise ConfigError(
                f"part {i}: y_true has {len(y_vector)} rows but the predictions have "
                f"{len(p_vector)}"
            )
        ys.append(y_vector)
        ps.append(p_vector)
    y, p = np.concatenate(ys), np.concatenate(ps)
    if task == "classification":
        return classification_metrics(y, p, **options)
    if task == "regression":
        return regression_metrics(y, p, **options)
    raise ConfigError(f"task must be 'classification' or 'regression', got {task!r}")


def fold_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Collect per-fold metric rows into one frame.

    Parameters
    ----------
    records:
        One mapping per (model, target, horizon, ..., fold): the grouping keys and the metrics
        of that fold, e.g. ``{"model": "ridge", "target": "fwd_1", "fold": 0, **metrics}``.

    Returns
    -------
    pandas.DataFrame
        One row per record, columns in order of first appearance; a metric missing from a
        record is NaN.

    Raises
    ------
    ConfigError
        ``records`` is empty or holds something that is not a mapping.
    """
    if not records:
        raise ConfigError("fold_table needs at least one record, got none")
    columns: dict[str, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ConfigError(f"record {i} must be a mapping, got {type(record).__name__}")
        columns.update(dict.fromkeys(record))
    return pd.DataFrame([dict(record) for record in records], columns=list(columns))


def summarise(
    table: pd.DataFrame,
    by: Sequence[str] = ("model",),
    *,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean, standard deviation and count of finite values of every metric per group.

    NaN and infinite values are skipped explicitly: for each metric, ``{metric}_mean`` is the
    mean of the finite fold values, ``{metric}_std`` their sample standard deviation
    (``ddof=1``; NaN with fewer than two) and ``{metric}_count`` how many there were. A
    ``folds`` column counts the rows of each group.

    Parameters
    ----------
    table:
        Per-fold rows, as built by :func:`fold_table`.
    by:
        The grouping columns, e.g. ``("model", "target", "horizon")``.
    metrics:
        The metric columns; default every numeric column not in ``by`` and not ``"fold"``.

    Returns
    -------
    pandas.DataFrame
        One row per group (sorted by the group keys), the ``by`` columns first.

    Raises
    ------
    ConfigError
        ``by`` is empty or names a missing column, a metric column is missing or not numeric.
    """
    by = list(by)
    if not by:
        raise ConfigError("summarise needs at least one grouping column in by, got none")
    missing = [column for column in by if column not in table.columns]
    if missing:
        raise ConfigError(f"grouping columns {missing} not in the table {list(table.columns)}")
    if metrics is None:
        chosen = [
            str(column)
            for column in table.columns
            if column not in by
            and column != "fold"
            and pd.api.types.is_numeric_dtype(table[column])
            and not pd.api.types.is_bool_dtype(table[column])
        ]
    else:
        chosen = list(metrics)
        absent = [column for column in chosen if column not in table.columns]
        if absent:
            raise ConfigError(f"metric columns {absent} not in the table {list(table.columns)}")
        wrong = [column for column in chosen if not pd.api.types.is_numeric_dtype(table[column])]
        if wrong:
            raise ConfigError(f"metric columns {wrong} are not numeric")

    rows: list[dict[str, Any]] = []
    for key, group in table.groupby(by, sort=True, dropna=False):
        keys = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, keys, strict=True))
        row["folds"] = len(group)
        for metric in chosen:
            values = group[metric].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            count = len(finite)
            row[f"{metric}_mean"] = float(finite.mean()) if count else math.nan
            row[f"{metric}_std"] = float(finite.std(ddof=1)) if count >= 2 else math.nan
            row[f"{metric}_count"] = count
        rows.append(row)
    return pd.DataFrame(rows)
