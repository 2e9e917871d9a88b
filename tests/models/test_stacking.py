"""Stacking: the meta-model learns from out-of-fold base predictions only, weighs informative
base models over noise, holds its own out of sample, and fails clearly on bad configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trademl.errors import ConfigError
from trademl.models.base import MODELS, BaseModel, load_model, make_model
from trademl.models.gbm import LGBMModel, XGBModel
from trademl.models.stacking import LinearMeta, StackingModel

SMALL: dict[str, Any] = {"n_estimators": 60, "learning_rate": 0.1, "n_jobs": 1}
LGBM: dict[str, Any] = {"kind": "lgbm", "params": SMALL}
XGB: dict[str, Any] = {"kind": "xgb", "params": SMALL}
# Predicts x1, which carries no signal in `synthetic`: a pure-noise base model.
NOISE: dict[str, Any] = {
    "kind": "naive",
    "params": {"strategy": "persistence", "persistence_feature": "x1"},
}


def synthetic(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Features x0..x3 (x3 with NaN) and y = 2·x0 + N(0, 1)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["x0", "x1", "x2", "x3"])
    X.loc[X.index[:10], "x3"] = np.nan
    X.index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    y = pd.Series(2.0 * X["x0"].to_numpy() + rng.normal(size=n), index=X.index, name="y")
    return X, y


def r2(y: np.ndarray, prediction: np.ndarray) -> float:
    return float(1.0 - np.mean((y - prediction) ** 2) / np.var(y))


class SpyMeta(BaseModel):
    """A meta-model that keeps a copy of what it was fitted on and predicts the mean."""

    kind = "spy"
    tasks = ("regression", "classification")

    def __init__(self, task: str = "regression") -> None:
        self.task = task

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        self.seen_X_ = X.copy()
        self.mean_ = float(y.mean())

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.mean_)


class Memorizer(BaseModel):
    """Perfect on its training rows (looked up by x1), the noise column x2 on any other row."""

    kind = "memorizer"
    tasks = ("regression",)

    def __init__(self, task: str = "regression") -> None:
        self.task = task

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        self.table_ = dict(zip(X["x1"].to_numpy(), y.to_numpy(), strict=True))

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.array(
            [self.table_.get(key, other) for key, other in zip(X["x1"], X["x2"], strict=True)]
        )


@pytest.fixture
def test_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register ``spy`` and ``memorizer`` for one test only."""
    monkeypatch.setitem(MODELS._entries, "spy", SpyMeta)
    monkeypatch.setitem(MODELS._entries, "memorizer", Memorizer)


# -- out-of-fold only --------------------------------------------------------------------------


def test_meta_rows_are_the_inner_test_blocks() -> None:
    X, y = synthetic(1000, seed=0)
    model = StackingModel(base_models=[LGBM, NOISE], n_splits=4, horizon_bars=5).fit(X, y)
    # 1000 rows, 4 inner test blocks of 1000 // 5 = 200 rows ending on the last row.
    np.testing.assert_array_equal(model.meta_rows_, np.arange(200, 1000))
    folds = model.inner_folds_
    assert len(folds) == 4
    tested = np.concatenate([np.arange(f["test_start"], f["test_end"] + 1) for f in folds])
    np.testing.assert_array_equal(model.meta_rows_, tested)
    first_training_block = np.arange(folds[0]["train_start"], folds[0]["train_end"] + 1)
    assert not np.isin(model.meta_rows_, first_training_block).any()
    for fold in folds:  # expanding, purged by the horizon
        assert fold["train_start"] == 0
        assert fold["train_end"] == fold["test_start"] - 5 - 1


def test_meta_model_sees_exactly_the_out_of_fold_predictions(test_kinds: None) -> None:
    X, y = synthetic(800, seed=1)
    h = 3
    model = StackingModel(
        base_models=[LGBM], meta_model={"kind": "spy"}, n_splits=3, horizon_bars=h
    ).fit(X, y)
    assert isinstance(model.meta_model_, SpyMeta)
    seen = model.meta_model_.seen_X_
    assert list(seen.columns) == ["base0_lgbm"]
    pd.testing.assert_index_equal(seen.index, X.index[200:])

    # Recompute each block's predictions from a model fitted on the rows before it (purged).
    expected = []
    for start in (200, 400, 600):
        base = LGBMModel(**SMALL, validation_gap=h).fit(X.iloc[: start - h], y.iloc[: start - h])
        expected.append(base.predict(X.iloc[start : start + 200]))
    np.testing.assert_array_equal(seen["base0_lgbm"].to_numpy(), np.concatenate(expected))

    # The in-sample predictions of the final base model are something else entirely.
    in_sample = model.base_models_[0].predict(X.iloc[200:])
    assert not np.allclose(seen["base0_lgbm"].to_numpy(), in_sample)


