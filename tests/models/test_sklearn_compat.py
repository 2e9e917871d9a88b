"""The models are scikit-learn estimators: its own checks, and its tools working on them.

``parametrize_with_checks`` runs scikit-learn's estimator checks over the gradient-boosting
kinds (``lgbm``, ``xgb``: regression, classification, quantile) and the naive kinds (``mean``
and ``zero`` regression, ``prior`` classification), each with its default hyperparameters
(``n_jobs=1`` to share the machine). The role follows the ``task`` hyperparameter: a
classifier for ``"classification"``, a regressor otherwise. Every check passes; none is in
:data:`EXPECTED_FAILED_CHECKS`. What the checks leave out, and why:

``check_array_api_input``
    Skipped by scikit-learn itself unless ``SCIPY_ARRAY_API=1``; our models convert ``X`` to
    a NumPy float64 array and do not claim array-API support (no ``array_api_support`` tag).
``check_dataframe_column_names_consistency``
    Not among the checks ``check_estimator`` runs (scikit-learn 1.9). Our models would fail
    it on purpose: a DataFrame's fitted columns are picked *by name*, so reordered or extra
    columns are accepted (serving passes the whole feature frame), where scikit-learn wants
    reordered names refused.
``poor_score``
    Declared by the naive kinds (a baseline is not meant to fit well) and by the quantile task
    (a quantile is not the conditional mean, so R² is not its measure): the score thresholds
    of ``check_regressors_train`` / ``check_classifiers_train`` are not applied to them.

The other tests use scikit-learn's tools on our models: ``clone``, ``get_params(deep=True)`` /
``set_params`` through wrappers, ``cross_val_predict`` with a plain ``KFold`` and with our
purged :class:`~trademl.validation.splitters.PurgedKFold`, ``CalibratedClassifierCV``, and a
``Pipeline`` behind a scaler.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone, is_classifier, is_regressor
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from trademl.errors import ConfigError
from trademl.models.base import NotFittedError, load_model, predicted_value
from trademl.models.gbm import LGBMModel, XGBModel
from trademl.models.naive import NaiveModel
from trademl.models.residual import ResidualRegressor
from trademl.models.stacking import StackingModel
from trademl.models.uncertainty import CalibratedClassifier, SplitConformalRegressor
from trademl.validation.splitters import PurgedKFold

SMALL: dict[str, Any] = {"n_estimators": 40, "learning_rate": 0.1, "n_jobs": 1}

CHECKED = [
    LGBMModel(n_jobs=1),
    LGBMModel(task="classification", n_jobs=1),
    LGBMModel(task="quantile", alpha=0.5, n_jobs=1),
    XGBModel(n_jobs=1),
    XGBModel(task="classification", n_jobs=1),
    XGBModel(task="quantile", alpha=0.5, n_jobs=1),
    NaiveModel(strategy="mean"),
    NaiveModel(strategy="zero"),
    NaiveModel(task="classification", strategy="prior"),
]

# Checks that fail, by check name, with the reason; empty: every check passes (see the module
# docstring for the checks scikit-learn itself leaves out).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda _: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_estimator_checks(estimator: BaseEstimator, check: Any) -> None:
    check(estimator)


def planted(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Features x0..x3 and y = 2·x0 + noise, on an hourly index."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["x0", "x1", "x2", "x3"])
    X.index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return X, pd.Series(2.0 * X["x0"].to_numpy() + rng.normal(size=n), index=X.index)


# -- roles and the classifier's API ------------------------------------------------------------


@pytest.mark.parametrize("cls", [LGBMModel, XGBModel, NaiveModel])
def test_the_task_decides_whether_a_model_is_a_classifier_or_a_regressor(cls: type) -> None:
    classifier = cls(task="classification")
    assert is_classifier(classifier) and not is_regressor(classifier)
    assert is_regressor(cls(task="regression")) and not is_classifier(cls(task="regression"))
    assert hasattr(classifier, "predict_proba")
    assert not hasattr(cls(task="regression"), "predict_proba")
    assert is_regressor(LGBMModel(task="quantile"))


def test_a_classifier_predicts_labels_and_probabilities_of_any_two_labels() -> None:
    X, y = planted(600, seed=0)
    labels = pd.Series(np.where(y > 0, "up", "down"), index=X.index)
    model = LGBMModel(task="classification", **SMALL).fit(X, labels)
    np.testing.assert_array_equal(model.classes_, ["down", "up"])
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X), np.where(proba[:, 1] > 0.5, "up", "down"))
    np.testing.assert_array_equal(predicted_value(model, X), proba[:, 1])
    assert model.score(X, labels) > 0.8  # accuracy


def test_a_classifier_refuses_a_continuous_or_a_three_class_target() -> None:
    X, y = planted(300, seed=1)
    with pytest.raises(ConfigError, match="Only binary classification is supported"):
        LGBMModel(task="classification", **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        LGBMModel(task="classification", **SMALL).fit(X, np.sign(y.round()))


def test_arrays_are_accepted_with_columns_named_x0_x1() -> None:
    X, y = planted(500, seed=2)
    model = XGBModel(**SMALL).fit(X.to_numpy(), y.to_numpy())
    np.testing.assert_array_equal(model.feature_names_in_, ["x0", "x1", "x2", "x3"])
    assert model.n_features_in_ == 4
    np.testing.assert_array_equal(
        model.predict(X.to_numpy()), model.predict(X.set_axis(model.feature_names_in_, axis=1))
    )
    with pytest.raises(ValueError, match="X has 3 features, but XGBModel is expecting 4"):
        model.predict(X.to_numpy()[:, :3])


def test_not_fitted_is_both_trademl_and_scikit_learn_error() -> None:
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError
    from sklearn.utils.validation import check_is_fitted

    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(NaiveModel())
    with pytest.raises(NotFittedError):
        NaiveModel().predict(np.zeros((2, 2)))


# -- parameters and clone ----------------------------------------------------------------------


def test_clone_and_set_params_reach_into_wrapped_models() -> None:
    wrapper = CalibratedClassifier(LGBMModel(task="classification", **SMALL), gap=3)
    params = wrapper.get_params(deep=True)
    assert params["model__n_estimators"] == 40 and params["gap"] == 3
    wrapper.set_params(model__n_estimators=7, gap=5)
    assert wrapper.model.n_estimators == 7 and wrapper.gap == 5
    twin = clone(wrapper)
    assert twin.model is not wrapper.model and twin.model.get_params() == wrapper.model.get_params()

    X, y = planted(800, seed=3)
    residual = ResidualRegressor(XGBModel(**SMALL), ["x1"]).fit(X, y)
    fresh = clone(residual)
    assert not hasattr(fresh, "model_") and fresh.get_params()["model__max_depth"] == 4
    np.testing.assert_array_equal(clone(residual).fit(X, y).predict(X), residual.predict(X))


def test_a_fitted_clone_predicts_as_the_original_and_pickles(tmp_path: Any) -> None:
    X, y = planted(800, seed=4)
    model = SplitConformalRegressor(LGBMModel(**SMALL), gap=2).fit(X, y)
    twin = clone(model).fit(X, y)
    np.testing.assert_array_equal(twin.predict(X), model.predict(X))
    loaded = load_model(model.save(tmp_path / "conformal"))
    np.testing.assert_array_equal(
        loaded.predict_interval(X, 0.1)[0], model.predict_interval(X, 0.1)[0]
    )


# -- scikit-learn's tools ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "cv", [KFold(n_splits=4), PurgedKFold(n_splits=4, horizon_bars=3)], ids=["kfold", "purged"]
)
def test_cross_val_predict(cv: Any) -> None:
    X, y = planted(1200, seed=5)
    predicted = cross_val_predict(LGBMModel(**SMALL), X, y, cv=cv)
    assert predicted.shape == (len(X),) and np.isfinite(predicted).all()
    assert float(np.corrcoef(predicted, y)[0, 1]) > 0.7
    up = (y > 0).astype(int)
    proba = cross_val_predict(
        XGBModel(task="classification", **SMALL), X, up, cv=cv, method="predict_proba"
    )
    assert proba.shape == (len(X), 2)
    assert float(np.mean((proba[:, 1] > 0.5) == up)) > 0.8


def test_calibrated_classifier_cv_wraps_our_classifier() -> None:
    X, y = planted(1500, seed=6)
    up = (y > 0).astype(int)
    calibrated = CalibratedClassifierCV(
        LGBMModel(task="classification", **SMALL), method="sigmoid", cv=3
    ).fit(X.iloc[:1000], up.iloc[:1000])
    proba = calibrated.predict_proba(X.iloc[1000:])[:, 1]
    assert ((proba > 0) & (proba < 1)).all()
    assert float(np.mean((proba > 0.5) == up.iloc[1000:])) > 0.8


def test_a_pipeline_with_a_scaler() -> None:
    X, y = planted(1000, seed=7)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", XGBModel(**SMALL))])
    pipeline.fit(X.iloc[:800], y.iloc[:800])
    assert pipeline.get_params()["model__max_depth"] == 4
    assert pipeline.score(X.iloc[800:], y.iloc[800:]) > 0.6  # R²
    # Pandas output keeps the column names through the scaler.
    named = clone(pipeline).set_output(transform="pandas").fit(X.iloc[:800], y.iloc[:800])
    np.testing.assert_array_equal(named["model"].feature_names_in_, X.columns)
    np.testing.assert_allclose(named.predict(X.iloc[800:]), pipeline.predict(X.iloc[800:]))


def test_stacking_is_a_classifier_with_probabilities() -> None:
    X, y = planted(1500, seed=8)
    up = (y > 0).astype(float)
    stack = StackingModel(
        task="classification",
        base_models=[
            {"kind": "lgbm", "params": SMALL},
            {"kind": "naive", "params": {"strategy": "prior"}},
        ],
        n_splits=2,
    ).fit(X, up)
    assert is_classifier(stack)
    proba = stack.predict_proba(X)
    np.testing.assert_array_equal(stack.predict(X), (proba[:, 1] > 0.5).astype(float))
    assert stack.meta_weights_ is not None and stack.meta_weights_["base0_lgbm"] > 0


class SwappedPrior(NaiveModel):
    """A classifier whose own predict_proba swaps the prior's two columns."""

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(super().predict_proba(X)[:, ::-1])


def test_predicted_value_is_the_probability_predict_proba_gives() -> None:
    X, y = planted(200, seed=9)
    up = (y > 0).astype(float)
    plain = NaiveModel(task="classification", strategy="prior").fit(X, up)
    np.testing.assert_array_equal(predicted_value(plain, X), plain.predict_proba(X)[:, 1])
    swapped = SwappedPrior(task="classification", strategy="prior").fit(X, up)
    np.testing.assert_allclose(predicted_value(swapped, X), 1.0 - up.mean())
    regression = NaiveModel(strategy="mean").fit(X, y)
    np.testing.assert_array_equal(predicted_value(regression, X), regression.predict(X))
