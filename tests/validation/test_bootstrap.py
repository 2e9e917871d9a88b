"""Intervals of headline figures under overlapping labels: the block bootstrap covers the true
value at about its nominal rate where the independent-rows intervals do not."""

from __future__ import annotations

import numpy as np
import pytest

from trademl.errors import ConfigError
from trademl.validation.bootstrap import block_bootstrap_interval, block_length
from trademl.validation.coverage import rolling_coverage, worst_window
from trademl.validation.metrics import (
    binomial_interval,
    classification_metrics,
    interval_coverage,
    regression_metrics,
)

H = 12  # label horizon: neighbouring labels share 11 of their 12 shocks


def overlapping(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """y_t = sum of the next H shocks (drift 0.05); the forecast knows the first 3 of them."""
    shocks = np.random.default_rng(seed).normal(size=n + H) + 0.05
    total = np.concatenate([[0.0], np.cumsum(shocks)])
    y = total[1 + H : n + 1 + H] - total[1 : n + 1]
    forecast = total[4 : n + 4] - total[1 : n + 1]
    return y, forecast


@pytest.fixture(scope="module")
def truth() -> dict[str, float]:
    """Population values of the figures, from one very long sample."""
    y, forecast = overlapping(1_000_000, 12345)
    return {
        "accuracy": float(np.mean(y > 0)),  # an always-up forecast: hits are 1[y > 0]
        "r2": float(1 - np.mean((forecast - y) ** 2) / y.var()),
    }


def test_block_intervals_cover_where_independent_intervals_do_not(truth) -> None:
    seeds, n = 100, 2400
    wilson = block_accuracy = iid_r2 = block_r2 = 0
    for seed in range(seeds):
        y, forecast = overlapping(n, seed)
        hits = (y > 0).astype(float)
        low, high = binomial_interval(int(hits.sum()), n)
        wilson += low <= truth["accuracy"] <= high
        low, high = block_bootstrap_interval("mean", hits, horizon=H, seed=seed)
        block_accuracy += low <= truth["accuracy"] <= high
        low, high = block_bootstrap_interval(
            "r2", y, forecast, horizon=H, seed=seed, block=1, n_resamples=200
        )
        iid_r2 += low <= truth["r2"] <= high
        low, high = block_bootstrap_interval("r2", y, forecast, horizon=H, seed=seed)
        block_r2 += low <= truth["r2"] <= high
    # 95 % nominal: Wilson's treats 2,400 overlapping rows as independent and misses half the
    # time; blocks of 3 h rows cover about nominally (a binomial band of 100 seeds around 0.95).
    assert wilson / seeds < 0.7
    assert block_accuracy / seeds > 0.88
    assert iid_r2 / seeds < 0.9
    assert block_r2 / seeds > 0.88
    assert block_r2 > iid_r2


def test_metrics_use_block_intervals_for_overlapping_labels() -> None:
    y, forecast = overlapping(3000, 7)
    classes = (y > 0).astype(float)
    p_up = np.full(len(y), 0.6)  # always up: a hit is 1[y > 0], as dependent as the labels
    one_bar = classification_metrics(classes, p_up)
    overlapped = classification_metrics(classes, p_up, horizon=H)
    assert one_bar["accuracy"] == overlapped["accuracy"]
    width = overlapped["accuracy_hi"] - overlapped["accuracy_lo"]
    assert width > 1.8 * (one_bar["accuracy_hi"] - one_bar["accuracy_lo"])
    metrics = regression_metrics(y, forecast, horizon=H)
    assert metrics["r2_lo"] < metrics["r2"] < metrics["r2_hi"]
    assert metrics["ic_lo"] < metrics["ic"] < metrics["ic_hi"]
    assert "r2_lo" not in regression_metrics(y, forecast)
    coverage = interval_coverage(y, forecast - 2.8, forecast + 2.8, horizon=H)
    assert coverage["coverage_lo"] < coverage["coverage"] < coverage["coverage_hi"]


def test_same_seed_same_interval() -> None:
    y, forecast = overlapping(1500, 3)
    first = block_bootstrap_interval("ic", y, forecast, horizon=6, seed=11)
    assert block_bootstrap_interval("ic", y, forecast, horizon=6, seed=11) == first
    assert block_bootstrap_interval("ic", y, forecast, horizon=6, seed=12) != first
    assert regression_metrics(y, forecast, horizon=6) == regression_metrics(y, forecast, horizon=6)


def test_nan_rows_are_dropped_and_tiny_samples_give_nan() -> None:
    y, forecast = overlapping(600, 5)
    with_nan = np.r_[y, np.nan]
    assert block_bootstrap_interval("r2", with_nan, np.r_[forecast, 1.0], horizon=3) == (
        block_bootstrap_interval("r2", y, forecast, horizon=3)
    )
    assert all(np.isnan(block_bootstrap_interval("mean", [1.0], horizon=2)))


def test_block_length_grows_with_horizon_and_sample() -> None:
    assert block_length(10_000, 24) == 72
    assert block_length(1_000_000, 1) == 100
    assert block_length(30, 24) == 15  # at most half the rows


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: block_bootstrap_interval("median", [1.0, 2.0], horizon=2), "statistic must be"),  # type: ignore[arg-type]
        (lambda: block_bootstrap_interval("r2", [1.0, 2.0], horizon=2), "takes 2 column"),
        (lambda: block_bootstrap_interval("ic", [1.0, 2.0], [1.0], horizon=2), "one length"),
        (lambda: block_bootstrap_interval("mean", [[1.0]], horizon=2), "must be 1-D"),
        (lambda: block_bootstrap_interval("mean", [1.0, 2.0], horizon=0), "horizon must be"),
        (lambda: block_bootstrap_interval("mean", [1.0], horizon=2, confidence=1.0), "confidence"),
        (lambda: block_bootstrap_interval("mean", [1.0], horizon=2, n_resamples=10), "n_resamples"),
        (lambda: block_bootstrap_interval("mean", [1.0, 2.0], horizon=2, block=0), "block must"),
        (lambda: classification_metrics([0.0, 1.0], [0.4, 0.6], horizon=0), "horizon must be"),
        (lambda: regression_metrics([0.0, 1.0], [0.4, 0.6], horizon=0), "horizon must be"),
        (lambda: rolling_coverage([1.0], [0.0], [2.0], window=0), "window must be"),
        (lambda: rolling_coverage([1.0], [0.0, 1.0], [2.0], window=2), "one length"),
    ],
)
def test_bad_input_names_what_is_wrong(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


def test_rolling_coverage_finds_the_stretch_that_misses() -> None:
    y = np.zeros(3000)
    lower, upper = np.full(3000, -1.0), np.full(3000, 1.0)
    upper[1000:1500] = -0.5  # 500 rows that never cover
    rolling = rolling_coverage(y, lower, upper, window=500)
    assert len(rolling) == 2501 and rolling.min() == 0.0 and rolling.max() == 1.0
    assert worst_window(rolling, 0.9) == 0.0
    assert rolling_coverage(y[:100], lower[:100], upper[:100], window=500).tolist() == [1.0]
