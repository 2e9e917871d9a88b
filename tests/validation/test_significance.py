"""The Diebold–Mariano test behind the promotion gate: size, power, symmetry, the HAC variance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from trademl.errors import ConfigError
from trademl.validation.metrics import classification_metrics, regression_metrics
from trademl.validation.significance import (
    default_lag,
    diebold_mariano,
    hac_variance,
    loss_for,
    row_losses,
)

HORIZON = 6
ROWS = 1200
LEVEL = 0.05


def moving_average_differential(rng: np.random.Generator, rows: int, horizon: int) -> np.ndarray:
    """A loss differential shaped by overlapping h-bar labels: the sum of h consecutive shocks."""
    shocks = rng.normal(size=rows + horizon - 1)
    return np.convolve(shocks, np.ones(horizon), mode="valid")


def naive_p_value(difference: np.ndarray) -> float:
    """The one-sided p-value with an iid variance: what the gate must not do."""
    n = len(difference)
    statistic = difference.mean() / math.sqrt(hac_variance(difference, 0) / n)
    return float(stats.t.cdf(statistic, df=n - 1))


def test_size_under_the_null_holds_where_the_iid_variance_fails() -> None:
    # Equal expected losses, MA(h-1) differential: a 5 % test must reject about 5 % of the time.
    hac, naive = [], []
    for seed in range(400):
        difference = moving_average_differential(np.random.default_rng(seed), ROWS, HORIZON)
        hac.append(diebold_mariano(difference, np.zeros(ROWS), HORIZON).p_value < LEVEL)
        naive.append(naive_p_value(difference) < LEVEL)
    hac_rate, naive_rate = float(np.mean(hac)), float(np.mean(naive))
    assert 0.02 <= hac_rate <= 0.09, hac_rate
    # The iid variance ignores the overlap and rejects a true null several times too often.
    assert naive_rate > 0.18, naive_rate
    assert naive_rate > 2.5 * hac_rate


def test_power_under_an_alternative_and_none_in_the_wrong_direction() -> None:
    shift = 0.6  # about 3.5 HAC standard errors of the mean at these rows
    better, wrong_way = [], []
    for seed in range(200):
        noise = moving_average_differential(np.random.default_rng(1000 + seed), ROWS, HORIZON)
        better.append(diebold_mariano(noise - shift, np.zeros(ROWS), HORIZON).p_value < LEVEL)
        wrong_way.append(diebold_mariano(noise + shift, np.zeros(ROWS), HORIZON).p_value < LEVEL)
    assert np.mean(better) > 0.8
    assert np.mean(wrong_way) < 0.01


def test_overlapping_forecasts_of_one_target() -> None:
    # Two forecasts of a 24-bar forward sum: one knows the first half of the future, one nothing.
    rng = np.random.default_rng(7)
    horizon, rows = 24, 3000
    shocks = rng.normal(size=rows + horizon)
    target = np.convolve(shocks, np.ones(horizon), mode="valid")[1 : rows + 1]
    informed = np.convolve(shocks, np.ones(horizon // 2), mode="valid")[1 : rows + 1]
    informed = informed[: len(target)]
    result = diebold_mariano(
        row_losses(target, informed, "squared"),
        row_losses(target, np.zeros_like(target), "squared"),
        horizon,
    )
    assert result.mean_difference < 0
    assert result.p_value < 0.01
    assert result.high < 0
    assert result.lag >= horizon


def test_swapping_the_forecasts_mirrors_the_result() -> None:
    rng = np.random.default_rng(3)
    a = rng.gamma(2.0, size=800)
    b = a + moving_average_differential(rng, 800, 4) * 0.1 + 0.05
    forward, backward = diebold_mariano(a, b, 4), diebold_mariano(b, a, 4)
    assert forward.mean_difference == pytest.approx(-backward.mean_difference)
    assert forward.statistic == pytest.approx(-backward.statistic)
    assert (forward.low, forward.high) == pytest.approx((-backward.high, -backward.low))
    assert forward.p_value == pytest.approx(1.0 - backward.p_value)
    assert forward.p_value_two_sided == pytest.approx(backward.p_value_two_sided)
    assert forward.worse(LEVEL) == backward.better(LEVEL)


def test_interval_excludes_zero_exactly_when_the_two_sided_test_rejects() -> None:
    for seed in range(40):
        rng = np.random.default_rng(seed)
        difference = moving_average_differential(rng, 600, 3) + rng.normal(scale=0.3)
        result = diebold_mariano(difference, np.zeros(600), 3, confidence=0.9)
        assert (result.low > 0 or result.high < 0) == (result.p_value_two_sided < 0.1)


def bartlett_matrix_variance(values: np.ndarray, lag: int) -> float:
    """n Var(mean) as the quadratic form e' W e / n with W[s, t] = max(0, 1 - |s - t| / (L + 1))."""
    centred = values - values.mean()
    distance = np.abs(np.subtract.outer(np.arange(len(values)), np.arange(len(values))))
    weights = np.clip(1.0 - distance / (lag + 1.0), 0.0, None)
    return float(centred @ weights @ centred) / len(values)


@pytest.mark.parametrize("lag", [0, 1, 6, 25])
def test_hac_variance_is_the_bartlett_quadratic_form(lag: int) -> None:
    values = moving_average_differential(np.random.default_rng(lag), 300, 5) ** 2
    assert hac_variance(values, lag) == pytest.approx(bartlett_matrix_variance(values, lag))


