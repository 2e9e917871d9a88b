"""Conformal intervals and probability calibration: coverage, Brier score, time order."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest

from trademl.errors import ConfigError
from trademl.models.base import BaseModel, load_model
from trademl.models.gbm import LGBMModel, XGBModel
from trademl.models.naive import NaiveModel
from trademl.models.uncertainty import (
    CalibratedClassifier,
    ConformalQuantileRegressor,
    SplitConformalRegressor,
    conformal_quantile,
)

SMALL: dict[str, Any] = {"n_estimators": 100, "learning_rate": 0.1, "n_jobs": 1}


def heteroscedastic(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """y = x0 + noise whose scale grows with |x1|: intervals should widen with |x1|."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["x0", "x1", "x2"])
    scale = 0.5 + np.abs(X["x1"].to_numpy())
    y = pd.Series(X["x0"].to_numpy() + scale * rng.normal(size=n), name="y")
    return X, y


def coverage(lower: np.ndarray, upper: np.ndarray, y: pd.Series) -> float:
    values = y.to_numpy()
    return float(np.mean((lower <= values) & (values <= upper)))


def test_conformal_quantile_rank() -> None:
    scores = np.arange(19.0, 0.0, -1.0)  # 19 scores, unsorted
    assert conformal_quantile(scores, 0.1) == 18.0  # ceil(20 · 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.5) == 10.0
    assert conformal_quantile(np.arange(5.0), 0.1) == math.inf  # rank 6 of 5: no finite bound
    with pytest.raises(ConfigError, match="alpha"):
        conformal_quantile(scores, 0.0)


# -- split conformal ---------------------------------------------------------------------------


@pytest.mark.parametrize("inner", [LGBMModel(**SMALL), NaiveModel(strategy="mean")])
def test_split_conformal_covers_fresh_data(inner: BaseModel) -> None:
    X, y = heteroscedastic(5000, seed=1)
    X_test, y_test = heteroscedastic(20000, seed=2)
    model = SplitConformalRegressor(inner, calibration_fraction=0.2).fit(X, y)
    lower, upper = model.predict_interval(X_test, 0.1)
    assert 0.87 <= coverage(lower, upper, y_test) <= 0.93
    np.testing.assert_allclose((lower + upper) / 2, model.predict(X_test))
    assert len(model.scores_) == 1000


def test_split_conformal_fits_on_the_head_and_calibrates_on_the_tail() -> None:
    X, y = heteroscedastic(1000, seed=3)
    inner = LGBMModel(**SMALL)
    model = SplitConformalRegressor(inner, calibration_fraction=0.25, gap=10).fit(X, y)
    assert not hasattr(inner, "feature_names_in_")  # the model given is cloned, never fitted
    head = inner.clone().fit(X.iloc[:740], y.iloc[:740])
    np.testing.assert_array_equal(model.predict(X), head.predict(X))
    residuals = np.abs(y.iloc[750:].to_numpy() - head.predict(X.iloc[750:]))
    np.testing.assert_array_equal(model.scores_, np.sort(residuals))


def test_split_conformal_with_too_few_calibration_rows_is_infinite() -> None:
    X, y = heteroscedastic(40, seed=4)
    model = SplitConformalRegressor(NaiveModel(), calibration_fraction=0.1).fit(X, y)
    lower, upper = model.predict_interval(X, 0.1)  # 4 scores cannot bound 90%
    assert np.isinf(lower).all() and np.isinf(upper).all()


def test_split_conformal_refuses_a_classifier() -> None:
    X, y = heteroscedastic(300, seed=5)
    with pytest.raises(ConfigError, match="expected regression"):
        SplitConformalRegressor(LGBMModel(task="classification")).fit(X, y)


# -- conformalized quantile regression ---------------------------------------------------------


@pytest.mark.parametrize("cls", [LGBMModel, XGBModel])
def test_cqr_covers_fresh_data_and_adapts_its_width(cls: type[LGBMModel] | type[XGBModel]) -> None:
    X, y = heteroscedastic(5000, seed=6)
    X_test, y_test = heteroscedastic(20000, seed=7)
    model = ConformalQuantileRegressor(
        cls(task="quantile", alpha=0.05, **SMALL),
        cls(task="quantile", alpha=0.95, **SMALL),
        calibration_fraction=0.2,
    ).fit(X, y)
    lower, upper = model.predict_interval(X_test, 0.1)
    assert 0.87 <= coverage(lower, upper, y_test) <= 0.93
    width = upper - lower
    calm = np.abs(X_test["x1"].to_numpy()) < 0.5
    assert width[~calm].mean() > 1.3 * width[calm].mean()
    assert (lower <= upper).all()


