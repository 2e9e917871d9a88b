"""Out-of-sample metrics against scikit-learn and scipy references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from trademl.errors import ConfigError
from trademl.validation.metrics import (
    binomial_interval,
    classification_metrics,
    fold_table,
    interval_coverage,
    pooled_metrics,
    regression_metrics,
    summarise,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


def test_classification_metrics_match_sklearn(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, size=500).astype(float)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, size=500), 0.01, 0.99)
    p[:7] = 0.5  # ties at the threshold count as "up"
    result = classification_metrics(y, p)
    predicted = (p >= 0.5).astype(int)
    assert result["n"] == 500
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predicted))
    assert result["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert result["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    correct = int((predicted == y).sum())
    assert (result["accuracy_lo"], result["accuracy_hi"]) == binomial_interval(correct, 500)
    assert result["accuracy_lo"] < result["accuracy"] < result["accuracy_hi"]


def test_classification_ties_in_probabilities_match_sklearn_auc(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, size=200)
    p = rng.choice([0.2, 0.4, 0.6, 0.8], size=200)
    assert classification_metrics(y, p)["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))


def test_classification_threshold_and_log_loss_clipping() -> None:
    result = classification_metrics([1, 0, 1], [1.0, 0.0, 0.0], threshold=0.3)
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["log_loss"] == pytest.approx(-math.log(1e-15) / 3)
    assert math.isfinite(result["log_loss"])


def test_classification_drops_nan_rows_and_one_class_gives_nan_auc() -> None:
    result = classification_metrics([1, 1, np.nan, 1], [0.7, 0.4, 0.9, np.nan])
    assert result["n"] == 2
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["balanced_accuracy"] == pytest.approx(0.5)
    assert math.isnan(result["roc_auc"])


def test_classification_with_no_rows_is_all_nan() -> None:
    result = classification_metrics([np.nan], [0.5])
    assert result["n"] == 0
    assert all(math.isnan(v) for k, v in result.items() if k != "n")


@pytest.mark.parametrize(
    ("y", "p", "kwargs", "match"),
    [
        ([0, 1, 1], [0.5, 0.5], {}, r"y_true has 3, p_up has 2"),
        ([0, 2], [0.5, 0.5], {}, r"only 0 and 1"),
        ([0, 1], [0.5, 1.5], {}, r"p_up must lie in \[0, 1\]"),
        ([0, 1], [0.5, 0.5], {"threshold": 1.0}, r"threshold"),
        ([[0, 1]], [[0.5, 0.5]], {}, r"must be 1-D"),
    ],
)
def test_classification_validation(
    y: object, p: object, kwargs: dict[str, float], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        classification_metrics(y, p, **kwargs)  # type: ignore[arg-type]


def test_regression_metrics_match_references(rng: np.random.Generator) -> None:
    y = rng.normal(size=400)
    f = 0.4 * y + rng.normal(scale=0.8, size=400)
    result = regression_metrics(y, f, reference_mean=0.25)
    assert result["n"] == 400
    assert result["mae"] == pytest.approx(skm.mean_absolute_error(y, f))
    assert result["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, f)))
    assert result["r2"] == pytest.approx(skm.r2_score(y, f))
    sse = float(((f - y) ** 2).sum())
    assert result["r2_vs_train_mean"] == pytest.approx(1 - sse / float(((y - 0.25) ** 2).sum()))
    assert result["ic"] == pytest.approx(stats.pearsonr(y, f).statistic)
    assert result["rank_ic"] == pytest.approx(stats.spearmanr(y, f).statistic)
    assert result["directional_accuracy"] == pytest.approx(np.mean(np.sign(y) == np.sign(f)))


def test_regression_directional_accuracy_excludes_zeros_and_nan() -> None:
    y = [1.0, -1.0, 0.0, 2.0, np.nan, -3.0]
    f = [2.0, 1.0, 5.0, 0.0, 1.0, -1.0]
    result = regression_metrics(y, f)
    assert result["n"] == 5
    assert result["n_directional"] == 3
    assert result["directional_accuracy"] == pytest.approx(2 / 3)
    assert "r2_vs_train_mean" not in result


def test_regression_constant_inputs_give_nan_correlations() -> None:
    result = regression_metrics([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])
    assert math.isnan(result["ic"])
    assert math.isnan(result["rank_ic"])
    assert result["r2"] == pytest.approx(skm.r2_score([1, 2, 3], [0.5, 0.5, 0.5]))
    constant_truth = regression_metrics([1.0, 1.0], [0.0, 2.0])
    assert math.isnan(constant_truth["r2"])
    assert math.isnan(constant_truth["ic"])


def test_regression_validation() -> None:
    with pytest.raises(ConfigError, match=r"y_true has 2, y_pred has 3"):
        regression_metrics([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match=r"reference_mean must be finite"):
        regression_metrics([1.0], [1.0], reference_mean=math.nan)


def test_binomial_interval_matches_hand_computed_wilson() -> None:
    # 8 successes in 10 trials, z = 1.959964: centre 0.716741, half-width 0.226578.
    lo, hi = binomial_interval(8, 10)
    assert lo == pytest.approx(0.4901625, abs=1e-6)
    assert hi == pytest.approx(0.9433178, abs=1e-6)
    z = stats.norm.ppf(0.95)
    lo90, hi90 = binomial_interval(8, 10, confidence=0.90)
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z / (1 + z * z / 10) * math.sqrt(0.8 * 0.2 / 10 + z * z / 400)
    assert (lo90, hi90) == pytest.approx((centre - half, centre + half))
    assert binomial_interval(0, 5)[0] == 0.0
    assert binomial_interval(5, 5)[1] == 1.0
    assert all(math.isnan(v) for v in binomial_interval(0, 0))


@pytest.mark.parametrize(
    ("successes", "n", "confidence", "match"),
    [(3, 2, 0.95, r"successes=3 and n=2"), (-1, 2, 0.95, r"successes=-1"), (1, 2, 1.0, "confid")],
)
def test_binomial_interval_validation(
    successes: int, n: int, confidence: float, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        binomial_interval(successes, n, confidence)


def test_interval_coverage_exact() -> None:
    y = [0.0, 1.0, 2.0, 3.0, 10.0, np.nan]
    lower = [-1.0, 1.0, 2.5, 0.0, 0.0, 0.0]
    upper = [1.0, 2.0, 3.0, 3.0, 9.0, 1.0]  # widths 2, 1, 0.5, 3, 9
    result = interval_coverage(y, lower, upper)
    assert result == {"coverage": 0.6, "mean_width": pytest.approx(3.1), "n": 5.0}


def test_interval_coverage_validation() -> None:
    with pytest.raises(ConfigError, match=r"y_true has 2, lower has 2, upper has 1"):
        interval_coverage([1.0, 2.0], [0.0, 0.0], [3.0])
    with pytest.raises(ConfigError, match=r"lower exceeds upper on 1 rows"):
        interval_coverage([1.0, 2.0], [0.0, 3.0], [3.0, 2.0])


def _records() -> list[dict[str, object]]:
    return [
        {"model": "a", "target": "t", "fold": 0, "accuracy": 0.5, "roc_auc": 0.6},
        {"model": "a", "target": "t", "fold": 1, "accuracy": 0.7, "roc_auc": math.nan},
        {"model": "a", "target": "t", "fold": 2, "accuracy": 0.6},
        {"model": "b", "target": "t", "fold": 0, "accuracy": 0.4, "roc_auc": 0.5},
    ]


def test_fold_table_and_summarise() -> None:
    table = fold_table(_records())
    assert list(table.columns) == ["model", "target", "fold", "accuracy", "roc_auc"]
    assert math.isnan(table.loc[2, "roc_auc"])
    summary = summarise(table, by=["model", "target"])
    a = summary.set_index("model").loc["a"]
    assert a["folds"] == 3
    assert a["accuracy_mean"] == pytest.approx(0.6)
    assert a["accuracy_std"] == pytest.approx(0.1)
    assert a["accuracy_count"] == 3
    assert a["roc_auc_mean"] == pytest.approx(0.6)
    assert math.isnan(a["roc_auc_std"])
    assert a["roc_auc_count"] == 1
    b = summary.set_index("model").loc["b"]
    assert b["accuracy_count"] == 1 and math.isnan(b["accuracy_std"])
    assert "fold_mean" not in summary.columns
    only = summarise(table, by=["model"], metrics=["accuracy"])
    assert list(only.columns) == [
        "model",
        "folds",
        "accuracy_mean",
        "accuracy_std",
        "accuracy_count",
    ]


def test_fold_table_and_summarise_validation() -> None:
    with pytest.raises(ConfigError, match=r"at least one record"):
        fold_table([])
    with pytest.raises(ConfigError, match=r"record 1 must be a mapping"):
        fold_table([{"a": 1}, [("a", 1)]])  # type: ignore[list-item]
    table = fold_table(_records())
    with pytest.raises(ConfigError, match=r"grouping columns \['horizon'\]"):
        summarise(table, by=["model", "horizon"])
    with pytest.raises(ConfigError, match=r"metric columns \['brier'\]"):
        summarise(table, metrics=["brier"])
    with pytest.raises(ConfigError, match=r"not numeric"):
        summarise(table, by=["model"], metrics=["target"])
    with pytest.raises(ConfigError, match=r"at least one grouping"):
        summarise(table, by=[])


def test_pooled_metrics_concatenate_folds(rng: np.random.Generator) -> None:
    ys = [rng.normal(size=50), rng.normal(size=70)]
    fs = [y + rng.normal(size=len(y)) for y in ys]
    pooled = pooled_metrics(ys, fs, task="regression")
    assert pooled == pytest.approx(regression_metrics(np.concatenate(ys), np.concatenate(fs)))
    yc = [pd.Series([0, 1, 1]), pd.Series([1, 0])]
    pc = [pd.Series([0.2, 0.7, 0.4]), pd.Series([0.9, 0.1])]
    assert pooled_metrics(yc, pc, task="classification")["accuracy"] == pytest.approx(0.8)
    with pytest.raises(ConfigError, match=r"part 1: y_true has 2 rows but the predictions have 1"):
        pooled_metrics(yc, [pc[0], [0.5]], task="classification")
    with pytest.raises(ConfigError, match=r"task must be"):
        pooled_metrics(ys, fs, task="ranking")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"2 parts but pred_parts has 1"):
        pooled_metrics(ys, fs[:1], task="regression")