def test_hac_variance_agrees_with_statsmodels() -> None:
    from statsmodels.regression import linear_model as regression
    from statsmodels.stats import sandwich_covariance as sandwich

    values = moving_average_differential(np.random.default_rng(11), 500, 6)
    fitted = regression.OLS(values, np.ones((len(values), 1))).fit()
    for lag in (6, 12):
        covariance = sandwich.cov_hac(fitted, nlags=lag, use_correction=False)
        assert hac_variance(values, lag) / len(values) == pytest.approx(covariance[0, 0])


def test_the_lag_is_never_below_the_horizon() -> None:
    values = moving_average_differential(np.random.default_rng(0), 400, 10)
    assert diebold_mariano(values, np.zeros(400), 10, lag=3).lag == 10
    assert diebold_mariano(values, np.zeros(400), 10, lag=15).lag == 15
    assert diebold_mariano(values, np.zeros(400), 10).lag == default_lag(400, 10) >= 20


def test_degenerate_differentials_give_finite_answers() -> None:
    losses = np.random.default_rng(0).gamma(2.0, size=200)
    same = diebold_mariano(losses, losses.copy(), 2)
    assert (same.statistic, same.p_value, same.p_value_two_sided) == (0.0, 0.5, 1.0)
    assert same.mean_difference == 0.0 == same.low == same.high
    lower = diebold_mariano(losses, losses + 0.25, 2)
    assert lower.mean_difference == pytest.approx(-0.25)
    assert lower.p_value == 0.0 and lower.statistic == -math.inf
    assert lower.better(LEVEL) and not lower.worse(LEVEL)
    higher = diebold_mariano(losses + 0.25, losses, 2)
    assert higher.p_value == 1.0 and higher.worse(LEVEL)


def test_losses_equal_up_to_rounding_are_a_tie() -> None:
    # A model that reproduces a baseline: its losses differ by floating-point noise only.
    losses = np.random.default_rng(1).gamma(2.0, size=500) * 1e-5
    rounded = losses * (1.0 + np.random.default_rng(2).normal(scale=1e-15, size=500))
    tie = diebold_mariano(rounded, losses, 6)
    assert (tie.mean_difference, tie.p_value, tie.p_value_two_sided) == (0.0, 0.5, 1.0)
    # A real difference at that scale is still measured.
    assert diebold_mariano(losses * 0.9, losses, 6).p_value < 0.01


def test_rows_with_a_missing_loss_are_dropped() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.gamma(2.0, size=300), rng.gamma(2.0, size=300)
    a_gaps = a.copy()
    a_gaps[::10] = np.nan
    keep = ~np.isnan(a_gaps)
    assert diebold_mariano(a_gaps, b, 3).rows == int(keep.sum()) == 270
    assert diebold_mariano(a_gaps, b, 3) == diebold_mariano(a[keep], b[keep], 3)


def test_bad_input_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"only 5 rows.*needs at least"):
        diebold_mariano(np.ones(5), np.zeros(5), 2)
    with pytest.raises(ConfigError, match="same length, got 10 and 9"):
        diebold_mariano(np.ones(10), np.ones(9), 1)
    with pytest.raises(ConfigError, match="horizon must be an integer >= 1, got 0"):
        diebold_mariano(np.ones(100), np.ones(100), 0)
    with pytest.raises(ConfigError, match="confidence"):
        diebold_mariano(np.ones(100), np.ones(100), 1, confidence=1.5)


def test_row_losses_average_to_the_reported_metrics() -> None:
    rng = np.random.default_rng(2)
    classes = (rng.random(500) < 0.45).astype(float)
    probabilities = np.clip(0.45 + rng.normal(scale=0.1, size=500), 0.01, 0.99)
    reported = classification_metrics(classes, probabilities)
    assert row_losses(classes, probabilities, "log").mean() == pytest.approx(reported["log_loss"])
    assert row_losses(classes, probabilities, "brier").mean() == pytest.approx(reported["brier"])
    y, prediction = rng.normal(size=500), rng.normal(size=500)
    regression = regression_metrics(y, prediction)
    squared = row_losses(y, prediction, "squared")
    assert math.sqrt(squared.mean()) == pytest.approx(regression["rmse"])
    assert row_losses(y, prediction, "absolute").mean() == pytest.approx(regression["mae"])


def test_row_losses_keep_nan_rows_and_check_their_input() -> None:
    losses = row_losses([0.1, np.nan, 0.3], [0.2, 0.2, np.nan], "squared")
    assert losses[0] == pytest.approx(0.01)
    assert np.isnan(losses[1:]).all()
    with pytest.raises(ConfigError, match=r"loss must be one of .* got 'hinge'"):
        row_losses([1.0], [0.5], "hinge")
    with pytest.raises(ConfigError, match=r"log loss needs y in \{0, 1\}, got 2.0"):
        row_losses([1.0, 2.0], [0.5, 0.5], "log")
    with pytest.raises(ConfigError, match=r"probabilities in \[0, 1\]"):
        row_losses([1.0, 0.0], [0.5, 1.5], "brier")


def test_each_task_and_metric_has_its_loss() -> None:
    assert loss_for("classification") == loss_for("log_loss") == loss_for("direction") == "log"
    assert loss_for("brier") == "brier"
    assert loss_for("regression") == loss_for("r2") == loss_for("rmse") == "squared"
    assert loss_for("min_low") == loss_for("max_high") == "squared"
    assert loss_for("mae") == "absolute"
    with pytest.raises(ConfigError, match="no loss is known for 'sharpe'"):
        loss_for("sharpe")
