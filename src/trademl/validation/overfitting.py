"""How much of a backtest's performance is selection luck.

Sharpe ratios here are *per period* (per bar) unless ``periods_per_year`` annualises them, and
every formula below expects the per-period value, with ``n_obs`` the number of periods.

Probabilistic Sharpe ratio (Bailey & López de Prado, "The Sharpe Ratio Efficient Frontier")
    ``PSR(SR*) = Φ((SR - SR*) sqrt(T - 1) / sqrt(1 - γ3 SR + (γ4 - 1) / 4 SR²))``, the
    probability that the true Sharpe ratio exceeds ``SR*`` given an estimate ``SR`` from ``T``
    returns of skewness ``γ3`` and *raw* (non-excess) kurtosis ``γ4`` (3 for a normal law).
Expected maximum Sharpe ratio (the "False Strategy" theorem)
    ``E[max SR_n] ≈ sqrt(V) ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))`` for ``N``
    independent trials whose Sharpe estimates have variance ``V`` and true value zero, ``γ``
    the Euler–Mascheroni constant and ``e`` Euler's number.
Deflated Sharpe ratio (Bailey & López de Prado, "The Deflated Sharpe Ratio")
    ``DSR = PSR(SR0)`` with ``SR0`` the expected maximum above: the probability that the
    selected strategy's true Sharpe ratio is positive once the number of trials is accounted
    for.
Probability of backtest overfitting (Bailey, Borwein, López de Prado & Zhu, "The Probability
of Backtest Overfitting")
    Combinatorially symmetric cross-validation (CSCV) of a ``T × N`` matrix of per-period
    returns of ``N`` configurations: see :func:`probability_of_backtest_overfitting`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from trademl.errors import ConfigError
from trademl.validation.arrays import float_vector
from trademl.validation.splitters import Splitter

FloatArray = npt.NDArray[np.float64]
#: A function of a ``T' × N`` block of returns giving one score per column (higher is better).
PerformanceMetric = Callable[[FloatArray], npt.ArrayLike]

#: The Euler–Mascheroni constant γ.
EULER_GAMMA = 0.5772156649015329

#: Default cap on the number of CSCV combinations: C(16, 8), every split of the default S = 16.
DEFAULT_MAX_COMBINATIONS = 12_870


def _returns_vector(returns: npt.ArrayLike) -> FloatArray:
    """Return ``returns`` as a 1-D float64 array without its NaN rows."""
    array = float_vector("returns", returns)
    return array[~np.isnan(array)]


def sharpe_ratio(returns: npt.ArrayLike, periods_per_year: float | None = None) -> float:
    """Sharpe ratio ``mean / std`` (sample standard deviation, ``ddof=1``) of returns.

    No risk-free rate is subtracted: pass excess returns if one applies.

    Parameters
    ----------
    returns:
        Per-period returns (NaN rows are dropped).
    periods_per_year:
        When given, the per-period ratio is annualised by ``sqrt(periods_per_year)``.

    Returns
    -------
    float
        The Sharpe ratio; NaN with fewer than two returns or constant returns.

    Raises
    ------
    ConfigError
        ``returns`` is not 1-D, or ``periods_per_year`` is not positive.
    """
    if periods_per_year is not None and not periods_per_year > 0:
        raise ConfigError(f"periods_per_year must be positive, got {periods_per_year!r}")
    values = _returns_vector(returns)
    if len(values) < 2 or float(np.ptp(values)) == 0.0:
        return math.nan
    std = float(values.std(ddof=1))
    if not std > 0.0:
        return math.nan
    ratio = float(values.mean()) / std
    return ratio * math.sqrt(periods_per_year) if periods_per_year is not None else ratio


def probabilistic_sharpe_ratio(
    sr: float,
    sr_benchmark: float,
    n_obs: int,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """Probability that the true Sharpe ratio exceeds ``sr_benchmark``.

    ``PSR = Φ((sr - sr_benchmark) sqrt(n_obs - 1) / sqrt(1 - skew sr + (kurtosis - 1) / 4 sr²))``
    (Bailey & López de Prado, "The Sharpe Ratio Efficient Frontier").

    Parameters
    ----------
    sr:
        The observed *per-period* Sharpe ratio (not annualised).
    sr_benchmark:
        The per-period Sharpe ratio to beat.
    n_obs:
        Number of returns the estimate was computed from, at least 2.
    skew:
        Skewness of the returns (0 for a normal law).
    kurtosis:
        *Raw* (non-excess, Pearson) kurtosis of the returns: 3 for a normal law. Pass
        ``scipy.stats.kurtosis(x, fisher=False)``, not the default excess kurtosis.

    Returns
    -------
    float
        A probability in [0, 1].

    Raises
    ------
    ConfigError
        ``n_obs < 2``, an argument is not finite, ``kurtosis < 1`` or the variance term
        ``1 - skew sr + (kurtosis - 1) / 4 sr²`` is not positive.
    """
    for name, value in (
        ("sr", sr),
        ("sr_benchmark", sr_benchmark),
        ("skew", skew),
        ("kurtosis", kurtosis),
    ):
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be finite, got {value!r}")
    if n_obs < 2:
        raise ConfigError(f"n_obs must be at least 2, got {n_obs!r}")
    if kurtosis < 1.0:
        raise ConfigError(
            f"kurtosis is the raw (non-excess) kurtosis, at least 1, got {kurtosis!r}"
        )
    variance = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not variance > 0.0:
        raise ConfigError(
            f"1 - skew*sr + (kurtosis-1)/4*sr^2 must be positive, got {variance!r} "
            f"(sr={sr!r}, skew={skew!r}, kurtosis={kurtosis!r})"
        )
    z = (sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum of ``n_trials`` independent Sharpe estimates of true value zero.

    ``sqrt(V) ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))``, ``γ`` the Euler–Mascheroni
    constant (Bailey & López de Prado, "The Deflated Sharpe Ratio"; the approximation of the
    expected maximum of ``N`` normal draws). One trial gives 0.

    Parameters
    ----------
    n_trials:
        Number of independent configurations tried, at least 1.
    sharpe_variance:
        Variance ``V`` of their (per-period) Sharpe estimates, at least 0.

    Returns
    -------
    float
        The expected maximum, on the scale of the Sharpe ratios whose variance was given.

    Raises
    ------
    ConfigError
        ``n_trials < 1`` or ``sharpe_variance`` is negative or not finite.
    """
    if n_trials < 1:
        raise ConfigError(f"n_trials must be at least 1, got {n_trials!r}")
    if not (math.isfinite(sharpe_variance) and sharpe_variance >= 0.0):
        raise ConfigError(f"sharpe_variance must be finite and >= 0, got {sharpe_variance!r}")
    if n_trials == 1:
        return 0.0
    first = float(stats.norm.ppf(1.0 - 1.0 / n_trials))
    second = float(stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e)))
    return math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * first + EULER_GAMMA * second)


