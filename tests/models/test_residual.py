"""Residual learning over the HAR baseline: the baseline is fitted on the training rows only,
the learned model on what it leaves, early stopping on the residual too, intervals shifted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trademl.errors import ConfigError
from trademl.models.gbm import LGBMModel
from trademl.models.naive import NaiveModel
from trademl.models.residual import ResidualRegressor
from trademl.models.uncertainty import SplitConformalRegressor

COLUMNS = ["rv_short", "rv_long"]


def _data(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "rv_short": rng.uniform(0.005, 0.05, n),
            "rv_long": rng.uniform(0.005, 0.05, n),
            "signal": rng.normal(size=n),
        }
    )
    # The range: mostly volatility (what the baseline knows), plus a non-linear signal only a
    # learned model can find, plus noise.
    y = 0.8 * X["rv_short"] + 0.4 * X["rv_long"] + 0.004 * np.tanh(3 * X["signal"])
    return X, pd.Series(y + 0.002 * rng.normal(size=n))


def test_residual_model_beats_the_baseline_and_the_model_from_zero() -> None:
    X, y = _data(6000, 1)
    test_X, test_y = _data(3000, 2)
    params = {"n_estimators": 200, "learning_rate": 0.05, "n_jobs": 1, "random_state": 0}
    residual = ResidualRegressor(LGBMModel(**params), COLUMNS).fit(X, y)
    baseline = NaiveModel(strategy="volatility", volatility_features=COLUMNS).fit(X, y)
    scratch = LGBMModel(**params).fit(X, y)

    def mse(model: object) -> float:
        return float(np.mean((model.predict(test_X) - test_y) ** 2))  # type: ignore[attr-defined]

    assert mse(residual) < 0.8 * mse(baseline)
    assert mse(residual) < mse(scratch)
    # The baseline inside was fitted on the training rows: the same as fitting it alone.
    np.testing.assert_allclose(residual.baseline_.predict(test_X), baseline.predict(test_X))
    np.testing.assert_allclose(
        residual.predict(test_X),
        baseline.predict(test_X) + residual.model_.predict(test_X),
    )


def test_early_stopping_sees_the_residual_and_intervals_are_shifted() -> None:
    X, y = _data(4000, 3)
    model = ResidualRegressor(NaiveModel(strategy="mean"), COLUMNS)
    fitted = model.fit(X, y, eval_set=(X.iloc[:100], y.iloc[:100]))
    # The inner "mean" model learned the residual's mean (near zero), not y's mean.
    assert abs(fitted.model_.constant_) < 1e-3 < abs(float(y.mean()))
    assert fitted.supports_interval and not fitted.is_sequence
    lower, upper = fitted.predict_interval(X, 0.1)
    point = fitted.predict(X)
    assert (lower <= point).all() and (point <= upper).all()
    coverage = float(np.mean((lower <= y) & (y <= upper)))
    assert 0.85 <= coverage <= 0.95
    # Wrapped in split-conformal intervals, as the workflow does.
    conformal = SplitConformalRegressor(model, calibration_fraction=0.2).fit(X, y)
    low, high = conformal.predict_interval(X, 0.1)
    assert 0.85 <= float(np.mean((low <= y) & (y <= high))) <= 0.95


def test_clone_is_unfitted_and_keeps_its_columns() -> None:
    X, y = _data(500, 4)
    model = ResidualRegressor(NaiveModel(strategy="mean"), COLUMNS).fit(X, y)
    copy = model.clone()
    assert copy.volatility_features == COLUMNS and not hasattr(copy, "baseline_")
    with pytest.raises(Exception, match="rv_short"):
        ResidualRegressor(NaiveModel(strategy="mean"), COLUMNS).fit(X.drop(columns="rv_short"), y)


def test_the_workflow_serves_the_har_columns_and_wraps_regressors(tmp_path: object) -> None:
    from tests.support.training import tiny_run_config

    from trademl.config import RunConfig
    from trademl.data.timeframes import Timeframe
    from trademl.features.engine import warmup_bars
    from trademl.features.sets import load_feature_set
    from trademl.har import har_columns, with_har_features
    from trademl.targets import model_factory

    minimal = load_feature_set("minimal")
    extended = with_har_features(minimal, Timeframe.parse("1h"), [6, 24])
    assert extended.name == "minimal.har"
    assert set(har_columns(6)) | set(har_columns(24)) <= set(extended.columns("1h"))
    assert extended.columns("1h")[: len(minimal.columns("1h"))] == minimal.columns("1h")
    assert warmup_bars(extended, "1h") >= warmup_bars(minimal, "1h")
    assert max(int(c.rsplit("_", 1)[1]) for c in har_columns(10_000)) == 480  # capped

    cfg = RunConfig.model_validate(
        tiny_run_config(tmp_path, {"kind": "lgbm"}, name="m", gate={})  # type: ignore[arg-type]
    )
    built = model_factory("lgbm", {}, "regression", cfg, 6, residual_features=har_columns(6))()
    inner = built.model  # type: ignore[attr-defined]  # the split-conformal wrapper's model
    assert isinstance(inner, ResidualRegressor)
    assert inner.volatility_features == har_columns(6)
    assert inner.model.num_leaves == 7  # type: ignore[attr-defined]  # regularised default
    plain = model_factory("lgbm", {}, "regression", cfg, 6)()
    assert not isinstance(plain.model, ResidualRegressor)  # type: ignore[attr-defined]


def _seasonal(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Ranges whose size follows the hour of the week (busy US hours twice the quiet ones)."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, 168, n).astype(np.float64)
    profile = 1.0 + 0.5 * np.sin(2 * np.pi * np.arange(168) / 24)
    X = pd.DataFrame({"rv_short": rng.uniform(0.005, 0.05, n), "hour_of_week": hours})
    y = X["rv_short"] * profile[hours.astype(int)] + 0.002 * rng.normal(size=n)
    return X, pd.Series(y), profile


def test_the_seasonal_profile_is_learnt_on_the_training_rows_and_helps_out_of_sample() -> None:
    X, y, profile = _seasonal(20_000, 3)
    test_X, test_y, _ = _seasonal(5_000, 4)
    plain = NaiveModel(strategy="volatility", volatility_features=["rv_short"]).fit(X, y)
    seasonal = NaiveModel(
        strategy="volatility", volatility_features=["rv_short"], seasonal_feature="hour_of_week"
    ).fit(X, y)
    factors = seasonal.seasonal_factors_
    assert factors is not None and np.corrcoef(factors, profile)[0, 1] > 0.95
    mse = {
        name: float(np.mean((m.predict(test_X) - test_y) ** 2))
        for name, m in (("plain", plain), ("seasonal", seasonal))
    }
    assert mse["seasonal"] < 0.5 * mse["plain"], mse
    # Fitted on the training rows alone: the test rows' targets never reach the profile.
    again = NaiveModel(
        strategy="volatility", volatility_features=["rv_short"], seasonal_feature="hour_of_week"
    ).fit(X, y)
    np.testing.assert_array_equal(again.predict(test_X), seasonal.predict(test_X))
    # An unknown bucket keeps the plain HAR forecast (factor 1).
    unknown = test_X.assign(hour_of_week=np.nan).iloc[:3]
    linear = seasonal.intercept_ + unknown[["rv_short"]].to_numpy() @ seasonal.coefficients_
    np.testing.assert_allclose(seasonal.predict(unknown), linear)


def test_a_missing_seasonal_column_is_named() -> None:
    X, y, _ = _seasonal(500, 5)
    model = NaiveModel(
        strategy="volatility", volatility_features=["rv_short"], seasonal_feature="hour_of_week"
    )
    with pytest.raises(ConfigError, match="hour_of_week"):
        model.fit(X.drop(columns="hour_of_week"), y)
