"""The model kinds: protocol conformance, early stopping inside the fit data, determinism,
signal versus noise, and the naive baselines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trademl.errors import ConfigError, UnknownPluginError
from trademl.models.base import (
    NotFittedError,
    make_model,
    predicted_value,
)
from trademl.models.gbm import LGBMModel, XGBModel, tail_split
from trademl.models.naive import NaiveModel
from trademl.testing import parametrize_with_checks

# Small trees keep the suite fast on a shared two-core machine.
SMALL: dict[str, Any] = {"n_estimators": 60, "learning_rate": 0.1, "n_jobs": 1}

# The protocol of every registered kind (every task it declares) is checked by the shipped
# conformance checks in tests/plugins/test_conformance.py; here the same checks run over the
# configurations whose code paths differ within one kind.
CONFIGURED = [
    NaiveModel(strategy="zero"),
    NaiveModel(strategy="persistence", persistence_feature="x1"),
    NaiveModel(strategy="volatility", volatility_feature="vol"),
    NaiveModel(task="classification", strategy="prior"),
    LGBMModel(task="quantile", alpha=0.8, **SMALL),
    XGBModel(task="quantile", alpha=0.8, **SMALL),
    make_model(
        "stacking",
        {
            "task": "regression",
            "base_models": [{"kind": "xgb", "params": SMALL}],
            "meta_model": {"kind": "lgbm", "params": SMALL},
            "passthrough": True,
            "horizon_bars": 3,
        },
    ),
    make_model(
        "stacking",
        {
            "task": "classification",
            "base_models": [
                {"kind": "xgb", "params": SMALL},
                {"kind": "naive", "params": {"strategy": "prior"}},
            ],
        },
    ),
]


def synthetic(n: int, seed: int, *, noise: float = 1.0) -> tuple[pd.DataFrame, pd.Series]:
    """Features x0..x3 (x3 with NaN), a positive ``vol`` column and y = 2·x0 + noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["x0", "x1", "x2", "x3"])
    X["vol"] = rng.uniform(0.5, 2.0, size=n)
    X.loc[X.index[:10], "x3"] = np.nan
    X.index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    y = pd.Series(2.0 * X["x0"].to_numpy() + noise * rng.normal(size=n), index=X.index, name="y")
    return X, y


def target_for(task: str, y: pd.Series) -> pd.Series:
    return (y > 0).astype(float) if task == "classification" else y


def r2(y: np.ndarray, prediction: np.ndarray) -> float:
    return float(1.0 - np.mean((y - prediction) ** 2) / np.var(y))


# -- protocol ----------------------------------------------------------------------------------


@parametrize_with_checks(CONFIGURED)
def test_configured_models_conform(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


@pytest.mark.parametrize("kind", ["naive", "lgbm"])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_fitted_models_carry_the_scikit_learn_attributes(kind: str, task: str) -> None:
    X, y = synthetic(600, seed=1)
    params = {"task": task, **({} if kind == "naive" else SMALL)}
    model = make_model(kind, params).fit(X, target_for(task, y))
    X_new, _ = synthetic(200, seed=2)
    value = predicted_value(model, X_new)
    if task == "classification":
        # predict gives the label whose probability exceeds 1/2.
        np.testing.assert_array_equal(model.classes_, [0.0, 1.0])
        np.testing.assert_array_equal(model.predict(X_new), (value > 0.5).astype(float))
    else:
        np.testing.assert_array_equal(model.predict(X_new), value)
    np.testing.assert_array_equal(model.feature_names_in_, X.columns)
    assert model.n_features_in_ == X.shape[1]
    assert not hasattr(model.clone(), "feature_names_in_")


def test_make_model_refuses_unknown_kind_and_param() -> None:
    with pytest.raises(
        UnknownPluginError, match=r"unknown model kind 'lgbmm'.*did you mean 'lgbm'"
    ):
        make_model("lgbmm")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) n_trees; valid: task"):
        make_model("xgb", {"n_trees": 10})
    with pytest.raises(ConfigError, match="task='ranking'"):
        make_model("lgbm", {"task": "ranking", **SMALL}).fit(*synthetic(200, seed=0))


