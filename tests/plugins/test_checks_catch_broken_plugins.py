"""Each conformance check fails for a plug-in that breaks its promise: the checks are real."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.plugins.example import require_example_plugin

from trademl.backtest.signals import Signals
from trademl.backtest.strategies import signals_from_arrays
from trademl.backtest.strategy_table import Strategy
from trademl.data.candles import with_meta
from trademl.data.sources.base import clip_range
from trademl.data.stores import open_store
from trademl.data.stores.base import Batch
from trademl.features.indicators import Bars, Indicator, Param
from trademl.models.naive import NaiveModel
from trademl.testing import (
    CausalityError,
    ConformanceError,
    SourceCase,
    StartInvarianceError,
    StoreCase,
    check_indicator,
    check_model,
    check_source,
    check_store,
    check_strategy,
    checks_for,
    parametrize_with_checks,
    sample_candles,
)
from trademl.testing.models import check_interval

# -- indicators --------------------------------------------------------------------------------


def indicator(compute: Any, **changes: Any) -> Indicator:
    fields: dict[str, Any] = {
        "name": "broken",
        "family": "price",
        "compute": compute,
        "warmup": lambda params: 4,
        "params": (Param("window", 5, low=1),),
    }
    return Indicator(**{**fields, **changes})


def mean_of(values: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(values).rolling(window).mean().to_numpy()


def test_a_correct_indicator_passes() -> None:
    check_indicator(indicator(lambda bars, p: {"": mean_of(bars.close, p["window"])}))


def test_a_peek_at_the_next_bar_is_caught() -> None:
    leaky = indicator(lambda bars, p: {"": mean_of(np.roll(bars.close, -1), p["window"])})
    with pytest.raises(CausalityError, match=r"broken: column 'broken_5' .* changed"):
        check_indicator(leaky)


def test_a_running_total_declared_start_invariant_is_caught() -> None:
    running = indicator(lambda bars, p: {"": np.cumsum(bars.volume)})
    with pytest.raises(
        StartInvarianceError, match=r"from the full history but .* from the later start"
    ):
        check_indicator(running)


def test_an_indicator_never_defined_is_caught() -> None:
    empty = indicator(lambda bars, p: {"": np.full(len(bars), np.nan)})
    with pytest.raises(ConformanceError, match="never defined after its warm-up"):
        check_indicator(empty)


# -- models ------------------------------------------------------------------------------------


class ShortPredictions(NaiveModel):
    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return super().predict(X)[:-1]


class BusyConstructor(NaiveModel):
    def __init__(self, task: str = "regression", strategy: Any = "mean") -> None:
        super().__init__(task=task, strategy=strategy)
        self.checked_ = True


class FillsNaNTargets(NaiveModel):
    def fit(self, X: pd.DataFrame, y: pd.Series, **kwargs: Any) -> FillsNaNTargets:
        return super().fit(X, y.fillna(0.0), **kwargs)  # type: ignore[return-value]


class ForgetsOnLoad(NaiveModel):
    def _after_load(self, folder: Any) -> None:
        self.constant_ = 0.0


class OddProbabilities(NaiveModel):
    def predict(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        return np.ones(len(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        up = np.full(len(X), 1.5)
        return np.column_stack([1.0 - up, up])  # rows sum to 1, yet P(up) > 1


class IgnoresItsTask(NaiveModel):
    tasks = ("regression",)

    def fit(self, X: pd.DataFrame, y: pd.Series, **kwargs: Any) -> IgnoresItsTask:
        task, self.task = self.task, "regression"
        try:
            return super().fit(X, y, **kwargs)  # type: ignore[return-value]
        finally:
            self.task = task


class InvertedInterval(NaiveModel):
    def predict_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        lower, upper = super().predict_interval(X, alpha)
        return upper, lower


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (ShortPredictions(), r"naive\[regression\]: predict gave \(119,\), expected"),
        (BusyConstructor(), "stored .*checked_.*as given"),
        (FillsNaNTargets(), "must refuse a y holding NaN"),
        (ForgetsOnLoad(), "saved and loaded model predicts differently"),
        (OddProbabilities(task="classification"), r"probabilities in \[0, 1\]"),
        (IgnoresItsTask(), "task 'classification' is not in tasks .* but fit accepted it"),
        (InvertedInterval(), "lower <= upper"),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, str) else "",
)
def test_a_broken_model_fails_its_check(model: NaiveModel, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_model(model)


def test_the_interval_check_runs_only_where_intervals_are_declared() -> None:
    names = {check.__name__ for check in checks_for(NaiveModel())}
    assert check_interval.__name__ in names  # supports_interval, regression
    assert check_interval.__name__ not in {
        check.__name__ for check in checks_for(NaiveModel(task="classification"))
    }
    from trademl.models.gbm import LGBMModel

    assert check_interval.__name__ not in {check.__name__ for check in checks_for(LGBMModel())}


# -- sources -----------------------------------------------------------------------------------


class FrameSource:
    """Serves one frame; ``mistake`` breaks it in one way."""

    name = "frame"

    def __init__(self, candles: pd.DataFrame, mistake: str = "") -> None:
        self.candles = candles
        self.mistake = mistake

    def fetch(
        self, symbol: str, timeframe: Any, start: Any = None, end: Any = None
    ) -> pd.DataFrame:
        frame = (
            self.candles.copy()
            if self.mistake == "no_clip"
            else clip_range(self.candles, start, end).copy()
        )
        if self.mistake == "shifted":
            frame.index = frame.index + pd.Timedelta(minutes=7)
        if self.mistake == "empty_frame":
            frame = frame.iloc[:0]
        if self.mistake == "no_attrs":
            frame.attrs = {}
            return frame
        return with_meta(frame, symbol=symbol, timeframe="1h")


def source_case(mistake: str = "") -> SourceCase:
    candles = sample_candles(100)
    start, end = candles.index[10], candles.index[60]
    return SourceCase(
        FrameSource(candles, mistake),
        "TEST",
        "1h",
        start,
        end,
        expected=candles,
        empty=(pd.Timestamp("1990-01-01", tz="UTC"), pd.Timestamp("1990-01-02", tz="UTC")),
    )


def test_a_correct_source_passes_but_for_the_empty_range() -> None:
    with pytest.raises(ConformanceError, match="empty range returned 0 rows instead of raising"):
        check_source(source_case())


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("no_clip", r"leave \["),
        ("shifted", "not 1h bar starts|differ"),
        ("no_attrs", "attrs .* must name the symbol"),
        ("empty_frame", "broke the Candles contract.*no rows"),
    ],
)
def test_a_broken_source_fails_its_check(mistake: str, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_source(source_case(mistake))


# -- stores ------------------------------------------------------------------------------------


def memory_case(broken: type) -> StoreCase:
    require_example_plugin()
    from trademl_example.store import MemoryStore

    store_class = type(broken.__name__, (broken, MemoryStore), {})

    def opener() -> Any:
        return store_class(f"examplemem://{uuid.uuid4().hex}")

    return StoreCase(broken.__name__, opener)


class LosesTheLastRow:
    def _upsert_chunk(self, transaction: Any, batch: Batch, chunk: pd.DataFrame) -> Any:
        return super()._upsert_chunk(transaction, batch, chunk.iloc[:-1])  # type: ignore[misc]


class ClosedRange:
    def read(self, symbol: str, timeframe: str, start: Any = None, end: Any = None) -> Any:
        stop = None if end is None else end + pd.Timedelta(seconds=1)
        return super().read(symbol, timeframe, start, stop)  # type: ignore[misc]


class CountsNothing:
    def _upsert_chunk(self, transaction: Any, batch: Batch, chunk: pd.DataFrame) -> Any:
        super()._upsert_chunk(transaction, batch, chunk)  # type: ignore[misc]
        return 0, 0


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (LosesTheLastRow, "first write reported"),
        (ClosedRange, r"must give \[start, end\) exactly"),
        (CountsNothing, "first write reported"),
    ],
)
def test_a_broken_store_fails_its_check(broken: type, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_store(memory_case(broken))


def test_a_correct_store_passes(tmp_path: Any) -> None:
    names = iter(range(10))
    check_store(StoreCase("duckdb", lambda: open_store(f"duckdb:///{tmp_path}/{next(names)}.db")))


# -- strategies --------------------------------------------------------------------------------


def follow(candles: pd.DataFrame, p_up: pd.Series, *, edge: float = 0.05) -> Signals:
    p = p_up.reindex(candles.index).to_numpy()
    side = np.where(p > 0.5 + edge, 1, np.where(p < 0.5 - edge, -1, 0))
    return signals_from_arrays(pd.DatetimeIndex(candles.index), side)


def peek(candles: pd.DataFrame, p_up: pd.Series, *, edge: float = 0.05) -> Signals:
    return follow(candles, p_up.shift(-1).fillna(0.5), edge=edge)


def ignore_gaps(candles: pd.DataFrame, p_up: pd.Series, *, edge: float = 0.05) -> Signals:
    return follow(candles, p_up.fillna(1.0), edge=edge)


def never(candles: pd.DataFrame, p_up: pd.Series) -> Signals:
    return Signals.empty(pd.DatetimeIndex(candles.index))


def bad_preset(candles: pd.DataFrame, p_up: pd.Series, *, edge: float = 0.05) -> Signals:
    return follow(candles, p_up, edge=edge)


@pytest.mark.parametrize(
    ("function", "presets", "message"),
    [
        (peek, {}, "looks ahead"),
        (ignore_gaps, {}, "traded on bars without a prediction"),
        (never, {}, "no trade at all"),
        (bad_preset, {"conservative": {"threshold": 0.6}}, "preset 'conservative' fails"),
    ],
)
def test_a_broken_strategy_fails_its_check(
    function: Any, presets: Mapping[str, Mapping[str, Any]], message: str
) -> None:
    strategy = Strategy("broken", function, needs=("direction",), presets=presets)
    with pytest.raises(ConformanceError, match=message):
        check_strategy(strategy)
    check_strategy(Strategy("fine", follow, needs=("direction",), presets={"a": {"edge": 0.1}}))


# -- the harness -------------------------------------------------------------------------------


def test_trademl_testing_does_not_import_pytest() -> None:
    code = "import sys, trademl.testing; print('pytest' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_parametrize_with_checks_pairs_each_plugin_with_its_checks() -> None:
    mark = parametrize_with_checks([NaiveModel(), NaiveModel(task="classification")])
    names, params = mark.args
    assert names == ("plugin", "check")
    ids = [p.id for p in params]
    assert "naive[regression]-check_interval" in ids
    assert "naive[classification]-check_fit_predict" in ids
    assert "naive[classification]-check_interval" not in ids
    with pytest.raises(TypeError, match="not a plug-in trademl can check"):
        parametrize_with_checks([object()])  # type: ignore[list-item]


def test_bars_are_copies() -> None:
    """Indicators get copies of the candles' arrays, so a check's inputs stay unchanged."""
    candles = sample_candles(10)
    Bars.from_candles(candles).close[:] = 0.0
    assert (candles["close"] > 0).all()