def test_cqr_fits_both_models_on_the_head() -> None:
    X, y = heteroscedastic(1000, seed=8)
    low, high = (
        LGBMModel(task="quantile", alpha=0.1, **SMALL),
        LGBMModel(task="quantile", alpha=0.9, **SMALL),
    )
    model = ConformalQuantileRegressor(low, high, calibration_fraction=0.2).fit(X, y)
    lo = low.clone().fit(X.iloc[:800], y.iloc[:800]).predict(X.iloc[800:])
    hi = high.clone().fit(X.iloc[:800], y.iloc[:800]).predict(X.iloc[800:])
    y_tail = y.iloc[800:].to_numpy()
    np.testing.assert_array_equal(model.scores_, np.sort(np.maximum(lo - y_tail, y_tail - hi)))
    np.testing.assert_allclose(model.predict(X.iloc[800:]), (lo + hi) / 2)


# -- calibration -------------------------------------------------------------------------------


def logistic_data(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """P(y = 1 | x) = sigmoid(3 · x0): a well-specified logistic target."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 2)), columns=["x0", "x1"])
    p = 1.0 / (1.0 + np.exp(-3.0 * X["x0"].to_numpy()))
    return X, pd.Series((rng.uniform(size=n) < p).astype(float))


class SquashedClassifier(BaseModel):
    """A deliberately miscalibrated classifier: the true probability pulled towards 1/2."""

    kind = "squashed"
    tasks = ("classification",)

    def __init__(self, task: str = "classification", squash: float = 0.3) -> None:
        self.task = task
        self.squash = squash

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        self.fitted_rows_ = len(X)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-3.0 * X["x0"].to_numpy()))
        return 0.5 + self.squash * (p - 0.5)


def brier(p: np.ndarray, y: pd.Series) -> float:
    return float(np.mean((p - y.to_numpy()) ** 2))


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_repairs_squashed_probabilities(method: Literal["isotonic", "sigmoid"]) -> None:
    X, y = logistic_data(5000, seed=9)
    X_test, y_test = logistic_data(20000, seed=10)
    raw = SquashedClassifier().fit(X, y)
    calibrated = CalibratedClassifier(SquashedClassifier(), method=method).fit(X, y)
    p = calibrated.predict_proba(X_test)[:, 1]
    assert ((p >= 0) & (p <= 1)).all()
    assert brier(p, y_test) < brier(raw.predict_proba(X_test)[:, 1], y_test) - 0.01
    assert calibrated.model_.fitted_rows_ == 4000  # type: ignore[attr-defined]


def test_calibrated_gbm_round_trip_and_clone(tmp_path: Path) -> None:
    X, y = logistic_data(2000, seed=11)
    inner = LGBMModel(task="classification", **SMALL)
    model = CalibratedClassifier(inner, method="sigmoid", gap=5).fit(X, y)
    twin = model.clone()
    assert twin.model is not inner and twin.model.get_params() == inner.get_params()
    assert not hasattr(twin, "model_")
    loaded = load_model(model.save(tmp_path / "calibrated"))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_conformal_round_trip(tmp_path: Path) -> None:
    X, y = heteroscedastic(1000, seed=12)
    model = SplitConformalRegressor(XGBModel(**SMALL)).fit(X, y)
    loaded = load_model(model.save(tmp_path / "conformal"))
    np.testing.assert_array_equal(
        loaded.predict_interval(X, 0.2)[1], model.predict_interval(X, 0.2)[1]
    )


def test_calibration_errors() -> None:
    X, y = logistic_data(500, seed=13)
    with pytest.raises(ConfigError, match="expected classification"):
        CalibratedClassifier(NaiveModel()).fit(X, y)
    with pytest.raises(ConfigError, match="method must be"):
        CalibratedClassifier(SquashedClassifier(), method="beta").fit(X, y)  # type: ignore[arg-type]
    one_class_tail = pd.Series(np.r_[(np.arange(400) % 2).astype(float), np.ones(100)])
    with pytest.raises(ConfigError, match="one class only"):
        CalibratedClassifier(SquashedClassifier()).fit(X, one_class_tail)
    with pytest.raises(ConfigError, match="too few"):
        CalibratedClassifier(SquashedClassifier(), calibration_fraction=0.001).fit(X, y)