def deflated_sharpe_ratio(
    observed_sr: float,
    n_obs: int,
    n_trials: int,
    trials_sr_variance: float,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """Deflated Sharpe ratio: the PSR against the expected maximum Sharpe of the trials.

    ``DSR = PSR(SR0)`` with ``SR0 = expected_max_sharpe(n_trials, trials_sr_variance)``
    (Bailey & López de Prado, "The Deflated Sharpe Ratio").

    Parameters
    ----------
    observed_sr:
        Per-period Sharpe ratio of the selected configuration.
    n_obs:
        Number of returns behind ``observed_sr``.
    n_trials:
        Number of (effectively independent) configurations tried.
    trials_sr_variance:
        Variance of the per-period Sharpe ratios across those trials.
    skew:
        Skewness of the selected configuration's returns.
    kurtosis:
        Their *raw* (non-excess) kurtosis, 3 for a normal law.

    Returns
    -------
    float
        A probability in [0, 1].

    Raises
    ------
    ConfigError
        As :func:`probabilistic_sharpe_ratio` and :func:`expected_max_sharpe`.
    """
    benchmark = expected_max_sharpe(n_trials, trials_sr_variance)
    return probabilistic_sharpe_ratio(observed_sr, benchmark, n_obs, skew, kurtosis)


def deflated_sharpe_ratio_from_returns(
    returns: npt.ArrayLike, *, n_trials: int, trials_sr_variance: float
) -> float:
    """Deflated Sharpe ratio of a return series, its moments estimated from the series.

    The per-period Sharpe ratio is :func:`sharpe_ratio`, the skewness and the raw kurtosis are
    the sample moments (``scipy.stats.skew`` and ``scipy.stats.kurtosis(fisher=False)``, biased
    estimators).

    Parameters
    ----------
    returns:
        Per-period returns of the selected configuration (NaN rows are dropped).
    n_trials:
        Number of configurations tried.
    trials_sr_variance:
        Variance of the *per-period* Sharpe ratios across the trials.

    Returns
    -------
    float
        A probability in [0, 1].

    Raises
    ------
    ConfigError
        Fewer than two returns, constant returns, or as :func:`deflated_sharpe_ratio`.
    """
    values = _returns_vector(returns)
    if len(values) < 2:
        raise ConfigError(f"returns must hold at least 2 non-NaN values, got {len(values)}")
    sr = sharpe_ratio(values)
    if math.isnan(sr):
        raise ConfigError("returns are constant: the Sharpe ratio is undefined")
    skew = float(stats.skew(values))
    kurtosis = float(stats.kurtosis(values, fisher=True)) + 3.0
    return deflated_sharpe_ratio(sr, len(values), n_trials, trials_sr_variance, skew, kurtosis)


@dataclass(frozen=True)
class PBOResult:
    """Outcome of combinatorially symmetric cross-validation.

    Attributes
    ----------
    pbo:
        Probability of backtest overfitting: the share of combinations whose logit is <= 0,
        i.e. where the in-sample best configuration ranks in the lower half out of sample.
    logits:
        ``λ_c = log(ω_c / (1 - ω_c))`` per combination, ``ω_c`` the out-of-sample rank of the
        in-sample best configuration divided by ``N + 1``.
    is_performance, oos_performance:
        The metric of the in-sample best configuration in and out of sample, per combination.
    degradation_slope, degradation_intercept:
        OLS fit ``oos = intercept + slope * is`` over the combinations (NaN when the in-sample
        values are constant); a negative slope is the usual sign of overfitting.
    probability_of_loss:
        Share of combinations where the selected configuration's out-of-sample metric is < 0
        (a NaN metric does not count as a loss).
    n_partitions:
        ``S``, the number of row blocks.
    n_combinations:
        Number of combinations evaluated (``len(logits)``).
    sampled:
        True when ``C(S, S/2)`` exceeded the cap and the combinations were drawn at random.
    """

    pbo: float
    logits: FloatArray
    is_performance: FloatArray
    oos_performance: FloatArray
    degradation_slope: float
    degradation_intercept: float
    probability_of_loss: float
    n_partitions: int
    n_combinations: int
    sampled: bool


def _combinations(
    n_partitions: int, max_combinations: int, seed: int
) -> tuple[npt.NDArray[np.bool_], bool]:
    """Boolean ``C × S`` matrix: row c marks the blocks of combination c's in-sample half."""
    half = n_partitions // 2
    total = math.comb(n_partitions, half)
    if total <= max_combinations:
        chosen = list(itertools.combinations(range(n_partitions), half))
        sampled = False
    else:
        rng = np.random.default_rng(seed)
        seen: set[tuple[int, ...]] = set()
        chosen = []
        while len(chosen) < max_combinations:
            draw = tuple(sorted(int(i) for i in rng.choice(n_partitions, half, replace=False)))
            if draw not in seen:
                seen.add(draw)
                chosen.append(draw)
        sampled = True
    mask = np.zeros((len(chosen), n_partitions), dtype=bool)
    for row, blocks in enumerate(chosen):
        mask[row, list(blocks)] = True
    return mask, sampled


def _sharpe_from_moments(
    sums: FloatArray, squares: FloatArray, counts: FloatArray, shift: FloatArray, scale: FloatArray
) -> FloatArray:
    """Column Sharpe ratios from sums and sums of squares of shifted returns.

    ``sums`` and ``squares`` are ``C × N`` sums of ``x - shift`` and ``(x - shift)²`` over the
    rows of each combination, ``counts`` the ``C`` row counts. A variance below the rounding
    noise of the moments (``64 eps scale²``, ``scale`` the column's largest ``|x - shift|``)
    means a numerically constant column: its ratio is NaN.
    """
    n = counts[:, None]
    mean_shifted = sums / n
    variance = (squares - sums * mean_shifted) / (n - 1.0)
    floor = 64.0 * np.finfo(np.float64).eps * scale[None, :] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (mean_shifted + shift[None, :]) / np.sqrt(variance)
    ratio[~(variance > floor)] = np.nan
    return np.asarray(ratio, dtype=np.float64)


def _metric_rows(metric: PerformanceMetric, block: FloatArray, n_configs: int) -> FloatArray:
    scores = np.asarray(metric(block), dtype=np.float64)
    if scores.shape != (n_configs,):
        raise ConfigError(
            f"metric must return one score per configuration, shape ({n_configs},), "
            f"got shape {scores.shape}"
        )
    return scores


def _pbo_from_scores(
    scores_in: FloatArray, scores_out: FloatArray, n_partitions: int, sampled: bool
) -> PBOResult:
    """PBO and its companions from ``C × N`` in- and out-of-sample scores per split."""
    n_configs = scores_in.shape[1]
    usable = ~np.all(np.isnan(scores_in), axis=1)
    if not usable.any():
        raise ConfigError("the in-sample metric is NaN for every configuration of every split")
    scores_in, scores_out = scores_in[usable], scores_out[usable]
    best = np.argmax(np.where(np.isnan(scores_in), -np.inf, scores_in), axis=1)
    picked = np.arange(len(best))
    is_performance = scores_in[picked, best]
    oos_performance = scores_out[picked, best]
    ranks = stats.rankdata(np.where(np.isnan(scores_out), -np.inf, scores_out), axis=1)
    omega = ranks[picked, best] / (n_configs + 1.0)
    logits = np.log(omega / (1.0 - omega))

    finite = np.isfinite(is_performance) & np.isfinite(oos_performance)
    x, y = is_performance[finite], oos_performance[finite]
    if len(x) >= 2 and float(np.ptp(x)) > 0.0:
        slope, intercept = np.polyfit(x, y, 1)
        slope_value, intercept_value = float(slope), float(intercept)
    else:
        slope_value = intercept_value = math.nan

    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=np.asarray(logits, dtype=np.float64),
        is_performance=np.asarray(is_performance, dtype=np.float64),
        oos_performance=np.asarray(oos_performance, dtype=np.float64),
        degradation_slope=slope_value,
        degradation_intercept=intercept_value,
        probability_of_loss=float(np.mean(oos_performance < 0.0)),
        n_partitions=n_partitions,
        n_combinations=len(logits),
        sampled=sampled,
    )