def test_unfitted_model_refuses_to_predict() -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        LGBMModel().predict(synthetic(10, seed=0)[0])


def test_predict_refuses_missing_feature() -> None:
    X, y = synthetic(300, seed=0)
    model = XGBModel(**SMALL).fit(X, y)
    with pytest.raises(ConfigError, match="lacks 1 feature"):
        model.predict(X.drop(columns="x2"))


@pytest.mark.parametrize("kind", ["lgbm", "xgb"])
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"validation_fraction": 1.5}, "fraction must lie in"),
        ({"early_stopping_rounds": 0}, "early_stopping_rounds"),
        ({"task": "quantile", "alpha": 1.0}, "alpha must lie"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"n_jobs": 0}, "n_jobs"),
    ],
)
def test_bad_hyperparameters_fail_clearly(kind: str, params: dict[str, Any], match: str) -> None:
    X, y = synthetic(300, seed=0)
    with pytest.raises(ConfigError, match=match):
        make_model(kind, {"n_estimators": 5, **params}).fit(X, y)


def test_tail_split() -> None:
    assert tail_split(100, 0.2, 5, owner="t", role="validation") == (75, 80)
    assert tail_split(10, 0.15, 0, owner="t", role="validation") == (8, 8)
    with pytest.raises(ConfigError, match="too few"):
        tail_split(3, 0.1, 0, owner="t", role="validation")
    with pytest.raises(ConfigError, match="gap"):
        tail_split(100, 0.2, -1, owner="t", role="validation")


# -- early stopping ----------------------------------------------------------------------------

Boosted = type[LGBMModel] | type[XGBModel]
BOOSTED: list[Boosted] = [LGBMModel, XGBModel]


@pytest.mark.parametrize("cls", BOOSTED)
def test_early_stopping_stops_on_a_noisy_target(cls: Boosted) -> None:
    X, _ = synthetic(2000, seed=4)
    noise = pd.Series(np.random.default_rng(5).normal(size=len(X)), index=X.index)
    model = cls(n_estimators=200, learning_rate=0.1, n_jobs=1).fit(X, noise)
    assert 1 <= model.best_iteration_ < 200


@pytest.mark.parametrize("cls", BOOSTED)
@pytest.mark.parametrize("gap", [0, 7])
def test_validation_is_exactly_the_tail_of_the_fit_data(cls: Boosted, gap: int) -> None:
    """Fitting on all rows equals fitting on the head with the tail as explicit eval_set."""
    X, y = synthetic(1000, seed=6)
    params: dict[str, Any] = {"n_estimators": 150, "learning_rate": 0.1, "n_jobs": 1}
    auto = cls(**params, validation_fraction=0.2, validation_gap=gap).fit(X, y)
    head_stop, tail_start = 800 - gap, 800
    manual = cls(**params).fit(
        X.iloc[:head_stop], y.iloc[:head_stop], eval_set=(X.iloc[tail_start:], y.iloc[tail_start:])
    )
    assert auto.best_iteration_ == manual.best_iteration_
    np.testing.assert_array_equal(auto.predict(X), manual.predict(X))


@pytest.mark.parametrize("cls", BOOSTED)
def test_early_stopping_reads_the_tail_and_nothing_after_the_fit_data(
    cls: Boosted,
) -> None:
    X_all, y_all = synthetic(1500, seed=7)
    n_fit = 1000
    params: dict[str, Any] = {"n_estimators": 200, "learning_rate": 0.1, "n_jobs": 1}
    base = cls(**params).fit(X_all.iloc[:n_fit], y_all.iloc[:n_fit])

    # Scrambling the tail of the fit data (the last 15%) changes when the trees stop...
    y_tail = y_all.iloc[:n_fit].copy()
    y_tail.iloc[850:] = np.random.default_rng(8).normal(size=150) * 5
    changed = cls(**params).fit(X_all.iloc[:n_fit], y_tail)
    assert changed.best_iteration_ != base.best_iteration_
    assert not np.array_equal(changed.predict(X_all), base.predict(X_all))

    # ...while the rows after the fit data are never handed to the model, so changing them
    # changes nothing.
    y_after = y_all.copy()
    y_after.iloc[n_fit:] = -y_after.iloc[n_fit:]
    X_after = X_all.copy()
    X_after.iloc[n_fit:] = 0.0
    again = cls(**params).fit(X_after.iloc[:n_fit], y_after.iloc[:n_fit])
    np.testing.assert_array_equal(again.predict(X_all), base.predict(X_all))


