"""Splitters: exact folds on constructed cases, purge/embargo properties over random parameters,
CPCV combinatorics and paths, the name table and the error messages."""

from __future__ import annotations

import doctest
import itertools
import math
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trademl.validation.splitters as splitters_module
from trademl.errors import ConfigError, UnknownPluginError
from trademl.validation.splitters import (
    SPLITTERS,
    CombinatorialPurgedCV,
    PurgedKFold,
    Splitter,
    WalkForward,
    make_splitter,
)


def folds(splitter: Splitter, n_rows: int) -> list[tuple[list[int], list[int]]]:
    return [(train.tolist(), test.tolist()) for train, test in splitter.split(n_rows)]


def blocks_of(test: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of sorted positions, as (first, last)."""
    cuts = np.flatnonzero(np.diff(test) != 1) + 1
    return [(int(run[0]), int(run[-1])) for run in np.split(test, cuts)]


def overlaps(i: int, t: int, h: int) -> bool:
    """Label windows [i, i+h] and [t, t+h] intersect."""
    return i <= t + h and t <= i + h


def expected_train(n: int, test: np.ndarray, h: int, embargo: int) -> list[int]:
    """Brute-force oracle: every row that is not tested, not purged and not embargoed."""
    tested = set(test.tolist())
    embargoed = {
        row for _, end in blocks_of(test) for row in range(end + h + 1, end + h + embargo + 1)
    }
    return [
        i
        for i in range(n)
        if i not in tested and not any(overlaps(i, t, h) for t in tested) and i not in embargoed
    ]


def assert_no_label_overlap(train: np.ndarray, test: np.ndarray, h: int) -> None:
    """No training row's label window [i, i+h] meets any test row's window [t, t+h]."""
    assert len(np.intersect1d(train, test)) == 0
    # Nearest test row on each side of every training row.
    right = np.searchsorted(test, train)
    after = test[np.minimum(right, len(test) - 1)]
    before = test[np.maximum(right - 1, 0)]
    distance = np.minimum(np.abs(after - train), np.abs(train - before))
    assert (distance > h).all(), train[distance <= h]


def assert_positions(train: np.ndarray, test: np.ndarray, n: int) -> None:
    for positions in (train, test):
        assert positions.dtype == np.int64
        assert len(positions) > 0
        assert (np.diff(positions) > 0).all()
        assert positions[0] >= 0 and positions[-1] < n


# -- walk-forward ------------------------------------------------------------------------------


def test_walk_forward_exact_folds_and_purge() -> None:
    splitter = WalkForward(test_size=5, horizon_bars=2, min_train_size=5)
    assert folds(splitter, 20) == [
        (list(range(0, 8)), list(range(10, 15))),
        (list(range(0, 13)), list(range(15, 20))),
    ]
    for train, test in splitter.split(20):
        start = int(test[0])
        # Exactly the two rows whose labels reach into the test block are purged.
        missing = sorted(set(range(start)) - set(train.tolist()))
        assert missing == [start - 2, start - 1]
        assert train[-1] + 2 == start - 1  # i + h >= test_start is dropped, i + h < it is kept


def test_walk_forward_test_blocks_tile_the_end() -> None:
    splitter = WalkForward(test_size=10, horizon_bars=3, min_train_size=20)
    tests = [test for _, test in splitter.split(97)]
    assert tests[-1][-1] == 96
    assert np.array_equal(np.concatenate(tests), np.arange(97 - 10 * len(tests), 97))
    assert splitter.get_n_splits(97) == len(tests) == (97 - 20 - 3 - 10) // 10 + 1


def test_walk_forward_expanding_vs_rolling_sizes() -> None:
    expanding = WalkForward(test_size=10, horizon_bars=4, min_train_size=30)
    rolling = WalkForward(test_size=10, horizon_bars=4, min_train_size=30, train_size=30)
    expanding_sizes = [len(train) for train, _ in expanding.split(100)]
    assert all(train[0] == 0 for train, _ in expanding.split(100))
    assert np.all(np.diff(expanding_sizes) == 10)
    rolling_folds = list(rolling.split(100))
    assert [len(train) for train, _ in rolling_folds] == [30] * len(rolling_folds)
    for (train, test), (wide, same_test) in zip(rolling_folds, expanding.split(100), strict=True):
        assert np.array_equal(test, same_test)
        assert np.array_equal(train, wide[-30:])  # the most recent rows before the purge


def test_walk_forward_n_splits_picks_the_last_folds() -> None:
    every = WalkForward(test_size=7, horizon_bars=2, min_train_size=10)
    last3 = WalkForward(test_size=7, horizon_bars=2, min_train_size=10, n_splits=3)
    all_folds = folds(every, 80)
    assert len(all_folds) > 3
    assert folds(last3, 80) == all_folds[-3:]
    assert last3.get_n_splits(80) == 3


def test_walk_forward_step_and_embargo() -> None:
    splitter = WalkForward(test_size=3, horizon_bars=1, step=5, min_train_size=4, embargo_bars=2)
    assert folds(splitter, 20) == [
        ([0, 1, 2, 3], [7, 8, 9]),
        (list(range(0, 9)), [12, 13, 14]),
        (list(range(0, 14)), [17, 18, 19]),
    ]
    described = splitter.describe(20)
    ends = [(row["test_start"], row["test_end"]) for row in described]
    assert ends == [(7, 9), (12, 14), (17, 19)]
    for row in described:
        # embargo 2 + purge 1 rows between training and test
        assert row["train_end"] == row["test_start"] - 1 - 1 - 2
        assert (row["purged"], row["embargoed"]) == (1, 2)


def test_walk_forward_describe() -> None:
    splitter = WalkForward(test_size=5, horizon_bars=2, min_train_size=5, train_size=6)
    assert splitter.describe(20) == [
        {
            "fold": 0,
            "train_start": 2,
            "train_end": 7,
            "train_size": 6,
            "test_start": 10,
            "test_end": 14,
            "test_size": 5,
            "purged": 2,
            "embargoed": 0,
        },
        {
            "fold": 1,
            "train_start": 7,
            "train_end": 12,
            "train_size": 6,
            "test_start": 15,
            "test_end": 19,
            "test_size": 5,
            "purged": 2,
            "embargoed": 0,
        },
    ]


def test_walk_forward_too_little_data_names_the_numbers() -> None:
    splitter = WalkForward(test_size=120, horizon_bars=20, n_splits=4)
    message = (
        "walk_forward needs at least 600 rows (min_train_size 100 + horizon 20 purge "
        "+ 4 folds × test_size 120), got 450"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        splitter.split(450)
    with pytest.raises(ConfigError, match="needs at least 600 rows"):
        splitter.get_n_splits(599)
    assert splitter.get_n_splits(600) == 4


def test_walk_forward_too_little_data_with_step_embargo_and_window() -> None:
    splitter = WalkForward(test_size=10, horizon_bars=5, step=20, n_splits=3, embargo_bars=2)
    with pytest.raises(ConfigError, match=r"needs at least 157 rows .*embargo 2.*2 × step 20"):
        splitter.split(100)
    assert splitter.get_n_splits(157) == 3
    rolling = WalkForward(test_size=10, horizon_bars=5, train_size=200)
    with pytest.raises(ConfigError, match=r"215 rows \(train_size 200 \+ horizon 5 purge"):
        rolling.split(214)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"test_size": 0}, "test_size must be >= 1, got 0"),
        ({"test_size": -5}, "test_size must be >= 1, got -5"),
        ({"test_size": 5, "horizon_bars": 0}, "horizon_bars must be >= 1, got 0"),
        ({"test_size": 5, "embargo_bars": -1}, "embargo_bars must be >= 0, got -1"),
        ({"test_size": 5, "min_train_size": 0}, "min_train_size must be >= 1"),
        ({"test_size": 5, "n_splits": 0}, "n_splits must be >= 1"),
        ({"test_size": 5, "step": 0}, "step must be >= 1"),
        ({"test_size": 5, "step": 3}, "step 3 is smaller than test_size 5"),
        ({"test_size": 5, "train_size": 50}, "train_size 50 is below min_train_size 100"),
        ({"test_size": 5.0}, "test_size must be an integer"),
        ({"test_size": True}, "test_size must be an integer"),
    ],
)
def test_walk_forward_bad_parameters(params: dict[str, object], match: str) -> None:
    splitter = WalkForward(**params)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=match):
        splitter.split(10_000)
    with pytest.raises(ConfigError, match=match):
        splitter.get_n_splits(10_000)


def test_split_raises_before_iteration() -> None:
    with pytest.raises(ConfigError, match="n_rows must be >= 0"):
        WalkForward(test_size=5).split(-1)


# -- purged k-fold -----------------------------------------------------------------------------


def test_purged_kfold_exact_purge_and_embargo() -> None:
    splitter = PurgedKFold(n_splits=3, horizon_bars=2, embargo_bars=3)
    assert folds(splitter, 30) == [
        (list(range(15, 30)), list(range(0, 10))),  # purge 10, 11; embargo 12, 13, 14
        ([*range(0, 8), *range(25, 30)], list(range(10, 20))),  # purge 8, 9, 20, 21; emb 22-24
        (list(range(0, 18)), list(range(20, 30))),  # purge 18, 19; nothing after the data
    ]
    assert [(row["purged"], row["embargoed"]) for row in splitter.describe(30)] == [
        (2, 3),
        (4, 3),
        (2, 0),
    ]


def test_purged_kfold_without_embargo_and_uneven_folds() -> None:
    splitter = PurgedKFold(n_splits=3, horizon_bars=1)
    tests = [test for _, test in splitter.split(11)]
    assert [t.tolist() for t in tests] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert folds(splitter, 11)[1][0] == [0, 1, 2, 9, 10]


def test_purged_kfold_errors() -> None:
    with pytest.raises(ConfigError, match="n_splits must be >= 2, got 1"):
        PurgedKFold(n_splits=1).split(100)
    with pytest.raises(ConfigError, match=r"purged_kfold needs at least 5 rows .*got 4"):
        PurgedKFold(n_splits=5).split(4)
    with pytest.raises(
        ConfigError, match=r"fold 2 of 3 \(test rows 4–7\) leaves no training rows.*got 12 rows"
    ):
        PurgedKFold(n_splits=3, horizon_bars=4).split(12)
    with pytest.raises(ConfigError, match="embargo_bars must be >= 0"):
        PurgedKFold(embargo_bars=-2).get_n_splits(100)


# -- CPCV --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_groups", "k"), [(6, 2), (5, 1), (7, 3), (4, 3), (8, 4)])
def test_cpcv_combinatorics_and_paths(n_groups: int, k: int) -> None:
    cv = CombinatorialPurgedCV(n_groups=n_groups, n_test_groups=k, horizon_bars=2, embargo_bars=1)
    n = 200
    splits = list(cv.split(n))
    assert len(splits) == cv.get_n_splits(n) == math.comb(n_groups, k)
    bounds = cv.group_bounds(n)
    assert bounds[0][0] == 0 and bounds[-1][1] == n - 1
    groups_of = cv.test_groups()
    times_tested = Counter(group for groups in groups_of for group in groups)
    assert times_tested == dict.fromkeys(range(n_groups), math.comb(n_groups - 1, k - 1))
    for (train, test), groups in zip(splits, groups_of, strict=True):
        expected_test = np.concatenate([np.arange(bounds[g][0], bounds[g][1] + 1) for g in groups])
        assert np.array_equal(test, expected_test)
        assert train.tolist() == expected_train(n, test, 2, 1)

    paths = cv.paths()
    assert len(paths) == cv.n_paths() == math.comb(n_groups, k) * k // n_groups
    used: Counter[tuple[int, int]] = Counter()
    for path in paths:
        assert [group for group, _ in path] == list(range(n_groups))  # every group once
        for group, split in path:
            assert group in groups_of[split]  # that split really tests that group
            used[(split, group)] += 1
    # every (split, tested group) pair lies on exactly one path
    assert used == {(s, g): 1 for s, groups in enumerate(groups_of) for g in groups}


def test_cpcv_adjacent_test_groups_form_one_block() -> None:
    cv = CombinatorialPurgedCV(n_groups=4, n_test_groups=2, horizon_bars=1, embargo_bars=1)
    described = cv.describe(12)
    assert [row["test_groups"] for row in described] == [list(g) for g in cv.test_groups()]
    first = dict(zip(cv.test_groups(), folds(cv, 12), strict=True))
    # groups 0 and 1 (rows 0-5): one block, purge 6, embargo 7
    assert first[(0, 1)] == ([8, 9, 10, 11], [0, 1, 2, 3, 4, 5])
    # groups 0 and 2 (rows 0-2, 6-8): purge 3, 5, 9; embargo 4, 10
    assert first[(0, 2)] == ([11], [0, 1, 2, 6, 7, 8])
    assert described[1]["purged"] == 3 and described[1]["embargoed"] == 2


def test_cpcv_errors() -> None:
    with pytest.raises(ConfigError, match="n_test_groups must be smaller than n_groups"):
        CombinatorialPurgedCV(n_groups=4, n_test_groups=4).split(100)
    with pytest.raises(ConfigError, match="n_test_groups must be smaller than n_groups"):
        CombinatorialPurgedCV(n_groups=3, n_test_groups=5).paths()
    with pytest.raises(ConfigError, match="n_test_groups must be >= 1, got 0"):
        CombinatorialPurgedCV(n_test_groups=0).get_n_splits(100)
    with pytest.raises(ConfigError, match="n_groups must be >= 2"):
        CombinatorialPurgedCV(n_groups=1, n_test_groups=1).split(100)
    with pytest.raises(ConfigError, match=r"cpcv needs at least 6 rows .*got 5"):
        CombinatorialPurgedCV().split(5)
    with pytest.raises(ConfigError, match=r"testing groups \[0, 2\] leaves no training rows"):
        CombinatorialPurgedCV(n_groups=4, n_test_groups=2, horizon_bars=3).split(8)


# -- properties over random parameters --------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 300),
    h=st.integers(1, 25),
    embargo=st.integers(0, 15),
    test_size=st.integers(1, 40),
    extra_step=st.integers(0, 10),
    min_train=st.integers(1, 60),
    window=st.one_of(st.none(), st.integers(0, 40)),
    n_splits=st.one_of(st.none(), st.integers(1, 6)),
)
def test_walk_forward_properties(
    n: int,
    h: int,
    embargo: int,
    test_size: int,
    extra_step: int,
    min_train: int,
    window: int | None,
    n_splits: int | None,
) -> None:
    train_size = None if window is None else min_train + window
    step = test_size + extra_step
    splitter = WalkForward(test_size, h, train_size, step, n_splits, min_train, embargo)
    need = (train_size or min_train) + h + embargo + test_size + ((n_splits or 1) - 1) * step
    if n < need:
        with pytest.raises(ConfigError, match=f"needs at least {need} rows"):
            splitter.split(n)
        return
    result = list(splitter.split(n))
    assert len(result) == splitter.get_n_splits(n) == len(splitter.describe(n))
    if n_splits is not None:
        assert len(result) == n_splits
    assert result[-1][1][-1] == n - 1
    for train, test in result:
        assert_positions(train, test, n)
        assert_no_label_overlap(train, test, h)
        assert train[-1] == test[0] - h - embargo - 1  # purge and gap exact, nothing more
        assert np.array_equal(test, np.arange(test[0], test[0] + test_size))
        assert len(train) == (train_size or test[0] - h - embargo)
        assert len(train) >= min_train


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 250),
    h=st.integers(1, 20),
    embargo=st.integers(0, 15),
    cv=st.sampled_from(["kfold", "cpcv"]),
    n_folds=st.integers(2, 7),
    k=st.integers(1, 6),
)
def test_purged_cv_properties(n: int, h: int, embargo: int, cv: str, n_folds: int, k: int) -> None:
    splitter: Splitter
    if cv == "kfold":
        splitter = PurgedKFold(n_folds, h, embargo)
    else:
        k = min(k, n_folds - 1)
        splitter = CombinatorialPurgedCV(n_folds, k, h, embargo)
    if n < n_folds:
        with pytest.raises(ConfigError, match=f"needs at least {n_folds} rows"):
            splitter.split(n)
        return
    groups = np.array_split(np.arange(n), n_folds)
    combos = (
        [(g,) for g in range(n_folds)]
        if cv == "kfold"
        else itertools.combinations(range(n_folds), k)
    )
    tests = [np.concatenate([groups[g] for g in combo]) for combo in combos]
    if any(not expected_train(n, test, h, embargo) for test in tests):
        with pytest.raises(ConfigError, match="leaves no training rows"):
            splitter.split(n)
        return
    result = list(splitter.split(n))
    assert [test.tolist() for _, test in result] == [test.tolist() for test in tests]
    assert len(result) == splitter.get_n_splits(n)
    tested = np.zeros(n, dtype=int)
    for (train, test), row in zip(result, splitter.describe(n), strict=True):
        assert_positions(train, test, n)
        assert_no_label_overlap(train, test, h)
        # nothing is dropped beyond the purge and the embargo
        assert train.tolist() == expected_train(n, test, h, embargo)
        assert row["train_size"] + row["test_size"] + row["purged"] + row["embargoed"] == n
        for _, end in blocks_of(test):
            embargoed = np.arange(end + h + 1, min(end + h + embargo, n - 1) + 1)
            assert len(np.intersect1d(train, embargoed)) == 0
        tested[test] += 1
    expected_times = 1 if cv == "kfold" else math.comb(n_folds - 1, k - 1)
    assert (tested == expected_times).all()


# -- the name table ----------------------------------------------------------------------------


def test_splitter_table() -> None:
    assert SPLITTERS.names() == ["cpcv", "purged_kfold", "walk_forward"]
    assert SPLITTERS.get("walk_forward") is WalkForward
    assert SPLITTERS.get("purged_kfold") is PurgedKFold
    assert SPLITTERS.get("cpcv") is CombinatorialPurgedCV


def test_make_splitter_builds_with_the_label_horizon() -> None:
    splitter = make_splitter("cpcv", {"n_groups": 5, "embargo_bars": 2}, horizon_bars=7)
    assert splitter == CombinatorialPurgedCV(n_groups=5, horizon_bars=7, embargo_bars=2)
    assert make_splitter("purged_kfold", {}, 3) == PurgedKFold(horizon_bars=3)
    walk = make_splitter("walk_forward", {"test_size": 10, "train_size": 200}, 4)
    assert walk == WalkForward(test_size=10, train_size=200, horizon_bars=4)


def test_make_splitter_rejects_unknown_kinds_and_params() -> None:
    with pytest.raises(UnknownPluginError, match=r"unknown splitter 'walkforward'.*walk_forward"):
        make_splitter("walkforward", {}, 1)
    with pytest.raises(ConfigError, match="known: cpcv, purged_kfold, walk_forward"):
        make_splitter("kfold", {}, 1)
    with pytest.raises(
        ConfigError,
        match=r"unknown parameter\(s\) folds \(valid: n_splits, embargo_bars\)",
    ):
        make_splitter("purged_kfold", {"folds": 5}, 1)
    with pytest.raises(ConfigError, match="horizon_bars comes from the labels"):
        make_splitter("cpcv", {"horizon_bars": 5}, 1)
    with pytest.raises(ConfigError, match="valid: test_size, train_size, step, n_splits"):
        make_splitter("walk_forward", {"test_size": 5, "gap": 3}, 1)
    # A config without its validation section: a clear error, not the constructor's TypeError.
    with pytest.raises(ConfigError, match=r"'walk_forward': missing parameter\(s\) test_size"):
        make_splitter("walk_forward", {}, 1)


def test_docstring_examples() -> None:
    result = doctest.testmod(splitters_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_itertools_order_of_splits() -> None:
    cv = CombinatorialPurgedCV(n_groups=5, n_test_groups=2)
    assert cv.test_groups() == list(itertools.combinations(range(5), 2))
