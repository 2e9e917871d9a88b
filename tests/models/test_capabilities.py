"""Capabilities declared on a model class drive what the engine does with the kind.

A kind registered here, in the test, gets conformalised quantile regression, tuning and AutoML
from what its class declares (``supports_quantile``, ``search_space``), without any list of
kinds being edited; the built-in kinds declare what the removed lists used to say.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trademl.config import load_run_config
from trademl.models.base import MODELS, BaseModel, load_all_models
from trademl.models.space import SearchSpace, uniform
from trademl.models.uncertainty import ConformalQuantileRegressor, SplitConformalRegressor
from trademl.targets import model_factory
from trademl.tuning import SEARCH_SPACES, automl_kinds, tune

KIND = "test_quantile_level"


class QuantileLevel(BaseModel):
    """A constant forecast: the training mean (regression) or ``alpha`` quantile (quantile) of
    ``y``, pulled towards 0 by ``shrink``."""

    kind = KIND
    tasks = ("regression", "quantile")
    supports_quantile = True

    def __init__(
        self,
        task: str = "regression",
        alpha: float = 0.5,
        shrink: float = 0.0,
        random_state: int = 0,
    ) -> None:
        self.task = task
        self.alpha = alpha
        self.shrink = shrink
        self.random_state = random_state

    @classmethod
    def search_space(cls) -> SearchSpace:
        return {"shrink": uniform(0.0, 0.5)}

    def _fit(
        self, X: pd.DataFrame, y: pd.Series, eval_set: tuple[pd.DataFrame, pd.Series] | None
    ) -> None:
        values = y.to_numpy(dtype=np.float64)
        level = np.quantile(values, self.alpha) if self.task == "quantile" else values.mean()
        self.level_ = (1.0 - self.shrink) * float(level)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.level_)


class NoQuantileLevel(QuantileLevel):
    """The same model, declaring no quantile support and no search space."""

    kind = "test_no_quantile_level"
    supports_quantile = False

    @classmethod
    def search_space(cls) -> None:  # type: ignore[override]
        return None


@pytest.fixture
def registered() -> Iterator[None]:
    """The two test kinds in the model table for one test, then gone (other tests iterate
    over every registered kind)."""
    for cls in (QuantileLevel, NoQuantileLevel):
        MODELS.register(cls.kind)(cls)
    try:
        yield
    finally:
        for cls in (QuantileLevel, NoQuantileLevel):
            MODELS._entries.pop(cls.kind, None)  # the table offers no way to unregister


def run_config(output: Path, kind: str, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "data": {
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "start": "2023-01-01",
            "end": "2023-06-01",
        },
        "features": "minimal",
        "labels": {"kinds": ["max_high"], "horizons": [6]},
        "models": [{"kind": kind}],
        "validation": {
            "kind": "walk_forward",
            "params": {"test_size": 500, "n_splits": 2, "min_train_size": 1500},
        },
        "uncertainty": {"intervals": "none"},
        "output": str(output),
    }
    config.update(changes)
    return config


def test_a_kind_declaring_quantile_support_gets_cqr_intervals(
    registered: None, tmp_path: Path
) -> None:
    cfg = load_run_config(
        run_config(tmp_path, KIND, uncertainty={"intervals": "cqr", "alpha": 0.2})
    )
    model = model_factory(KIND, {}, "regression", cfg, gap=6)()
    assert isinstance(model, ConformalQuantileRegressor)
    assert (model.lower_model.task, model.upper_model.task) == ("quantile", "quantile")
    assert (model.lower_model.alpha, model.upper_model.alpha) == pytest.approx((0.1, 0.9))

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"f": rng.normal(size=1000)})
    y = pd.Series(rng.normal(size=1000))
    lower, upper = model.fit(X, y).predict_interval(X, 0.2)
    assert 0.75 <= float(np.mean((lower <= y) & (y <= upper))) <= 0.85

    # Without the declaration the same kind gets split-conformal intervals.
    other = model_factory("test_no_quantile_level", {}, "regression", cfg, gap=6)()
    assert isinstance(other, SplitConformalRegressor)


def test_a_kind_declaring_a_search_space_is_tuned_and_joins_automl(
    registered: None, cli, data_dir: Path, tmp_path: Path
) -> None:
    assert SEARCH_SPACES[KIND] == QuantileLevel.search_space()
    assert "test_no_quantile_level" not in SEARCH_SPACES
    assert KIND in automl_kinds() and "test_no_quantile_level" not in automl_kinds()

    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0
    result = tune(run_config(tmp_path / "out", KIND), trials=2)
    assert result.best_kind == KIND and result.n_complete == 2
    assert 0.0 <= result.best_params["shrink"] <= 0.5
    assert set(result.trials["kind"]) == {KIND}


def test_the_builtin_kinds_declare_what_the_kind_lists_used_to_say() -> None:
    classes = load_all_models()
    quantile = sorted(kind for kind, cls in classes.items() if cls.supports_quantile)
    assert quantile == ["lgbm", "xgb"]
    sequence = sorted(kind for kind, cls in classes.items() if cls.is_sequence)
    assert sequence == ["cnn_lstm", "gru", "lstm", "transformer"]
    exported = {kind: cls.onnx_export for kind, cls in classes.items() if cls.onnx_export}
    assert exported == {"lgbm": "tree", "xgb": "tree", **dict.fromkeys(sequence, "network")}
    assert automl_kinds() == ["lgbm", "xgb", *sequence]
    assert SEARCH_SPACES["naive"] == {} and "stacking" not in SEARCH_SPACES
    assert set(SEARCH_SPACES["gru"]) == {"seq_len", "hidden", "layers", "dropout", "lr", "epochs"}