@pytest.mark.parametrize("cls", BOOSTED)
def test_without_early_stopping_every_round_is_kept(cls: Boosted) -> None:
    X, y = synthetic(500, seed=9)
    model = cls(n_estimators=30, early_stopping_rounds=None, n_jobs=1).fit(X, y)
    assert model.best_iteration_ == 30


@pytest.mark.parametrize("cls", BOOSTED)
@pytest.mark.parametrize("task", ["regression", "classification", "quantile"])
def test_two_fits_are_identical(cls: Boosted, task: str) -> None:
    X, y = synthetic(1500, seed=10)
    y = target_for(task, y)
    first = predicted_value(cls(task=task, **SMALL).fit(X, y), X)
    second = predicted_value(cls(task=task, **SMALL).fit(X, y), X)
    np.testing.assert_array_equal(first, second)
    other_seed = predicted_value(cls(task=task, random_state=1, **SMALL).fit(X, y), X)
    assert not np.array_equal(first, other_seed)


# -- signal versus noise -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", BOOSTED)
def test_planted_signal_is_found_out_of_sample(cls: Boosted) -> None:
    X, y = synthetic(4000, seed=11)
    X_test, y_test = synthetic(4000, seed=12)
    model = cls(n_estimators=200, learning_rate=0.1, n_jobs=1).fit(X, y)
    assert r2(y_test.to_numpy(), model.predict(X_test)) > 0.5
    importances = model.feature_importances_
    assert importances.shape == (5,)
    assert importances.sum() == pytest.approx(1.0)
    assert int(np.argmax(importances)) == 0  # x0 carries the signal


@pytest.mark.parametrize("cls", BOOSTED)
def test_pure_noise_gives_no_out_of_sample_skill(cls: Boosted) -> None:
    X, _ = synthetic(4000, seed=13)
    X_test, _ = synthetic(4000, seed=14)
    rng = np.random.default_rng(15)
    y, y_test = pd.Series(rng.normal(size=4000)), rng.normal(size=4000)
    model = cls(n_estimators=200, learning_rate=0.1, n_jobs=1).fit(X, y.set_axis(X.index))
    assert r2(y_test, model.predict(X_test)) <= 0.02


@pytest.mark.parametrize("cls", BOOSTED)
def test_classifier_probabilities_follow_the_signal(cls: Boosted) -> None:
    X, y = synthetic(3000, seed=16)
    X_test, y_test = synthetic(3000, seed=17)
    model = cls(task="classification", n_estimators=150, learning_rate=0.1, n_jobs=1)
    p = model.fit(X, (y > 0).astype(float)).predict_proba(X_test)[:, 1]
    accuracy = float(np.mean((p > 0.5) == (y_test.to_numpy() > 0)))
    assert accuracy > 0.75


@pytest.mark.parametrize("cls", BOOSTED)
def test_quantile_task_covers_its_level(cls: Boosted) -> None:
    X, y = synthetic(4000, seed=18)
    X_test, y_test = synthetic(4000, seed=19)
    model = cls(task="quantile", alpha=0.9, n_estimators=200, learning_rate=0.1, n_jobs=1)
    upper = model.fit(X, y).predict(X_test)
    assert 0.85 <= float(np.mean(y_test.to_numpy() <= upper)) <= 0.95


def test_classification_needs_both_classes_in_the_head() -> None:
    X, _ = synthetic(400, seed=20)
    y = pd.Series(np.r_[np.zeros(340), np.ones(60)], index=X.index)
    with pytest.raises(ConfigError, match="one class only"):
        LGBMModel(task="classification", **SMALL).fit(X, y)


