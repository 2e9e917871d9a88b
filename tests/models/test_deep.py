"""The deep sequence kinds: windows inside the rows given, determinism, Monte Carlo intervals,
multi-output heads, persistence and clear errors. Networks are tiny: the machine is shared."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from trademl.errors import ConfigError  # noqa: E402
from trademl.models.base import (  # noqa: E402
    MODELS,
    load_all_models,
    load_model,
    make_model,
    predicted_value,
)
from trademl.models.deep import GRUModel  # noqa: E402
from trademl.models.deep.networks import ARCHITECTURES, build_network  # noqa: E402
from trademl.models.deep.trainer import Scaler  # noqa: E402

KINDS = ["gru", "lstm", "transformer", "cnn_lstm"]
TINY: dict[str, Any] = {
    "seq_len": 8,
    "hidden": 8,
    "epochs": 2,
    "batch_size": 64,
    "n_threads": 1,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def planted(n: int, seed: int, *, noise: float = 0.5) -> tuple[pd.DataFrame, pd.Series]:
    """y[t] = x0[t-3] + ... + x0[t] + noise: only a model reading a window can explain it."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["x0", "x1", "x2", "x3"])
    X.index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    X.loc[X.index[:5], "x3"] = np.nan
    signal = X["x0"].rolling(4, min_periods=1).sum().to_numpy()
    return X, pd.Series(signal + noise * rng.normal(size=n), index=X.index, name="y")


def r2(y: np.ndarray, prediction: np.ndarray) -> float:
    return float(1.0 - np.mean((y - prediction) ** 2) / np.var(y))


def test_kinds_are_registered() -> None:
    load_all_models()
    assert set(KINDS) <= set(MODELS.names())
    for kind in KINDS:
        model = make_model(kind)
        assert model.is_sequence and model.supports_interval
        assert model.get_params()["seq_len"] == 32


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_network_shapes(architecture: str) -> None:
    network = build_network(
        architecture, n_features=5, n_outputs=3, hidden=8, layers=2, dropout=0.1
    )
    assert network(torch.zeros(4, 6, 5)).shape == (4, 3)
    assert any(isinstance(m, torch.nn.Dropout) for m in network.modules())