def test_a_memorizing_base_model_gets_no_weight(test_kinds: None) -> None:
    """In sample the memorizer is perfect; out of fold it is noise, and that is what counts."""
    X, y = synthetic(2000, seed=2)
    X_test, y_test = synthetic(2000, seed=3)
    model = StackingModel(base_models=[LGBM, {"kind": "memorizer"}]).fit(X, y)
    memorizer = model.base_models_[1]
    np.testing.assert_array_equal(memorizer.predict(X), y.to_numpy())
    assert model.meta_weights_ is not None
    assert abs(model.meta_weights_["base1_memorizer"]) < 0.05
    assert model.meta_weights_["base0_lgbm"] > 0.7
    alone = LGBMModel(**SMALL).fit(X, y).predict(X_test)
    assert r2(y_test.to_numpy(), model.predict(X_test)) >= r2(y_test.to_numpy(), alone) - 0.01


# -- weights and skill -------------------------------------------------------------------------


def test_informative_base_model_dominates_the_noise() -> None:
    X, y = synthetic(2000, seed=4)
    model = StackingModel(base_models=[LGBM, NOISE], horizon_bars=2).fit(X, y)
    weights = model.meta_weights_
    assert weights is not None and isinstance(model.meta_model_, LinearMeta)
    # Both predictions have a standard deviation near 2 and 1: raw weights compare directly.
    assert weights["base0_lgbm"] > 0.7
    assert abs(weights["base1_naive"]) < 0.1 * weights["base0_lgbm"]


def test_out_of_sample_r2_is_at_least_the_worse_base_model() -> None:
    X, y = synthetic(3000, seed=5)
    X_test, y_test = synthetic(3000, seed=6)
    target = y_test.to_numpy()
    stacked = StackingModel(base_models=[LGBM, XGB], horizon_bars=1).fit(X, y)
    bases = [LGBMModel(**SMALL, validation_gap=1), XGBModel(**SMALL, validation_gap=1)]
    base_r2 = [r2(target, base.fit(X, y).predict(X_test)) for base in bases]
    stacked_r2 = r2(target, stacked.predict(X_test))
    assert stacked_r2 >= min(base_r2)
    assert stacked_r2 > 0.6  # the planted signal explains 0.8 of the variance


def test_classification_stacks_logits_and_beats_the_worse_base_model() -> None:
    X, y = synthetic(3000, seed=7)
    X_test, y_test = synthetic(3000, seed=8)
    up, up_test = (y > 0).astype(float), (y_test.to_numpy() > 0).astype(float)

    def log_loss(p: np.ndarray) -> float:
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return float(-np.mean(up_test * np.log(p) + (1 - up_test) * np.log(1 - p)))

    base_models = [{**LGBM}, {"kind": "naive", "params": {"strategy": "prior"}}]
    model = StackingModel(task="classification", base_models=base_models).fit(X, up)
    p = model.predict_proba(X_test)[:, 1]
    assert ((p > 0) & (p < 1)).all()
    prior = np.full(len(p), float(up.mean()))
    assert log_loss(p) < log_loss(prior)
    assert float(np.mean((p > 0.5) == (up_test > 0.5))) > 0.75


def test_passthrough_appends_the_features() -> None:
    X, y = synthetic(800, seed=9)
    model = StackingModel(base_models=[LGBM], passthrough=True).fit(X, y)
    assert model.meta_feature_names_ == ["base0_lgbm", "x0", "x1", "x2", "x3"]
    assert np.isfinite(model.predict(X)).all()  # x3 holds NaN: filled for the linear meta


def test_registered_meta_model() -> None:
    X, y = synthetic(800, seed=10)
    model = StackingModel(base_models=[LGBM, XGB], meta_model=LGBM).fit(X, y)
    assert isinstance(model.meta_model_, LGBMModel)
    assert model.meta_weights_ is None and model.meta_intercept_ is None
    assert np.isfinite(model.predict(X)).all()


# -- parameters forwarded ----------------------------------------------------------------------


def test_random_state_and_validation_gap_are_forwarded_unless_set() -> None:
    model = StackingModel(
        base_models=[LGBM, {"kind": "xgb", "params": {"validation_gap": 2, "random_state": 9}}],
        horizon_bars=6,
        random_state=4,
    )
    lgbm, xgb = model.make_base_models()
    assert (lgbm.get_params()["validation_gap"], lgbm.get_params()["random_state"]) == (6, 4)
    assert (xgb.get_params()["validation_gap"], xgb.get_params()["random_state"]) == (2, 9)
    assert LGBM["params"] == SMALL  # the config given is not changed
    defaults = StackingModel(task="classification").make_base_models()
    assert [base.kind for base in defaults] == ["lgbm", "xgb"]
    assert all(base.task == "classification" for base in defaults)