def test_gbm_on_real_candles(data_dir: Path) -> None:
    from trademl.data.sources.files import read_candle_file
    from trademl.features import build_features, build_labels

    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-4000:]
    X = build_features(candles, "minimal", warmup="drop")
    labels = build_labels(candles, [{"kind": "forward_return", "horizon": 6}]).loc[X.index]
    rows = labels["complete_6"].to_numpy(dtype=bool)
    X, y = X[rows], labels.loc[rows, "forward_return_6"]
    split = int(len(X) * 0.8)
    for cls in BOOSTED:
        for task, target in (("regression", y), ("classification", (y > 0).astype(float))):
            model = cls(task=task, validation_gap=6, **SMALL)
            prediction = model.fit(X.iloc[:split], target.iloc[:split]).predict(X.iloc[split:])
            assert prediction.shape == (len(X) - split,)
            assert np.isfinite(prediction).all()


# -- naive baselines ---------------------------------------------------------------------------


def test_zero_mean_and_prior() -> None:
    X, y = synthetic(500, seed=21)
    assert (NaiveModel(strategy="zero").fit(X, y).predict(X) == 0.0).all()
    np.testing.assert_allclose(NaiveModel(strategy="mean").fit(X, y).predict(X), y.mean())
    up = (y > 0).astype(float)
    prior = NaiveModel(task="classification", strategy="prior").fit(X, up)
    np.testing.assert_allclose(prior.predict_proba(X)[:, 1], up.mean())
    np.testing.assert_array_equal(prior.predict(X), 1.0)  # the more frequent class


def test_volatility_baseline_recovers_intercept_and_slope() -> None:
    rng = np.random.default_rng(22)
    vol = rng.uniform(0.005, 0.05, size=5000)
    y = 0.002 + 1.5 * vol + 0.002 * rng.normal(size=5000)
    X = pd.DataFrame({"rv_close_20": vol, "other": rng.normal(size=5000)})
    model = NaiveModel(strategy="volatility").fit(X, pd.Series(y))
    assert model.intercept_ == pytest.approx(0.002, abs=2e-4)
    assert model.slope_ == pytest.approx(1.5, abs=0.02)
    np.testing.assert_allclose(model.predict(X), model.intercept_ + model.slope_ * vol)
    lower, upper = model.predict_interval(X, 0.1)
    assert 0.88 <= float(np.mean((lower <= y) & (y <= upper))) <= 0.92


def test_har_baseline_recovers_every_window_and_survives_collinear_and_constant_columns() -> None:
    rng = np.random.default_rng(25)
    n = 6000
    short, medium, long = (rng.uniform(0.002, 0.05, size=n) for _ in range(3))
    y = 0.001 + 0.5 * short + 0.3 * medium + 0.9 * long + 0.001 * rng.normal(size=n)
    X = pd.DataFrame(
        {
            "rv_short": short,
            "rv_medium": medium,
            "rv_long": long,
            "rv_copy": 2.0 * long,  # collinear with rv_long
            "flat": np.full(n, 0.01),  # no spread: no weight
        }
    )
    columns = ["rv_short", "rv_medium", "rv_long"]
    har = NaiveModel(strategy="volatility", volatility_features=columns).fit(X, pd.Series(y))
    np.testing.assert_allclose(har.coefficients_, [0.5, 0.3, 0.9], atol=0.02)
    assert har.intercept_ == pytest.approx(0.001, abs=5e-4)
    # Collinear and constant columns leave the fitted forecast as good, with no error.
    degenerate = NaiveModel(
        strategy="volatility", volatility_features=[*columns, "rv_copy", "flat"]
    ).fit(X, pd.Series(y))
    np.testing.assert_allclose(degenerate.predict(X), har.predict(X), atol=1e-9)
    assert degenerate.coefficients_[-1] == 0.0
    # A single short window explains less: the HAR fit is the stronger baseline in sample.
    single = NaiveModel(strategy="volatility", volatility_feature="rv_short").fit(X, pd.Series(y))
    assert np.mean((har.predict(X) - y) ** 2) < 0.5 * np.mean((single.predict(X) - y) ** 2)