def test_scaler_sets_missing_values_to_zero() -> None:
    values = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, 5.0], [np.nan, np.nan, 5.0]])
    scaler = Scaler.fit(values)
    np.testing.assert_allclose(scaler.mean, [2.0, 0.0, 5.0])
    np.testing.assert_allclose(scaler.scale, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(scaler.transform(values), [[-1, 0, 0], [1, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("kind", KINDS)
def test_fit_predict_on_real_candles(kind: str, data_dir: Path) -> None:
    from trademl.data.sources.files import read_candle_file
    from trademl.features import build_features, build_labels

    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-1500:]
    X = build_features(candles, "minimal", warmup="drop")
    labels = build_labels(candles, [{"kind": "forward_return", "horizon": 6}]).loc[X.index]
    rows = labels["complete_6"].to_numpy(dtype=bool)
    X, y = X[rows], labels.loc[rows, "forward_return_6"]
    split = int(len(X) * 0.8)
    model = make_model(kind, {**TINY, "validation_gap": 6})
    prediction = model.fit(X.iloc[:split], y.iloc[:split]).predict(X.iloc[split:])
    assert prediction.shape == (len(X) - split,)
    assert np.isnan(prediction[:7]).all()
    assert np.isfinite(prediction[7:]).all()
    assert 1 <= model.best_epoch_ <= 2  # type: ignore[attr-defined]


def test_gru_finds_a_planted_sequence_signal() -> None:
    X, y = planted(3000, seed=0)
    X_test, y_test = planted(1000, seed=1)
    model = GRUModel(seq_len=8, hidden=16, epochs=3, batch_size=32, lr=5e-3, n_threads=1)
    prediction = model.fit(X, y).predict(X_test)
    assert r2(y_test.to_numpy()[7:], prediction[7:]) > 0.3


def test_windows_never_reach_outside_the_rows_given() -> None:
    X, y = planted(600, seed=2)
    model = GRUModel(**TINY).fit(X, y)
    full = model.predict(X)
    k = 100
    part = model.predict(X.iloc[k:])
    assert np.isnan(part[:7]).all()
    np.testing.assert_allclose(part[7:], full[k + 7 :], rtol=1e-5, atol=1e-6)
    # Rows after the fit data cannot reach the model.
    X_after, y_after = X.copy(), y.copy()
    X_after.iloc[500:] = 0.0
    y_after.iloc[500:] = -y_after.iloc[500:]
    base = GRUModel(**TINY).fit(X.iloc[:500], y.iloc[:500]).predict(X)
    again = GRUModel(**TINY).fit(X_after.iloc[:500], y_after.iloc[:500]).predict(X)
    np.testing.assert_array_equal(base, again)


def test_two_fits_are_identical_and_the_global_generator_is_untouched() -> None:
    X, y = planted(500, seed=3)
    state = torch.random.get_rng_state()
    first = GRUModel(**TINY).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = GRUModel(**TINY).fit(X, y)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    other = GRUModel(**TINY, random_state=1).fit(X, y)
    assert not np.allclose(first.predict(X)[7:], other.predict(X)[7:])


@pytest.mark.parametrize("task", ["classification", "quantile"])
def test_other_tasks(task: str) -> None:
    X, y = planted(500, seed=4)
    target = (y > 0).astype(float) if task == "classification" else y
    model = GRUModel(task=task, **TINY).fit(X, target)
    prediction = predicted_value(model, X)[7:]
    assert np.isfinite(prediction).all()
    if task == "classification":
        assert ((prediction > 0) & (prediction < 1)).all()


def test_monte_carlo_intervals() -> None:
    X, y = planted(500, seed=5)
    model = GRUModel(**TINY, mc_samples=10).fit(X, y)
    lower, upper = model.predict_interval(X, 0.2)
    assert np.isnan(lower[:7]).all() and np.isnan(upper[:7]).all()
    assert (lower[7:] <= upper[7:]).all()
    assert (upper[7:] - lower[7:] > 0).all()
    again = model.predict_interval(X, 0.2)
    np.testing.assert_array_equal(again[0], lower)
    np.testing.assert_array_equal(model.predict(X), model.predict(X))  # dropout off again
    with pytest.raises(ConfigError, match="alpha must lie"):
        model.predict_interval(X, 1.5)
    classifier = GRUModel(task="classification", **TINY).fit(X, (y > 0).astype(float))
    with pytest.raises(ConfigError, match="not classification"):
        classifier.predict_interval(X, 0.1)


def test_multi_output_head() -> None:
    X, y = planted(500, seed=6)
    targets = pd.DataFrame(
        {"max_high_6": y.abs(), "min_low_6": -y.abs(), "max_high_72": 2 * y.abs()}, index=X.index
    )
    model = GRUModel(**TINY).fit(X, targets)
    frame = model.predict_multi(X)
    assert list(frame.columns) == ["max_high_6", "min_low_6", "max_high_72"]
    assert frame.shape == (500, 3)
    assert frame.index.equals(X.index)
    np.testing.assert_array_equal(model.predict(X), frame["max_high_6"].to_numpy())
    np.testing.assert_array_equal(
        model.predict_target(X, "min_low_6"), frame["min_low_6"].to_numpy()
    )
    with pytest.raises(ConfigError, match=r"'max_high_24'.*max_high_6, min_low_6, max_high_72"):
        model.predict_target(X, "max_high_24")
    single = GRUModel(**TINY).fit(X, y)
    assert single.target_names_ == ["y"]
    with pytest.raises(ConfigError, match="NaN"):
        GRUModel(**TINY).fit(X, targets.assign(min_low_6=np.nan))


def test_seq_len_longer_than_the_rows_fails_clearly() -> None:
    X, y = planted(40, seed=7)
    with pytest.raises(
        ConfigError, match=r"seq_len=38 needs at least 38 rows.*of the 40 rows given only 34"
    ):
        GRUModel(**{**TINY, "seq_len": 38}).fit(X, y)
    with pytest.raises(ConfigError, match=r"seq_len=50 needs at least 50 rows.*only 40 rows"):
        GRUModel(**{**TINY, "seq_len": 50, "patience": None}).fit(X, y)


def test_explicit_eval_set_and_no_early_stopping() -> None:
    X, y = planted(600, seed=8)
    model = GRUModel(**{**TINY, "epochs": 3}).fit(
        X.iloc[:450], y.iloc[:450], eval_set=(X.iloc[450:], y.iloc[450:])
    )
    assert all(np.isfinite(h["valid"]) for h in model.history_)
    full = GRUModel(**{**TINY, "patience": None}).fit(X, y)
    assert full.best_epoch_ == 2
    assert all(np.isnan(h["valid"]) for h in full.history_)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"seq_len": 0}, "seq_len must be"),
        ({"dropout": 1.0}, "dropout must lie"),
        ({"patience": 0}, "patience"),
        ({"lr": 0.0}, "lr must be"),
        ({"validation_fraction": 1.5}, "fraction must lie"),
        ({"task": "quantile", "alpha": 1.0}, "alpha must lie"),
    ],
)
def test_bad_hyperparameters_fail_clearly(params: dict[str, Any], match: str) -> None:
    X, y = planted(100, seed=9)
    with pytest.raises(ConfigError, match=match):
        GRUModel(**{**TINY, **params}).fit(X, y)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind: str, tmp_path: Path) -> None:
    X, y = planted(300, seed=10)
    model = make_model(kind, TINY).fit(X, y)
    folder = model.save(tmp_path / kind)
    assert (folder / "network.pt").exists()
    loaded = load_model(folder)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(
        loaded.predict_interval(X, 0.1)[1], model.predict_interval(X, 0.1)[1]
    )


def test_incompatible_files_are_refused(tmp_path: Path) -> None:
    X, y = planted(300, seed=11)
    folder = GRUModel(**TINY).fit(X, y).save(tmp_path / "gru")
    payload = torch.load(folder / "network.pt", weights_only=True)
    torch.save({**payload, "format": 99}, folder / "network.pt")
    with pytest.raises(ConfigError, match="network weights in format 99"):
        load_model(folder)
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(ConfigError, match="saved in format 0"):
        load_model(folder)


def test_missing_torch_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = planted(100, seed=12)
    monkeypatch.setitem(sys.modules, "torch", None)
    load_all_models()
    assert "lstm" in MODELS.names()
    model = make_model("lstm", TINY)
    with pytest.raises(ConfigError, match=r"pip install torch==2\.13\.0"):
        model.fit(X, y)
