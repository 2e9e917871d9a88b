"""Sharpe ratio statistics and the probability of backtest overfitting (CSCV)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trademl.errors import ConfigError
from trademl.validation.overfitting import (
    EULER_GAMMA,
    PBOResult,
    deflated_sharpe_ratio,
    deflated_sharpe_ratio_from_returns,
    expected_max_sharpe,
    pbo_cpcv,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_ratio,
)
from trademl.validation.splitters import CombinatorialPurgedCV


def test_sharpe_ratio_per_period_and_annualised() -> None:
    returns = np.array([0.01, -0.02, 0.03, 0.005, np.nan])
    clean = returns[:4]
    expected = clean.mean() / clean.std(ddof=1)
    assert sharpe_ratio(returns) == pytest.approx(expected)
    assert sharpe_ratio(returns, periods_per_year=252) == pytest.approx(expected * math.sqrt(252))
    assert math.isnan(sharpe_ratio([0.01, 0.01, 0.01]))
    assert math.isnan(sharpe_ratio([0.01]))
    with pytest.raises(ConfigError, match=r"periods_per_year must be positive"):
        sharpe_ratio(clean, periods_per_year=0)
    with pytest.raises(ConfigError, match=r"1-D"):
        sharpe_ratio(np.ones((3, 2)))


def test_psr_matches_the_published_formula() -> None:
    sr, benchmark, n, skew, kurt = 0.1, 0.02, 500, -0.8, 6.0
    z = (sr - benchmark) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert probabilistic_sharpe_ratio(sr, benchmark, n, skew, kurt) == pytest.approx(
        stats.norm.cdf(z)
    )
    # Normal returns: the variance term reduces to 1 + sr^2 / 2.
    z_normal = 0.1 * math.sqrt(99) / math.sqrt(1 + 0.1**2 / 2)
    assert probabilistic_sharpe_ratio(0.1, 0.0, 100) == pytest.approx(stats.norm.cdf(z_normal))
    assert probabilistic_sharpe_ratio(0.05, 0.05, 200) == pytest.approx(0.5)


def test_expected_max_sharpe_formula_and_monte_carlo() -> None:
    n, variance = 50, 0.04
    expected = math.sqrt(variance) * (
        (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n)
        + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * math.e))
    )
    assert expected_max_sharpe(n, variance) == pytest.approx(expected)
    assert expected_max_sharpe(1, variance) == 0.0
    assert expected_max_sharpe(n, 0.0) == 0.0
    # The approximation is within a few percent of the simulated mean maximum.
    draws = np.random.default_rng(7).normal(scale=math.sqrt(variance), size=(20_000, n))
    assert expected_max_sharpe(n, variance) == pytest.approx(draws.max(axis=1).mean(), rel=0.03)


def test_dsr_published_numerical_example() -> None:
    # Bailey & López de Prado, "The Deflated Sharpe Ratio" (2014), numerical example:
    # annualised SR 2.5 over 5 years of daily returns (T = 1250), N = 100 trials whose annualised
    # Sharpe ratios have variance 1/2, skewness -3, kurtosis 10 -> SR0 = 0.1132, DSR = 0.9004.
    sr_daily = 2.5 / math.sqrt(250)
    variance_daily = 0.5 / 250
    assert expected_max_sharpe(100, variance_daily) == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_ratio(sr_daily, 1250, 100, variance_daily, skew=-3.0, kurtosis=10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_dsr_equals_psr_against_expected_maximum() -> None:
    sr0 = math.sqrt(0.001) * (
        (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / 20)
        + EULER_GAMMA * stats.norm.ppf(1 - 1 / (20 * math.e))
    )
    z = (0.12 - sr0) * math.sqrt(999) / math.sqrt(1 - 0.5 * 0.12 + (4.5 - 1) / 4 * 0.12**2)
    dsr = deflated_sharpe_ratio(0.12, 1000, 20, 0.001, skew=0.5, kurtosis=4.5)
    assert dsr == pytest.approx(stats.norm.cdf(z))
    # One trial: no deflation, the DSR is the PSR against zero.
    assert deflated_sharpe_ratio(0.12, 1000, 1, 0.001) == pytest.approx(
        probabilistic_sharpe_ratio(0.12, 0.0, 1000)
    )


def test_dsr_from_returns_uses_sample_moments() -> None:
    returns = np.random.default_rng(3).standard_t(df=5, size=800) * 0.01 + 0.001
    sr = returns.mean() / returns.std(ddof=1)
    skew = stats.skew(returns)
    kurt = stats.kurtosis(returns, fisher=False)
    expected = deflated_sharpe_ratio(sr, 800, 10, 0.002, skew=skew, kurtosis=kurt)
    got = deflated_sharpe_ratio_from_returns(returns, n_trials=10, trials_sr_variance=0.002)
    assert got == pytest.approx(expected)
    with pytest.raises(ConfigError, match=r"constant"):
        deflated_sharpe_ratio_from_returns([0.1, 0.1, 0.1], n_trials=2, trials_sr_variance=0.1)
    with pytest.raises(ConfigError, match=r"at least 2 non-NaN values, got 1"):
        deflated_sharpe_ratio_from_returns([0.1, np.nan], n_trials=2, trials_sr_variance=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_obs": 1}, r"n_obs must be at least 2, got 1"),
        ({"kurtosis": 0.5}, r"raw \(non-excess\) kurtosis"),
        ({"skew": math.inf}, r"skew must be finite"),
        ({"sr": 1.0, "skew": 5.0}, r"must be positive"),
    ],
)
def test_psr_validation(kwargs: dict[str, float], match: str) -> None:
    arguments: dict[str, float] = {"sr": 0.1, "sr_benchmark": 0.0, "n_obs": 100}
    arguments.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        probabilistic_sharpe_ratio(**arguments)  # type: ignore[arg-type]


def test_expected_max_sharpe_validation() -> None:
    with pytest.raises(ConfigError, match=r"n_trials must be at least 1, got 0"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(ConfigError, match=r"sharpe_variance must be finite and >= 0"):
        expected_max_sharpe(5, -0.1)


def test_pbo_of_pure_noise_is_about_one_half() -> None:
    values = []
    for seed in range(30):
        noise = np.random.default_rng(seed).normal(size=(480, 10))
        values.append(probability_of_backtest_overfitting(noise, n_partitions=10).pbo)
    assert np.mean(values) == pytest.approx(0.5, abs=0.1)


def test_pbo_of_a_real_edge_is_near_zero() -> None:
    rng = np.random.default_rng(11)
    returns = rng.normal(size=(800, 20))
    returns[:, 4] += 0.5  # a real edge, present in every block
    result = probability_of_backtest_overfitting(pd.DataFrame(returns), n_partitions=16)
    assert isinstance(result, PBOResult)
    assert result.pbo < 0.05
    assert result.probability_of_loss == 0.0
    assert result.n_combinations == math.comb(16, 8) == len(result.logits)
    assert not result.sampled
    assert np.all(result.oos_performance > 0)


def test_pbo_custom_metric_matches_fast_default() -> None:
    returns = np.random.default_rng(5).normal(size=(200, 6))

    def sharpe_columns(block: np.ndarray) -> np.ndarray:
        return np.asarray(block.mean(axis=0) / block.std(axis=0, ddof=1))

    fast = probability_of_backtest_overfitting(returns, n_partitions=8)
    slow = probability_of_backtest_overfitting(returns, n_partitions=8, metric=sharpe_columns)
    assert fast.pbo == slow.pbo
    np.testing.assert_allclose(fast.logits, slow.logits)
    np.testing.assert_allclose(fast.is_performance, slow.is_performance)
    np.testing.assert_allclose(fast.oos_performance, slow.oos_performance)
    assert fast.degradation_slope == pytest.approx(slow.degradation_slope)


def test_pbo_hand_checked_logits() -> None:
    # Two blocks of two rows: combination {0} selects the config best on rows 0-1.
    returns = np.array([[1.0, 0.0, 0.5], [2.0, 1.0, 0.6], [0.0, 3.0, 1.0], [0.1, 4.0, 1.2]])
    result = probability_of_backtest_overfitting(
        returns, n_partitions=2, metric=lambda b: b.mean(0)
    )
    # IS {0}: means (1.5, 0.5, 0.55) -> config 0, OOS means (0.05, 3.5, 1.1) -> rank 1 of 3.
    # IS {1}: means (0.05, 3.5, 1.1) -> config 1, OOS means (1.5, 0.5, 0.55) -> rank 1 of 3.
    np.testing.assert_allclose(result.logits, [math.log(0.25 / 0.75)] * 2)
    assert result.pbo == 1.0
    np.testing.assert_allclose(result.is_performance, [1.5, 3.5])
    np.testing.assert_allclose(result.oos_performance, [0.05, 0.5])
    assert result.degradation_slope == pytest.approx((0.5 - 0.05) / (3.5 - 1.5))
    assert result.probability_of_loss == 0.0


def test_pbo_samples_combinations_beyond_the_cap_reproducibly() -> None:
    returns = np.random.default_rng(2).normal(size=(400, 5))
    first = probability_of_backtest_overfitting(returns, 20, max_combinations=300, seed=4)
    again = probability_of_backtest_overfitting(returns, 20, max_combinations=300, seed=4)
    assert first.sampled and first.n_combinations == 300
    np.testing.assert_array_equal(first.logits, again.logits)


@pytest.mark.parametrize(
    ("matrix", "kwargs", "match"),
    [
        (np.zeros(50), {}, r"2-D T x N matrix, got shape \(50,\)"),
        (np.zeros((50, 1)), {}, r"at least 2 configurations"),
        (np.full((50, 3), np.nan), {}, r"150 NaN or infinite"),
        (np.zeros((50, 3)), {"n_partitions": 5}, r"even and at least 2, got 5"),
        (np.zeros((20, 3)), {"n_partitions": 16}, r"needs at least 32 rows .* got 20"),
        (np.zeros((50, 3)), {"n_partitions": 4, "max_combinations": 0}, r"max_combinations"),
        (np.zeros((50, 3)), {"n_partitions": 4}, r"NaN for every configuration"),
        (
            np.ones((50, 3)),
            {"n_partitions": 4, "metric": lambda b: b.mean()},
            r"one score per configuration, shape \(3,\), got shape \(\)",
        ),
    ],
)
def test_pbo_validation(matrix: np.ndarray, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        probability_of_backtest_overfitting(matrix, **kwargs)  # type: ignore[arg-type]


def test_pbo_cpcv_matches_a_direct_count_over_the_splits() -> None:
    """Each split: the in-sample best (Sharpe on the purged train rows) ranked on the test rows."""
    returns = np.random.default_rng(8).normal(size=(403, 7))
    cpcv = CombinatorialPurgedCV(n_groups=8, n_test_groups=4, horizon_bars=3, embargo_bars=2)
    result = pbo_cpcv(returns, cpcv)
    below = []
    for train, test in cpcv.split(returns):
        sr_in = returns[train].mean(0) / returns[train].std(0, ddof=1)
        sr_out = returns[test].mean(0) / returns[test].std(0, ddof=1)
        best = int(np.argmax(sr_in))
        rank = 1 + int(np.sum(sr_out < sr_out[best]))  # no ties with continuous data
        below.append(rank / 8 <= 0.5)
    assert result.n_combinations == len(below) == math.comb(8, 4)
    assert result.pbo == pytest.approx(np.mean(below))


def test_pbo_cpcv_noise_edge_and_purge() -> None:
    rng = np.random.default_rng(3)
    values = [
        pbo_cpcv(
            rng.normal(size=(600, 10)),
            CombinatorialPurgedCV(n_groups=8, n_test_groups=4, horizon_bars=5, embargo_bars=5),
        ).pbo
        for _ in range(20)
    ]
    assert np.mean(values) == pytest.approx(0.5, abs=0.12)
    edge = rng.normal(size=(600, 10))
    edge[:, 2] += 0.4
    cpcv = CombinatorialPurgedCV(n_groups=8, n_test_groups=4, horizon_bars=5, embargo_bars=5)
    assert pbo_cpcv(edge, cpcv).pbo == 0.0
    # The purge removes in-sample rows next to each test block: fewer rows than CSCV sees.
    train, test = next(iter(cpcv.split(600)))
    assert len(train) + len(test) < 600


def test_pbo_cpcv_bad_input() -> None:
    cpcv = CombinatorialPurgedCV(n_groups=4, n_test_groups=2, horizon_bars=1)
    with pytest.raises(ConfigError, match="N >= 2"):
        pbo_cpcv(np.zeros((100, 1)), cpcv)
    bad = np.zeros((100, 3))
    bad[5, 1] = np.nan
    with pytest.raises(ConfigError, match="finite"):
        pbo_cpcv(bad, cpcv)