def test_volatility_baseline_needs_its_column() -> None:
    X, y = synthetic(200, seed=23)
    with pytest.raises(ConfigError, match=r"'rv_close_10'.*rv_close, params: \{window: 10\}"):
        NaiveModel(strategy="volatility", volatility_window=10).fit(X, y)
    with pytest.raises(ConfigError, match="'realised'"):
        NaiveModel(strategy="volatility", volatility_feature="realised").fit(X, y)


def test_volatility_baseline_fills_missing_volatility_with_the_median() -> None:
    X, y = synthetic(300, seed=24)
    model = NaiveModel(strategy="volatility", volatility_feature="vol").fit(X, y)
    X_gap = X.iloc[:3].copy()
    X_gap["vol"] = np.nan
    np.testing.assert_allclose(
        model.predict(X_gap), model.intercept_ + model.slope_ * X["vol"].median()
    )


def test_persistence_reads_its_column() -> None:
    X, y = synthetic(200, seed=25)
    X["log_return_6"] = np.linspace(-0.01, 0.01, len(X))
    X.loc[X.index[0], "log_return_6"] = np.nan
    model = NaiveModel(strategy="persistence", persistence_feature="log_return_6").fit(X, y)
    prediction = model.predict(X)
    assert prediction[0] == 0.0  # undefined past value: the zero forecast
    np.testing.assert_array_equal(prediction[1:], X["log_return_6"].to_numpy()[1:])


def test_persistence_errors_clearly_without_its_column() -> None:
    X, y = synthetic(200, seed=26)
    with pytest.raises(ConfigError, match="needs persistence_feature"):
        NaiveModel(strategy="persistence").fit(X, y)
    with pytest.raises(ConfigError, match=r"'log_return_6'.*log_return, params: \{n: 6\}"):
        NaiveModel(strategy="persistence", persistence_feature="log_return_6").fit(X, y)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"strategy": "median"}, "strategy='median' is not one of"),
        ({"strategy": "prior"}, "answers task classification"),
        ({"strategy": "zero", "task": "classification"}, "answers task regression"),
        ({"strategy": "volatility", "volatility_window": 1}, "volatility_window"),
    ],
)
def test_naive_refuses_bad_combinations(params: dict[str, Any], match: str) -> None:
    X, y = synthetic(200, seed=27)
    y = target_for(params.get("task", "regression"), y)
    with pytest.raises(ConfigError, match=match):
        NaiveModel(**params).fit(X, y)


def test_naive_classifier_has_no_interval() -> None:
    X, y = synthetic(200, seed=28)
    model = NaiveModel(task="classification", strategy="prior").fit(X, (y > 0).astype(float))
    with pytest.raises(ConfigError, match="regression"):
        model.predict_interval(X, 0.1)


def test_naive_baselines_on_real_candles(data_dir: Path) -> None:
    from trademl.data.sources.files import read_candle_file
    from trademl.features import build_labels

    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-3000:]
    close = candles["close"]
    log_close = np.log(close)
    X = pd.DataFrame(
        {
            "log_return_6": log_close - log_close.shift(6),
            "rv_close_20": log_close.diff().rolling(20).std(),
        }
    )
    labels = build_labels(
        candles,
        [{"kind": "forward_return", "horizon": 6}, {"kind": "max_high", "horizon": 6}],
    )
    rows = labels["complete_6"].to_numpy(dtype=bool)
    X, labels = X[rows], labels[rows]
    persistence = NaiveModel(strategy="persistence", persistence_feature="log_return_6")
    prediction = persistence.fit(X, labels["forward_return_6"]).predict(X)
    np.testing.assert_array_equal(prediction[6:], X["log_return_6"].to_numpy()[6:])
    # The size of the best move ahead grows with the volatility behind.
    volatility = NaiveModel(strategy="volatility").fit(X, labels["max_high_6"])
    assert volatility.slope_ > 0
