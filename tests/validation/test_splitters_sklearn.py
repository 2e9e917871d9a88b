"""The splitters as scikit-learn cross-validators: ``cv=`` of ``cross_val_predict``,
``cross_validate`` and ``GridSearchCV``, ``clone``, and ``split`` / ``get_n_splits`` over every
kind of ``X``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, cross_val_predict, cross_validate

from trademl.errors import ConfigError
from trademl.validation.panel import PanelSplitter, label_end_times
from trademl.validation.splitters import (
    CombinatorialPurgedCV,
    PurgedKFold,
    Splitter,
    WalkForward,
)

N_ROWS = 240


@pytest.fixture
def data() -> tuple[pd.DataFrame, pd.Series]:
    """A linear target with noise, rows indexed by hourly bars."""
    rng = np.random.default_rng(7)
    index = pd.date_range("2024-01-01", periods=N_ROWS, freq="h", tz="UTC")
    X = pd.DataFrame(rng.normal(size=(N_ROWS, 3)), columns=["a", "b", "c"], index=index)
    y = pd.Series(X @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.1, N_ROWS), index=index)
    return X, y


SPLITTERS: list[Splitter] = [
    WalkForward(test_size=30, horizon_bars=3, min_train_size=50, embargo_bars=2),
    WalkForward(test_size=30, horizon_bars=3, n_splits=2, train_size=60, min_train_size=60),
    PurgedKFold(n_splits=5, horizon_bars=4, embargo_bars=3),
    CombinatorialPurgedCV(n_groups=6, n_test_groups=2, horizon_bars=4, embargo_bars=3),
]
# Splitters that test every row exactly once, as cross_val_predict requires.
PARTITIONS: list[Splitter] = [
    PurgedKFold(n_splits=5, horizon_bars=4, embargo_bars=3),
    CombinatorialPurgedCV(n_groups=4, n_test_groups=1, horizon_bars=2),
]


def _ids(splitters: list[Splitter]) -> list[str]:
    return [f"{splitter.name}{number}" for number, splitter in enumerate(splitters)]


def _folds(splitter: object, X: object) -> list[tuple[list[int], list[int]]]:
    return [(train.tolist(), test.tolist()) for train, test in splitter.split(X)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("splitter", PARTITIONS, ids=_ids(PARTITIONS))
def test_cross_val_predict_with_a_purged_splitter_and_its_clone(
    splitter: Splitter, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = data
    predicted = cross_val_predict(Ridge(alpha=1.0), X, y, cv=splitter)
    # The same by hand: each test block predicted by a model fitted on its purged training rows.
    expected = np.empty(len(y))
    for train, test in splitter.split(X):
        expected[test] = Ridge(alpha=1.0).fit(X.iloc[train], y.iloc[train]).predict(X.iloc[test])
    np.testing.assert_allclose(predicted, expected)
    copy = clone(splitter)
    assert copy == splitter and copy is not splitter
    np.testing.assert_allclose(cross_val_predict(Ridge(alpha=1.0), X, y, cv=copy), predicted)


@pytest.mark.parametrize(
    "splitter",
    [SPLITTERS[0], SPLITTERS[3]],
    ids=["walk_forward", "cpcv"],
)
def test_cross_val_predict_refuses_splitters_that_are_not_a_partition(
    splitter: Splitter, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    # Walk-forward never tests the first rows; CPCV with 2 test groups tests each row 5 times.
    X, y = data
    with pytest.raises(ValueError, match="partition"):
        cross_val_predict(Ridge(), X, y, cv=splitter)


@pytest.mark.parametrize("splitter", SPLITTERS, ids=_ids(SPLITTERS))
def test_cross_validate_uses_our_folds(
    splitter: Splitter, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = data
    result = cross_validate(Ridge(), X, y, cv=splitter, return_indices=True)
    n_folds = splitter.get_n_splits(X)
    assert len(result["test_score"]) == n_folds == len(list(splitter.split(X)))
    got = list(zip(result["indices"]["train"], result["indices"]["test"], strict=True))
    assert [(a.tolist(), b.tolist()) for a, b in got] == _folds(splitter, X)
    assert np.all(result["test_score"] > 0.9)


def test_grid_search_with_a_purged_kfold(data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = data
    splitter = PurgedKFold(n_splits=4, horizon_bars=2, embargo_bars=1)
    search = GridSearchCV(Ridge(), {"alpha": [0.1, 10.0]}, cv=splitter).fit(X, y)
    assert search.n_splits_ == splitter.get_n_splits(X) == 4
    assert search.best_params_ == {"alpha": 0.1}


@pytest.mark.parametrize("splitter", SPLITTERS, ids=_ids(SPLITTERS))
def test_every_kind_of_x_gives_the_same_folds(
    splitter: Splitter, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = data
    expected = _folds(splitter, N_ROWS)
    for rows in (X, X.to_numpy(), X["a"], list(range(N_ROWS)), np.int64(N_ROWS)):
        assert _folds(splitter, rows) == expected
        assert splitter.get_n_splits(rows) == len(expected) == len(splitter.describe(rows))
    # y and groups are accepted and ignored, by position or by name.
    assert _folds_with(splitter, X) == expected


def _folds_with(splitter: Splitter, X: pd.DataFrame) -> list[tuple[list[int], list[int]]]:
    folds = splitter.split(X, np.zeros(len(X)), groups=np.arange(len(X)))
    return [(train.tolist(), test.tolist()) for train, test in folds]


def test_get_n_splits_without_x() -> None:
    assert PurgedKFold(n_splits=7).get_n_splits() == 7
    assert CombinatorialPurgedCV(n_groups=6, n_test_groups=2).get_n_splits() == 15
    assert WalkForward(test_size=10, n_splits=3).get_n_splits() == 3
    with pytest.raises(ConfigError, match="without n_splits the number of folds depends on"):
        WalkForward(test_size=10).get_n_splits()
    # The parameters are still checked.
    with pytest.raises(ConfigError, match="n_splits must be >= 2, got 1"):
        PurgedKFold(n_splits=1).get_n_splits()
    with pytest.raises(ConfigError, match="n_test_groups must be smaller than n_groups"):
        CombinatorialPurgedCV(n_groups=3, n_test_groups=3).get_n_splits()
    with pytest.raises(ConfigError, match="step 3 is smaller than test_size 5"):
        WalkForward(test_size=5, step=3, n_splits=2).get_n_splits()


@pytest.mark.parametrize("bad", [object(), 3.5, True, None])
def test_an_x_without_rows_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"purged_kfold: X must be the data to split .* got"):
        PurgedKFold().split(bad)


@pytest.mark.parametrize("splitter", SPLITTERS, ids=_ids(SPLITTERS))
def test_get_params_and_clone(splitter: Splitter) -> None:
    params = splitter.get_params()
    assert type(splitter)(**params) == splitter
    assert clone(splitter) == splitter


def _panel() -> tuple[PanelSplitter, pd.DataFrame]:
    times = pd.date_range("2024-01-01", periods=40, freq="h", tz="UTC")
    ends = pd.DatetimeIndex(np.repeat(label_end_times(times, 2), 2))
    panel = PanelSplitter(
        PurgedKFold(n_splits=4, horizon_bars=2),
        times.repeat(2),
        ends,
        pd.Index(["A", "B"] * 40),
    )
    rng = np.random.default_rng(1)
    rows = pd.DataFrame(rng.normal(size=(80, 2)), columns=["a", "b"])
    return panel, rows


def test_panel_splitter_as_a_cross_validator() -> None:
    panel, rows = _panel()
    y = rows["a"] * 2.0
    assert panel.get_n_splits() == panel.get_n_splits(rows) == 4
    assert _folds(panel, rows) == _folds(panel, 80)
    # Every symbol's rows of a test block are tested together, every row once.
    predicted = cross_val_predict(Ridge(), rows, y, cv=panel)
    assert predicted.shape == (80,)
    copy = clone(panel)
    assert copy is not panel and copy.base == panel.base
    assert _folds(copy, rows) == _folds(panel, rows)
    assert panel.get_params()["base__n_splits"] == 4
    with pytest.raises(ConfigError, match="panel splitter: 79 rows, but 80 timestamps"):
        panel.split(rows.iloc[1:])
