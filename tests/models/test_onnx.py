"""ONNX export: the graph run by ONNX Runtime gives the numbers of the native ``predict``.

Both sides see the same float32-cast features (the ONNX input type): the native model gets
them cast back to float64, so that a value near a split threshold cannot take different
branches because of the cast alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest

from trademl.errors import ConfigError
from trademl.models.base import BaseModel, NotFittedError, predicted_value
from trademl.models.gbm import LGBMModel, XGBModel
from trademl.models.naive import NaiveModel
from trademl.models.onnx_export import (
    OnnxPredictor,
    export_onnx,
    sliding_windows,
)
from trademl.models.uncertainty import CalibratedClassifier, SplitConformalRegressor

TOLERANCE = 1e-4
N_TRAIN = 6000
SMALL: dict[str, Any] = {"n_estimators": 150, "learning_rate": 0.1, "n_jobs": 1}


@pytest.fixture(scope="module")
def btc(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Minimal features of the last 10,000 BTCUSDT hours and their 6-bar labels."""
    from trademl.data.sources.files import read_candle_file
    from trademl.features import build_features, build_labels

    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-10_000:]
    features = build_features(candles, "minimal", warmup="drop")
    labels = build_labels(
        candles,
        [{"kind": "max_high", "horizon": 6}, {"kind": "direction", "horizon": 6}],
    ).loc[features.index]
    complete = labels["complete_6"].to_numpy(dtype=bool)
    features, labels = features.loc[complete].copy(), labels.loc[complete]
    # Real gaps: some features missing on every 11th row (the trees' missing-value branch).
    features.iloc[::11, [0, 2]] = np.nan
    return features, labels


def target(labels: pd.DataFrame, task: str) -> pd.Series:
    if task == "classification":
        return (labels["direction_6"] > 0).astype(float)
    return labels["max_high_6"]


def as_float32(X: pd.DataFrame) -> pd.DataFrame:
    """The features as the ONNX graph sees them, back in float64 for the native model."""
    return pd.DataFrame(
        X.to_numpy(dtype=np.float32).astype(np.float64), index=X.index, columns=X.columns
    )