def test_eval_set_reaches_only_the_final_base_fit() -> None:
    X, y = synthetic(1200, seed=11)
    train, valid = slice(0, 1000), slice(1000, 1200)
    eval_set = (X.iloc[valid], y.iloc[valid])
    model = StackingModel(base_models=[LGBM]).fit(X.iloc[train], y.iloc[train], eval_set=eval_set)
    direct = LGBMModel(**SMALL, validation_gap=1).fit(
        X.iloc[train], y.iloc[train], eval_set=eval_set
    )
    np.testing.assert_array_equal(model.base_models_[0].predict(X), direct.predict(X))


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"base_models": [LGBM, {"kind": "lgm"}]},
            r"stacking\.base_models\[1\]: unknown model kind 'lgm'; did you mean 'lgbm'",
        ),
        (
            {"base_models": [{"kind": "lgbm", "params": {"n_trees": 5}}]},
            r"stacking\.base_models\[0\]: model 'lgbm': unknown parameter\(s\) n_trees",
        ),
        (
            {"base_models": [{"kind": "xgb", "params": {"task": "quantile"}}]},
            r"base_models\[0\]: task 'quantile' differs from the stacking task 'regression'",
        ),
        ({"base_models": ["lgbm"]}, r"base_models\[0\] must be a mapping"),
        ({"base_models": [{"kind": "lgbm", "param": {}}]}, "unknown key"),
        ({"base_models": [{"params": {}}]}, "'kind' must be a model kind name"),
        ({"base_models": []}, "empty"),
        ({"base_models": LGBM}, "must be a list"),
        ({"meta_model": {"kind": "logistic"}}, "'logistic' answers task 'classification'"),
        ({"meta_model": {"kind": "ridge", "params": {"C": 1}}}, "unknown parameter.*C"),
        ({"meta_model": {"kind": "ridge", "params": {"l2": -1}}}, "l2 must be"),
        ({"meta_model": {"kind": "rige"}}, r"stacking\.meta_model: unknown model kind 'rige'"),
        ({"n_splits": 0}, "n_splits must be an integer >= 1"),
        ({"horizon_bars": 0}, "horizon_bars must be an integer >= 1"),
        ({"horizon_bars": 100}, "300 training rows are too few for 4 inner test blocks"),
        (
            {"base_models": [{"kind": "naive", "params": {"strategy": "prior"}}]},
            r"base_models\[0\] \(naive\): naive: strategy 'prior' answers task classification",
        ),
    ],
)
def test_bad_configs_fail_clearly(params: dict[str, Any], match: str) -> None:
    X, y = synthetic(300, seed=12)
    params = {"base_models": [LGBM], **params}
    with pytest.raises(ConfigError, match=match):
        make_model("stacking", params).fit(X, y)


def test_base_kind_must_answer_the_task(test_kinds: None) -> None:
    X, y = synthetic(300, seed=13)
    model = StackingModel(task="classification", base_models=[{"kind": "memorizer"}])
    with pytest.raises(
        ConfigError, match=r"base_models\[0\]: model kind 'memorizer' answers task regression"
    ):
        model.fit(X, (y > 0).astype(float))


def test_quantile_task_is_refused() -> None:
    X, y = synthetic(300, seed=14)
    with pytest.raises(ConfigError, match="task='quantile'"):
        StackingModel(task="quantile", base_models=[LGBM]).fit(X, y)


# -- determinism and persistence ---------------------------------------------------------------


def test_two_fits_are_identical() -> None:
    X, y = synthetic(1000, seed=15)
    params: dict[str, Any] = {"base_models": [LGBM, XGB], "horizon_bars": 2}
    first = StackingModel(**params).fit(X, y).predict(X)
    np.testing.assert_array_equal(StackingModel(**params).fit(X, y).predict(X), first)
    other_seed = StackingModel(**params, random_state=1).fit(X, y).predict(X)
    assert not np.array_equal(other_seed, first)


@pytest.mark.parametrize("meta_model", [None, LGBM])
def test_save_load_round_trip(meta_model: dict[str, Any] | None, tmp_path: Path) -> None:
    X, y = synthetic(800, seed=16)
    X_new, _ = synthetic(200, seed=17)
    model = StackingModel(base_models=[LGBM, NOISE], meta_model=meta_model).fit(X, y)
    loaded = load_model(model.save(tmp_path / "stacking"))
    assert isinstance(loaded, StackingModel)
    assert loaded.get_params() == model.get_params()
    assert loaded.meta_weights_ == model.meta_weights_
    np.testing.assert_array_equal(loaded.predict(X_new), model.predict(X_new))
    np.testing.assert_array_equal(loaded.meta_rows_, model.meta_rows_)


def test_no_interval() -> None:
    X, y = synthetic(600, seed=18)
    model = StackingModel(base_models=[LGBM]).fit(X, y)
    assert StackingModel.supports_interval is False
    with pytest.raises(ConfigError, match="does not produce intervals"):
        model.predict_interval(X, 0.1)