def probability_of_backtest_overfitting(
    performance: FloatArray | pd.DataFrame,
    n_partitions: int = 16,
    metric: PerformanceMetric | None = None,
    *,
    max_combinations: int = DEFAULT_MAX_COMBINATIONS,
    seed: int = 0,
) -> PBOResult:
    """Probability of backtest overfitting by combinatorially symmetric cross-validation.

    Following Bailey, Borwein, López de Prado & Zhu ("The Probability of Backtest
    Overfitting"): the ``T`` rows of the ``T × N`` matrix of per-period returns of ``N``
    configurations are cut into ``S`` contiguous blocks of (nearly) equal size. For each
    combination ``c`` of ``S/2`` blocks, the rows of those blocks form the in-sample set and the
    others the out-of-sample set; the configuration ``n*`` with the best in-sample metric is
    selected, ``ω_c`` is its out-of-sample rank (1 = worst, ties averaged) divided by
    ``N + 1``, and ``λ_c = log(ω_c / (1 - ω_c))``. ``PBO`` is the share of ``λ_c <= 0``.

    A NaN metric (e.g. the Sharpe ratio of a constant column) is never selected in sample and
    ranks below every number out of sample; a combination where every in-sample metric is NaN
    is dropped.

    There are ``C(S, S/2)`` combinations; when that exceeds ``max_combinations``, that many
    distinct combinations are drawn uniformly at random, without replacement, with
    ``numpy.random.default_rng(seed)`` (``PBOResult.sampled`` is then True). The default cap is
    ``C(16, 8) = 12870``, so the default ``S = 16`` evaluates every combination.

    Parameters
    ----------
    performance:
        ``T × N`` per-period returns (rows in time order, one column per configuration), every
        value finite.
    n_partitions:
        ``S``, even, at least 2 and at most ``T / 2`` (so that each block holds two rows).
    metric:
        Function of a ``T' × N`` block of rows returning ``N`` scores, higher is better. The
        default is the per-period Sharpe ratio of each column (``ddof=1``), computed from
        per-block moments, which is much faster than an arbitrary callable.
    max_combinations:
        Cap on the number of combinations evaluated, at least 1.
    seed:
        Seed of the generator that samples combinations beyond the cap.

    Returns
    -------
    PBOResult
        PBO, the logits, the selected configuration's in- and out-of-sample metric per
        combination, the degradation fit and the probability of an out-of-sample loss.

    Raises
    ------
    ConfigError
        ``performance`` is not a 2-D matrix of at least two columns, holds a non-finite
        value, ``n_partitions`` is odd, below 2 or above ``T / 2``, ``max_combinations < 1``,
        every combination was dropped, or ``metric`` returns the wrong shape.
    """
    try:
        matrix = np.asarray(performance, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"performance must be numeric: {exc}") from exc
    if matrix.ndim != 2:
        raise ConfigError(f"performance must be a 2-D T x N matrix, got shape {matrix.shape}")
    n_rows, n_configs = matrix.shape
    if n_configs < 2:
        raise ConfigError(f"performance needs at least 2 configurations (columns), got {n_configs}")
    bad = ~np.isfinite(matrix)
    if bad.any():
        raise ConfigError(
            f"performance must be finite, got {int(bad.sum())} NaN or infinite values"
        )
    if n_partitions < 2 or n_partitions % 2:
        raise ConfigError(f"n_partitions must be even and at least 2, got {n_partitions!r}")
    if 2 * n_partitions > n_rows:
        raise ConfigError(
            f"n_partitions={n_partitions} needs at least {2 * n_partitions} rows "
            f"(two per block), got {n_rows}"
        )
    if max_combinations < 1:
        raise ConfigError(f"max_combinations must be at least 1, got {max_combinations!r}")

    mask, sampled = _combinations(n_partitions, max_combinations, seed)
    blocks = np.array_split(np.arange(n_rows), n_partitions)

    if metric is None:
        shift = matrix.mean(axis=0)
        centred = matrix - shift
        scale = np.abs(centred).max(axis=0)
        block_sums = np.stack([centred[rows].sum(axis=0) for rows in blocks])
        block_squares = np.stack([(centred[rows] ** 2).sum(axis=0) for rows in blocks])
        block_counts = np.array([len(rows) for rows in blocks], dtype=np.float64)
        weights_in = mask.astype(np.float64)
        weights_out = 1.0 - weights_in
        scores_in = _sharpe_from_moments(
            weights_in @ block_sums,
            weights_in @ block_squares,
            weights_in @ block_counts,
            shift,
            scale,
        )
        scores_out = _sharpe_from_moments(
            weights_out @ block_sums,
            weights_out @ block_squares,
            weights_out @ block_counts,
            shift,
            scale,
        )
    else:
        scores_in = np.empty((len(mask), n_configs))
        scores_out = np.empty((len(mask), n_configs))
        for c, chosen in enumerate(mask):
            rows_in = np.concatenate([blocks[b] for b in np.flatnonzero(chosen)])
            rows_out = np.concatenate([blocks[b] for b in np.flatnonzero(~chosen)])
            scores_in[c] = _metric_rows(metric, matrix[rows_in], n_configs)
            scores_out[c] = _metric_rows(metric, matrix[rows_out], n_configs)

    return _pbo_from_scores(scores_in, scores_out, n_partitions, sampled)