def assert_parity(model: BaseModel, X: pd.DataFrame, path: Path) -> np.ndarray:
    export_onnx(model, path)
    got = OnnxPredictor(path).predict(X)
    expected = predicted_value(model, as_float32(X))
    assert got.shape == expected.shape
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    # Regression targets are small (about 0.01): the match is also close relative to them.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    return got


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("cls", [LGBMModel, XGBModel])
def test_tree_export_matches_native_predict(
    cls: type[BaseModel], task: str, btc: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    features, labels = btc
    y = target(labels, task)
    model = cls(task=task, early_stopping_rounds=20, **SMALL).fit(
        features.iloc[:N_TRAIN], y.iloc[:N_TRAIN]
    )
    X_test = features.iloc[N_TRAIN:]
    assert len(X_test) >= 3000 and X_test.isna().any().any()
    got = assert_parity(model, X_test, tmp_path / "model.onnx")
    if task == "classification":
        assert ((got >= 0) & (got <= 1)).all()
    # Columns are picked by name, in the fitted order.
    shuffled = X_test.iloc[:, ::-1].assign(extra=1.0)
    np.testing.assert_array_equal(OnnxPredictor(tmp_path / "model.onnx").predict(shuffled), got)


@pytest.mark.parametrize("cls", [LGBMModel, XGBModel])
def test_export_keeps_only_the_best_iteration_trees(
    cls: type[BaseModel], btc: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    features, labels = btc
    y = target(labels, "regression")
    model = cls(task="regression", early_stopping_rounds=5, n_estimators=400, n_jobs=1)
    model.fit(features.iloc[:N_TRAIN], y.iloc[:N_TRAIN])
    assert 1 <= model.best_iteration_ < 400  # type: ignore[attr-defined]
    X_test = features.iloc[N_TRAIN:]
    assert_parity(model, X_test, tmp_path / "model.onnx")
    graph = onnx.load(tmp_path / "model.onnx").graph
    (ensemble,) = [node for node in graph.node if node.op_type.startswith("TreeEnsemble")]
    tree_ids = next(a.ints for a in ensemble.attribute if a.name == "nodes_treeids")
    assert len(set(tree_ids)) == model.best_iteration_  # type: ignore[attr-defined]


def test_predictor_takes_arrays_and_reports_metadata(
    btc: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    features, labels = btc
    model = LGBMModel(task="classification", **SMALL).fit(
        features.iloc[:N_TRAIN], target(labels, "classification").iloc[:N_TRAIN]
    )
    path = export_onnx(model, tmp_path / "sub" / "clf.onnx", n_features=features.shape[1])
    predictor = OnnxPredictor(path)
    assert (predictor.kind, predictor.task) == ("lgbm", "classification")
    assert predictor.feature_names == list(features.columns)
    assert predictor.seq_len is None
    X_test = features.iloc[N_TRAIN:]
    np.testing.assert_array_equal(predictor.predict(X_test.to_numpy()), predictor.predict(X_test))
    with pytest.raises(ConfigError, match="feature column"):
        predictor.predict(X_test.to_numpy()[:, :3])
    with pytest.raises(ConfigError, match="lacks"):
        predictor.predict(X_test.iloc[:, 1:])
    with pytest.raises(ConfigError, match="n_features=3"):
        export_onnx(model, tmp_path / "bad.onnx", n_features=3)


def test_split_conformal_exports_its_inner_model(
    btc: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    features, labels = btc
    wrapper = SplitConformalRegressor(XGBModel(**SMALL), calibration_fraction=0.2)
    wrapper.fit(features.iloc[:N_TRAIN], target(labels, "regression").iloc[:N_TRAIN])
    assert_parity(wrapper, features.iloc[N_TRAIN:], tmp_path / "conformal.onnx")
    assert OnnxPredictor(tmp_path / "conformal.onnx").kind == "split_conformal"


@pytest.mark.parametrize("seasonal", [False, True])
@pytest.mark.parametrize("cls", [LGBMModel, XGBModel])
def test_residual_models_export_trees_plus_the_har_baseline(
    cls: type[BaseModel], seasonal: bool, btc: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    from trademl.models.residual import ResidualRegressor

    features, labels = btc
    # Two columns stand in for the HAR windows: the upper band's distance (a volatility
    # measure) and a column with missing values the graph must fill with the training median.
    columns = [str(features.columns[0]), "bbands_20_2_2_0_upper_vs_close"]
    season = None
    if seasonal:  # the hour-of-week profile, with unknown buckets served the factor 1
        index = pd.DatetimeIndex(features.index)
        hours = (index.day_of_week * 24 + index.hour).to_numpy(dtype=np.float64)
        hours[N_TRAIN + 5 : N_TRAIN + 9] = np.nan
        features = features.assign(hour_of_week=hours)
        season = "hour_of_week"
    residual = ResidualRegressor(cls(**SMALL), columns, seasonal_feature=season)
    wrapper = SplitConformalRegressor(residual, calibration_fraction=0.2)
    wrapper.fit(features.iloc[:N_TRAIN], target(labels, "regression").iloc[:N_TRAIN])
    assert wrapper.model_.baseline_.coefficients_.any()  # type: ignore[attr-defined]
    factors = wrapper.model_.baseline_.seasonal_factors_  # type: ignore[attr-defined]
    assert (factors is not None) == seasonal
    if seasonal:
        assert factors.std() > 0.01  # hours of the week differ in range
    assert_parity(wrapper, features.iloc[N_TRAIN:], tmp_path / "residual.onnx")
    # Without the baseline the graph would be the trees alone: a different answer.
    trees = wrapper.model_.model_  # type: ignore[attr-defined]
    assert not np.allclose(
        trees.predict(features.iloc[N_TRAIN:]), wrapper.predict(features.iloc[N_TRAIN:])
    )


def test_unsupported_and_unfitted_models_fail_clearly(
    btc: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    features, labels = btc
    X, y = features.iloc[:2000], target(labels, "classification").iloc[:2000]
    naive = NaiveModel().fit(X, target(labels, "regression").iloc[:2000])
    with pytest.raises(ConfigError, match=r"kind 'naive'.*supported kinds: lgbm, xgb"):
        export_onnx(naive, tmp_path / "naive.onnx")
    calibrated = CalibratedClassifier(LGBMModel(task="classification", **SMALL)).fit(X, y)
    with pytest.raises(ConfigError, match="calibrated"):
        export_onnx(calibrated, tmp_path / "calibrated.onnx")
    with pytest.raises(NotFittedError):
        export_onnx(LGBMModel(), tmp_path / "unfitted.onnx")
    with pytest.raises(NotFittedError):
        export_onnx(SplitConformalRegressor(LGBMModel()), tmp_path / "unfitted.onnx")
    assert not list(tmp_path.glob("*.onnx"))
    with pytest.raises(ConfigError, match="no ONNX file"):
        OnnxPredictor(tmp_path / "missing.onnx")


def test_sliding_windows_end_at_each_row() -> None:
    rows = np.arange(12.0).reshape(6, 2)
    windows = sliding_windows(rows, 4)
    assert windows.shape == (3, 4, 2)
    np.testing.assert_array_equal(windows[-1], rows[2:])
    np.testing.assert_array_equal(windows[0], rows[:4])


# -- deep kinds --------------------------------------------------------------------------------

DEEP = ["gru", "lstm", "transformer", "cnn_lstm"]


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("kind", DEEP)
def test_deep_export_matches_native_predict(
    kind: str, task: str, btc: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("trademl.models.deep")
    from trademl.models.base import MODELS, load_all_models, make_model

    load_all_models()
    if kind not in MODELS:
        pytest.skip(f"deep kind {kind!r} is not registered yet")
    features, labels = btc
    X, y = features.iloc[:1000], target(labels, task).iloc[:1000]
    params: dict[str, Any] = {"task": task}
    tiny = {"hidden": 8, "hidden_size": 8, "epochs": 1, "n_threads": 1, "random_state": 0}
    names = MODELS.get(kind).param_names()
    params.update({name: value for name, value in tiny.items() if name in names})
    model = make_model(kind, params).fit(X, y)
    path = export_onnx(model, tmp_path / f"{kind}.onnx")
    predictor = OnnxPredictor(path)
    assert predictor.seq_len is not None and predictor.kind == kind
    X_test = features.iloc[1000:1500]
    expected = predicted_value(model, as_float32(X_test))
    got = predictor.predict(X_test)
    assert got.shape == expected.shape
    known = ~np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), ~known)
    np.testing.assert_allclose(got[known], expected[known], rtol=0, atol=TOLERANCE)
    # Windows given directly (3-D) give the same numbers as rows.
    windows = sliding_windows(X_test.to_numpy(), predictor.seq_len)
    np.testing.assert_allclose(predictor.predict(windows), got[predictor.seq_len - 1 :])
    np.testing.assert_allclose(predictor.predict(windows[-1:]), got[-1:])  # a batch of one


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("architecture", DEEP)
def test_deep_networks_export_with_their_scaling(
    architecture: str, task: str, btc: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    """The attribute route: ``network_``, ``x_scaler_``, ``y_scaler_``, ``seq_len``.

    Trains each network with the shared training loop and compares the graph with the loop's
    own windowed forward pass (scaled, NaN → 0, mapped back or through the sigmoid).
    """
    pytest.importorskip("torch")
    networks = pytest.importorskip("trademl.models.deep.networks")
    trainer = pytest.importorskip("trademl.models.deep.trainer")
    features, labels = btc
    seq_len, n_rows = 16, 1000
    X = features.iloc[: n_rows + 300]
    y = target(labels, task).iloc[:n_rows].to_numpy()[:, None]
    settings = trainer.TrainSettings(
        owner=architecture,
        task=task,
        alpha=0.5,
        seq_len=seq_len,
        epochs=1,
        batch_size=64,
        lr=1e-3,
        weight_decay=0.0,
        patience=None,
        validation_fraction=0.2,
        validation_gap=0,
        random_state=0,
        n_threads=1,
    )
    result = trainer.train_network(
        lambda n_in, n_out: networks.build_network(architecture, n_in, n_out, 8, 1, 0.1),
        X.iloc[:n_rows].to_numpy(),
        y,
        settings,
        head_stop=n_rows,
        tail_start=None,
    )
    # Any model declaring onnx_export="network" is exported this way, whatever its kind.
    fitted = type("Fitted", (BaseModel,), {"kind": architecture, "onnx_export": "network"})()
    fitted.task, fitted.seq_len = task, seq_len
    fitted.feature_names_in_ = np.asarray(X.columns, dtype=object)
    fitted.n_features_in_ = X.shape[1]
    fitted.network_, fitted.x_scaler_, fitted.y_scaler_ = (
        result.network,
        result.x_scaler,
        result.y_scaler,
    )
    X_test = X.iloc[n_rows:]
    raw = trainer.forward_windows(
        result.network, as_float32(X_test).to_numpy(), result.x_scaler, seq_len, 256, n_threads=1
    )[:, 0]
    if task == "classification":
        expected = 1.0 / (1.0 + np.exp(-raw))
    else:
        expected = result.y_scaler.inverse(raw[:, None])[:, 0]
    got = OnnxPredictor(export_onnx(fitted, tmp_path / "net.onnx")).predict(X_test)
    assert np.isnan(got[: seq_len - 1]).all()
    np.testing.assert_allclose(got[seq_len - 1 :], expected, rtol=0, atol=TOLERANCE)
