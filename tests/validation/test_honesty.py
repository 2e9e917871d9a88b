"""Honesty controls: no skill on a random walk, skill found when planted, and purging removes
the inflation a label-overlapping feature gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsRegressor

from trademl.data.candles import make_candles
from trademl.features import build_features, build_labels
from trademl.models.base import BaseModel, make_model
from trademl.models.uncertainty import CalibratedClassifier
from trademl.validation.metrics import binomial_interval, classification_metrics, regression_metrics
from trademl.validation.runner import evaluate
from trademl.validation.splitters import PurgedKFold, WalkForward

SMALL_GBM = {"n_estimators": 150, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 50}


def random_walk(n: int, seed: int, drift: np.ndarray | None = None) -> pd.DataFrame:
    """Synthetic hourly candles: log returns i.i.d. normal (plus an optional planted drift)."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.01, n) + (0.0 if drift is None else drift)
    close = 100 * np.exp(np.cumsum(returns))
    open_ = np.r_[100.0, close[:-1]]
    spread = np.abs(rng.normal(0.0, 0.004, n))
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - spread)
    index = pd.date_range("2020-01-01", periods=n, freq="1h", tz="UTC")
    return make_candles(
        index, open_, high, low, close, rng.lognormal(3, 0.5, n), symbol="SYN", timeframe="1h"
    )


def direction_accuracy(candles: pd.DataFrame, horizon: int = 1) -> dict[str, float]:
    features = build_features(candles, "minimal", warmup="drop")
    labels = build_labels(candles, [{"kind": "direction", "horizon": horizon}]).loc[features.index]
    usable = (
        labels[f"complete_{horizon}"].to_numpy() & (labels[f"direction_{horizon}"] != 0).to_numpy()
    )
    X, y = features[usable], (labels[f"direction_{horizon}"][usable] > 0).astype(float)
    splitter = WalkForward(
        test_size=len(y) // 6, horizon_bars=horizon, n_splits=4, min_train_size=500
    )
    factories = {
        "lgbm": lambda: CalibratedClassifier(
            make_model("lgbm", {**SMALL_GBM, "task": "classification", "validation_gap": horizon}),
            gap=horizon,
        ),
        "xgb": lambda: make_model(
            "xgb", {"task": "classification", "n_estimators": 150, "validation_gap": horizon}
        ),
    }
    result = evaluate(
        factories, {"lgbm": X, "xgb": X}, y, splitter.split(X, y), task="classification"
    )
    return {
        name: classification_metrics(result.predictions["target"], result.predictions[name])[
            "accuracy"
        ]
        for name in factories
    } | {"n": len(result.predictions)}


@pytest.mark.parametrize("seed", [1, 2])
def test_no_model_beats_a_coin_on_a_random_walk(seed: int) -> None:
    scores = direction_accuracy(random_walk(4_000, seed))
    n = int(scores.pop("n"))
    # Accuracy is within the 95% binomial interval of a fair coin over the same n.
    lo, hi = binomial_interval(n // 2, n)
    for name, accuracy in scores.items():
        assert lo - 0.5 / n <= accuracy <= hi + 0.5 / n, (
            f"{name}: {accuracy:.4f} outside [{lo:.4f}, {hi:.4f}] (n={n})"
        )


def test_a_planted_causal_signal_is_found() -> None:
    # Next bar's drift follows the sign of the last 5-bar return: causal, learnable from
    # momentum features (RSI, MACD).
    base = random_walk(4_000, 7)
    past = np.log(base["close"]).diff(5).to_numpy()
    drift = np.r_[0.0, 0.006 * np.sign(np.nan_to_num(past[:-1]))]
    scores = direction_accuracy(random_walk(4_000, 7, drift=drift))
    n = int(scores.pop("n"))
    for name, accuracy in scores.items():
        lo, _ = binomial_interval(round(accuracy * n), n)
        assert lo > 0.55, f"{name} did not find the planted signal: accuracy {accuracy:.4f} (n={n})"


class NearestNeighbour(BaseModel):
    """A pure memoriser: predicts the label of the closest training row (test-only kind)."""

    kind = "nearest_neighbour"

    def __init__(self, task: str = "regression") -> None:
        self.task = task

    def _fit(self, X: pd.DataFrame, y: pd.Series, eval_set: object) -> None:
        self.model_ = KNeighborsRegressor(n_neighbors=1).fit(X.to_numpy(), y.to_numpy())

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model_.predict(X.to_numpy()), dtype=np.float64)


def test_purging_removes_the_inflation_of_overlapping_labels() -> None:
    # A 48-bar forward return on a random walk: neighbouring rows share 47 of 48 bars of their
    # label. A feature that locates a row in time lets a memorising model copy its neighbours'
    # labels across a fold boundary — unless training rows near the test block are purged.
    horizon = 48
    candles = random_walk(3_000, 11)
    labels = build_labels(candles, [{"kind": "forward_return", "horizon": horizon}])
    y = labels[f"forward_return_{horizon}"].iloc[:-horizon]
    X = pd.DataFrame({"time_index": np.arange(len(y), dtype=float)}, index=y.index)

    def r2(horizon_bars: int, embargo: int) -> float:
        splitter = PurgedKFold(n_splits=70, horizon_bars=horizon_bars, embargo_bars=embargo)
        result = evaluate(
            {"nn": NearestNeighbour}, {"nn": X}, y, splitter.split(X, y), task="regression"
        )
        return regression_metrics(result.predictions["target"], result.predictions["nn"])["r2"]

    leaky, purged = r2(1, 0), r2(horizon, horizon)
    assert leaky > 0.3, f"without purge the leak should inflate R², got {leaky:.3f}"
    assert purged < 0.05, f"with purge and embargo R² should vanish, got {purged:.3f}"