def pbo_cpcv(performance: FloatArray | pd.DataFrame, splitter: Splitter) -> PBOResult:
    """Probability of backtest overfitting with CPCV splits: purged, embargoed halves.

    Like :func:`probability_of_backtest_overfitting`, but the in-sample / out-of-sample
    partitions are the (train, test) splits of ``splitter`` — typically
    :class:`~trademl.validation.splitters.CombinatorialPurgedCV` with ``n_test_groups =
    n_groups / 2`` and purge/embargo of the strategy's holding horizon. Rows whose returns
    straddle a test block (a trade open across the boundary) are then dropped from the
    in-sample side, so selection never sees returns that overlap the periods it is judged on.
    The metric is the per-period Sharpe ratio of each configuration.

    Parameters
    ----------
    performance:
        ``T × N`` per-period returns, finite, at least two configurations.
    splitter:
        Any :class:`~trademl.validation.splitters.Splitter`; each split's train rows are the
        in-sample set and its test rows the out-of-sample set.

    Returns
    -------
    PBOResult
        As :func:`probability_of_backtest_overfitting`; ``n_partitions`` is the number of
        splits.

    Raises
    ------
    ConfigError
        A matrix that is not 2-D, finite, with two or more columns, or a splitter that cannot
        split ``T`` rows.

    Examples
    --------
    >>> from trademl.validation.splitters import CombinatorialPurgedCV
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(0, 0.01, (2000, 20))
    >>> cpcv = CombinatorialPurgedCV(n_groups=8, n_test_groups=4, horizon_bars=5)
    >>> 0.2 < pbo_cpcv(noise, cpcv).pbo < 0.8
    True
    """
    try:
        matrix = np.asarray(performance, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"performance must be numeric: {exc}") from exc
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        raise ConfigError(
            f"performance must be a T x N matrix with N >= 2 configurations, got {matrix.shape}"
        )
    if not np.isfinite(matrix).all():
        raise ConfigError("performance must be finite (NaN or infinite values found)")
    splits = list(splitter.split(matrix))

    def sharpe(rows: npt.NDArray[np.intp]) -> FloatArray:
        block = matrix[rows]
        sd = block.std(axis=0, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = block.mean(axis=0) / sd
        ratio[~(sd > 0.0)] = np.nan
        return np.asarray(ratio, dtype=np.float64)

    scores_in = np.stack([sharpe(train) for train, _ in splits])
    scores_out = np.stack([sharpe(test) for _, test in splits])
    return _pbo_from_scores(scores_in, scores_out, len(splits), False)
