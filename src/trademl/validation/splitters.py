"""Splitters that know the label horizon: walk-forward, purged k-fold and combinatorial purged CV.

Rows are consecutive bars in time order and every splitter works on positions ``0 … n_rows-1``.
The label of row ``i`` looks forward over bars ``i+1 … i+h`` (``h`` = ``horizon_bars``), so it
depends on bars ``i … i+h``: that closed interval ``[i, i+h]`` is the row's *label window*.

Purge
    A training row is dropped when its label window intersects the label window of any test row.
    For a contiguous test block ``[s, e]`` the test label windows cover ``[s, e+h]``, so a row
    ``i`` is purged when ``i + h >= s`` and ``i <= e + h``: the ``h`` rows just before the block
    (their labels reach into it) and the ``h`` rows just after it (their label windows start
    inside bars the test labels read).
Embargo
    After each test block, the ``embargo_bars`` rows that follow ``e + h`` are dropped as well,
    so features built from serially correlated bars do not carry the test period back into
    training. Walk-forward training never follows its test block, so there the embargo is an
    extra gap of ``embargo_bars`` rows *before* the purged rows instead.

Every splitter speaks scikit-learn's cross-validator protocol, so it can be the ``cv=`` of
``cross_validate``, ``cross_val_predict`` or ``GridSearchCV``: ``split(X, y=None, groups=None)``
yields ``(train_positions, test_positions)`` as sorted ``int64`` arrays and
``get_n_splits(X=None, y=None, groups=None)`` counts them; ``get_params`` makes it
``sklearn.base.clone``-able. ``X`` is the data (a DataFrame, an array: anything with
``shape[0]`` or ``len()``) or simply the number of rows as an int; ``y`` and ``groups`` are
ignored. ``describe(X)`` gives one dict per fold, for reports. Parameters are only stored by
the constructors; they are checked, together with the number of rows, by those methods, which
raise :class:`~trademl.errors.ConfigError`.

:class:`PurgedKFold` tests every row exactly once, as ``cross_val_predict`` requires; so does
:class:`CombinatorialPurgedCV` with ``n_test_groups=1``. :class:`WalkForward` never tests the
first rows and CPCV with more test groups tests each row several times: use them with
``cross_validate``.

>>> splitter = make_splitter("purged_kfold", {"n_splits": 4}, horizon_bars=1)
>>> X = np.zeros((8, 3))
>>> for train, test in splitter.split(X):
...     print(train.tolist(), test.tolist())
[3, 4, 5, 6, 7] [0, 1]
[0, 5, 6, 7] [2, 3]
[0, 1, 2, 7] [4, 5]
[0, 1, 2, 3, 4] [6, 7]
>>> splitter.get_n_splits(X)
4
"""

from __future__ import annotations

import inspect
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from trademl.errors import ConfigError
from trademl.plugins import PluginTable

Positions = npt.NDArray[np.int64]
Block = tuple[int, int]  # first and last position of a contiguous block, both inclusive

__all__ = [
    "SPLITTERS",
    "CombinatorialPurgedCV",
    "PurgedKFold",
    "Splitter",
    "WalkForward",
    "make_splitter",
    "n_rows_of",
]


@dataclass(frozen=True)
class _Fold:
    """One split, with the counts that reports show."""

    train: Positions
    test: Positions
    purged: int
    embargoed: int
    test_groups: tuple[int, ...] | None = None


def _check_int(owner: str, name: str, value: object, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``; a :class:`ConfigError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return int(value)


def n_rows_of(owner: str, X: object) -> int:
    """The number of rows of a splitter's ``X``: ``X.shape[0]``, ``len(X)``, or ``X`` itself
    when it is an int (a count of rows, checked to be >= 0).

    Raises
    ------
    ConfigError
        ``X`` is neither an int nor something with rows.

    Examples
    --------
    >>> n_rows_of("walk_forward", np.zeros((5, 2))), n_rows_of("walk_forward", 7)
    (5, 7)
    """
    if isinstance(X, int | np.integer) and not isinstance(X, bool):
        return _check_int(owner, "n_rows", X, 0)
    shape = getattr(X, "shape", None)
    if shape:
        return int(shape[0])
    try:
        return len(X)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(
            f"{owner}: X must be the data to split (a DataFrame, an array, a sequence) or its "
            f"number of rows as an int, got {type(X).__name__} {X!r}"
        ) from None


def _positions(mask: npt.NDArray[np.bool_]) -> Positions:
    return np.flatnonzero(mask).astype(np.int64, copy=False)


def _purged_fold(
    n_rows: int,
    blocks: Sequence[Block],
    horizon: int,
    embargo: int,
    test_groups: tuple[int, ...] | None = None,
) -> _Fold:
    """Test = the blocks; training = every other row minus the purge and embargo of each block.

    A row counted as purged is not counted as embargoed as well.
    """
    test = np.zeros(n_rows, dtype=bool)
    purged = np.zeros(n_rows, dtype=bool)
    embargoed = np.zeros(n_rows, dtype=bool)
    for start, end in blocks:
        test[start : end + 1] = True
        purged[max(start - horizon, 0) : end + horizon + 1] = True
        embargoed[end + horizon + 1 : end + horizon + embargo + 1] = True
    purged &= ~test
    embargoed &= ~(test | purged)
    train = ~(test | purged | embargoed)
    return _Fold(
        train=_positions(train),
        test=_positions(test),
        purged=int(purged.sum()),
        embargoed=int(embargoed.sum()),
        test_groups=test_groups,
    )


def _even_blocks(n_rows: int, n_blocks: int) -> list[Block]:
    """``n_blocks`` contiguous blocks covering ``0 … n_rows-1``; the first ones 1 row longer."""
    size, extra = divmod(n_rows, n_blocks)
    blocks: list[Block] = []
    start = 0
    for number in range(n_blocks):
        length = size + (1 if number < extra else 0)
        blocks.append((start, start + length - 1))
        start += length
    return blocks


def _merge(blocks: Sequence[Block]) -> list[Block]:
    """Sorted blocks with adjacent ones joined."""
    merged: list[Block] = []
    for start, end in sorted(blocks):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class Splitter(ABC):
    """Base of the purging splitters: scikit-learn's ``split`` / ``get_n_splits`` /
    ``get_params``, and ``describe``."""

    name: ClassVar[str]
    horizon_bars: int
    embargo_bars: int

    def split(
        self, X: object, y: object = None, groups: object = None
    ) -> Iterator[tuple[Positions, Positions]]:
        """Yield ``(train_positions, test_positions)`` for each fold, in order.

        Parameters
        ----------
        X : DataFrame, array-like or int
            The rows to split (consecutive bars in time order), or their number.
        y : object, optional
            Ignored; accepted for scikit-learn's ``cv=`` protocol.
        groups : object, optional
            Ignored; accepted for scikit-learn's ``cv=`` protocol.

        Returns
        -------
        Iterator[tuple[numpy.ndarray, numpy.ndarray]]
            Sorted ``int64`` positions; the parameters are checked before the first fold, so a
            bad setting raises here rather than on iteration.

        Raises
        ------
        ConfigError
            A parameter is invalid or ``X`` has too few rows for the requested folds.
        """
        n_rows = self._rows(X)
        return ((fold.train, fold.test) for fold in self._folds(n_rows))

    def get_n_splits(self, X: object = None, y: object = None, groups: object = None) -> int:
        """Number of folds that ``split(X)`` yields (after checking the parameters).

        Parameters
        ----------
        X : DataFrame, array-like, int or None
            The rows, or their number. None is enough where the count does not depend on the
            rows (k-fold, CPCV, walk-forward with ``n_splits`` set); the rows are then not
            checked, so ``split`` may still find them too few.
        y : object, optional
            Ignored.
        groups : object, optional
            Ignored.

        Returns
        -------
        int
            The number of folds.

        Raises
        ------
        ConfigError
            A parameter is invalid, ``X`` has too few rows, or ``X`` is None and the count
            depends on it.
        """
        if X is None:
            return self._n_splits_without_rows()
        return self._n_splits(self._rows(X))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters, as scikit-learn's ``clone`` reads them.

        The splitters are frozen, so there is no ``set_params``: build a new one (or use
        :func:`dataclasses.replace`).
        """
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}

    def describe(self, X: object) -> list[dict[str, Any]]:
        """One dict per fold, for reports.

        Keys: ``fold``, ``train_start``, ``train_end``, ``train_size``, ``test_start``,
        ``test_end``, ``test_size``, ``purged``, ``embargoed`` (and ``test_groups`` for
        :class:`CombinatorialPurgedCV`). Ends are inclusive positions; training and test rows
        need not be contiguous between start and end (k-fold and CPCV), sizes are exact.
        ``X`` is as in :meth:`split`.
        """
        rows: list[dict[str, Any]] = []
        for number, fold in enumerate(self._folds(self._rows(X))):
            row: dict[str, Any] = {
                "fold": number,
                "train_start": int(fold.train[0]),
                "train_end": int(fold.train[-1]),
                "train_size": len(fold.train),
                "test_start": int(fold.test[0]),
                "test_end": int(fold.test[-1]),
                "test_size": len(fold.test),
                "purged": fold.purged,
                "embargoed": fold.embargoed,
            }
            if fold.test_groups is not None:
                row["test_groups"] = list(fold.test_groups)
            rows.append(row)
        return rows

    def _rows(self, X: object) -> int:
        """The number of rows of ``X``, checked to be enough for every fold."""
        n_rows = n_rows_of(self.name, X)
        self._check(n_rows)
        return n_rows

    def _check_common(self) -> tuple[int, int]:
        horizon = _check_int(self.name, "horizon_bars", self.horizon_bars, 1)
        embargo = _check_int(self.name, "embargo_bars", self.embargo_bars, 0)
        return horizon, embargo

    @abstractmethod
    def _check(self, n_rows: int) -> None:
        """Raise :class:`ConfigError` unless every fold can be built from ``n_rows`` rows."""

    @abstractmethod
    def _folds(self, n_rows: int) -> Iterator[_Fold]:
        """The folds, assuming :meth:`_check` passed."""

    @abstractmethod
    def _n_splits(self, n_rows: int) -> int:
        """The number of folds, assuming :meth:`_check` passed."""

    @abstractmethod
    def _n_splits_without_rows(self) -> int:
        """The number of folds from the parameters alone (checked); ConfigError if it
        depends on the rows."""


SPLITTERS: PluginTable[type[Splitter]] = PluginTable("splitter")


@SPLITTERS.register("walk_forward")
@dataclass(frozen=True)
class WalkForward(Splitter):
    """Walk-forward: test blocks tile the end of the data, training rows precede each block.

    Parameters
    ----------
    test_size : int
        Rows per test block. The last block ends on the last row; earlier blocks start
        ``step`` rows before the next one.
    horizon_bars : int
        Label horizon ``h``: training row ``i`` is purged when ``i + h >= test_start``, so the
        ``h`` rows just before each test block never train.
    train_size : int or None
        None: expanding window from row 0. An int: rolling window of exactly that many rows
        (the most recent ones before the purge); it must be at least ``min_train_size``.
    step : int or None
        Distance between the starts of consecutive test blocks; default ``test_size``. It may
        not be smaller than ``test_size`` (test blocks would overlap).
    n_splits : int or None
        None: every fold that fits. An int: the *last* ``n_splits`` folds that fit; fewer
        fitting folds is an error.
    min_train_size : int
        Fewest training rows a fold may have (expanding window).
    embargo_bars : int
        Extra rows left out between the training rows and the purged rows before each test
        block (training never follows the test block here, so there is nothing to embargo
        after it).

    Examples
    --------
    >>> splitter = WalkForward(test_size=5, horizon_bars=2, min_train_size=5)
    >>> for train, test in splitter.split(20):
    ...     print(train.tolist(), test.tolist())
    [0, 1, 2, 3, 4, 5, 6, 7] [10, 11, 12, 13, 14]
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] [15, 16, 17, 18, 19]
    """

    name: ClassVar[str] = "walk_forward"

    test_size: int
    horizon_bars: int = 1
    train_size: int | None = None
    step: int | None = None
    n_splits: int | None = None
    min_train_size: int = 100
    embargo_bars: int = 0

    def _step(self) -> int:
        return self.test_size if self.step is None else self.step

    def _needed_train(self) -> int:
        return self.min_train_size if self.train_size is None else self.train_size

    def _first_test_start(self) -> int:
        """Smallest position a test block may start at."""
        return self._needed_train() + self.horizon_bars + self.embargo_bars

    def _count(self, n_rows: int) -> int:
        """How many folds fit in ``n_rows`` rows."""
        room = n_rows - self.test_size - self._first_test_start()
        return 0 if room < 0 else room // self._step() + 1

    def _check_params(self) -> tuple[int, int, str, int]:
        """Checked ``test_size``, ``step``, the training part of a too-few-rows message, and
        the number of folds required."""
        self._check_common()
        test_size = _check_int(self.name, "test_size", self.test_size, 1)
        min_train = _check_int(self.name, "min_train_size", self.min_train_size, 1)
        step = test_size if self.step is None else _check_int(self.name, "step", self.step, 1)
        if step < test_size:
            raise ConfigError(
                f"{self.name}: step {step} is smaller than test_size {test_size}; "
                "test blocks would overlap"
            )
        if self.train_size is None:
            train_part = f"min_train_size {min_train}"
        else:
            train_size = _check_int(self.name, "train_size", self.train_size, 1)
            if train_size < min_train:
                raise ConfigError(
                    f"{self.name}: train_size {train_size} is below min_train_size {min_train}; "
                    "lower min_train_size or widen the window"
                )
            train_part = f"train_size {train_size}"
        folds = 1
        if self.n_splits is not None:
            folds = _check_int(self.name, "n_splits", self.n_splits, 1)
        return test_size, step, train_part, folds

    def _n_splits_without_rows(self) -> int:
        _, _, _, folds = self._check_params()
        if self.n_splits is None:
            raise ConfigError(
                f"{self.name}: without n_splits the number of folds depends on the number of "
                "rows; pass X to get_n_splits"
            )
        return folds

    def _check(self, n_rows: int) -> None:
        test_size, step, train_part, folds = self._check_params()
        n, horizon, embargo = n_rows, int(self.horizon_bars), int(self.embargo_bars)
        if self._count(n) >= folds:
            return
        needed = self._first_test_start() + test_size + (folds - 1) * step
        parts = [train_part, f"horizon {horizon} purge"]
        if embargo:
            parts.append(f"embargo {embargo}")
        fold_word = "fold" if folds == 1 else "folds"
        if step == test_size or folds == 1:
            parts.append(f"{folds} {fold_word} × test_size {test_size}")
        else:
            parts.append(f"test_size {test_size} + {folds - 1} × step {step}")
        raise ConfigError(
            f"{self.name} needs at least {needed} rows ({' + '.join(parts)}), got {n}"
        )

    def _n_splits(self, n_rows: int) -> int:
        count = self._count(n_rows)
        return count if self.n_splits is None else min(count, self.n_splits)

    def _folds(self, n_rows: int) -> Iterator[_Fold]:
        count, step = self._count(n_rows), self._step()
        for index in range(count - self._n_splits(n_rows), count):
            test_end = n_rows - 1 - (count - 1 - index) * step
            test_start = test_end - self.test_size + 1
            train_stop = test_start - self.horizon_bars - self.embargo_bars  # exclusive
            train_start = 0 if self.train_size is None else train_stop - self.train_size
            yield _Fold(
                train=np.arange(train_start, train_stop, dtype=np.int64),
                test=np.arange(test_start, test_end + 1, dtype=np.int64),
                purged=self.horizon_bars,
                embargoed=self.embargo_bars,
            )


@SPLITTERS.register("purged_kfold")
@dataclass(frozen=True)
class PurgedKFold(Splitter):
    """K contiguous test folds; training = the other rows, purged and embargoed.

    For a test fold ``[s, e]`` a training row ``i`` is purged when its label window
    ``[i, i+h]`` meets the test label windows ``[s, e+h]``: rows ``s-h … s-1`` before the fold
    and rows ``e+1 … e+h`` after it. The ``embargo_bars`` rows ``e+h+1 … e+h+embargo_bars`` are
    dropped as well. Fold sizes differ by at most one row (the first folds are longer).

    Parameters
    ----------
    n_splits : int
        Number of folds, at least 2.
    horizon_bars : int
        Label horizon ``h`` in bars.
    embargo_bars : int
        Rows dropped after each test fold's purged rows.

    Examples
    --------
    >>> splitter = PurgedKFold(n_splits=3, horizon_bars=1, embargo_bars=1)
    >>> for train, test in splitter.split(9):
    ...     print(train.tolist(), test.tolist())
    [5, 6, 7, 8] [0, 1, 2]
    [0, 1, 8] [3, 4, 5]
    [0, 1, 2, 3, 4] [6, 7, 8]

    Every row is tested once, so it can be the ``cv=`` of ``cross_val_predict``:

    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.model_selection import cross_val_predict
    >>> X = np.arange(40.0).reshape(20, 2)
    >>> cross_val_predict(Ridge(), X, X[:, 0], cv=PurgedKFold(n_splits=4)).shape
    (20,)
    """

    name: ClassVar[str] = "purged_kfold"

    n_splits: int = 5
    horizon_bars: int = 1
    embargo_bars: int = 0

    def _n_splits_without_rows(self) -> int:
        self._check_common()
        return _check_int(self.name, "n_splits", self.n_splits, 2)

    def _check(self, n_rows: int) -> None:
        n = n_rows
        horizon, embargo = self._check_common()
        k = _check_int(self.name, "n_splits", self.n_splits, 2)
        if n < k:
            raise ConfigError(f"{self.name} needs at least {k} rows (one per fold), got {n}")
        for number, (start, end) in enumerate(_even_blocks(n, k)):
            fold = _purged_fold(n, [(start, end)], horizon, embargo)
            if len(fold.train) == 0:
                raise ConfigError(
                    f"{self.name}: fold {number + 1} of {k} (test rows {start}–{end}) leaves no "
                    f"training rows after the horizon {horizon} purge and embargo {embargo}; "
                    f"got {n} rows, use more rows or fewer folds"
                )

    def _n_splits(self, n_rows: int) -> int:
        return self.n_splits

    def _folds(self, n_rows: int) -> Iterator[_Fold]:
        for block in _even_blocks(n_rows, self.n_splits):
            yield _purged_fold(n_rows, [block], self.horizon_bars, self.embargo_bars)


@SPLITTERS.register("cpcv")
@dataclass(frozen=True)
class CombinatorialPurgedCV(Splitter):
    """Combinatorial purged cross-validation (CPCV, after López de Prado).

    The rows are cut into ``n_groups`` contiguous groups (sizes differ by at most one row).
    Each combination of ``n_test_groups`` groups is one split's test set, in
    :func:`itertools.combinations` order, so there are ``C(N, k)`` splits. Training is every
    other row, purged around each contiguous test block (adjacent test groups form one block)
    and embargoed after each, exactly as in :class:`PurgedKFold`.

    Every group is tested in ``C(N-1, k-1)`` splits, which is also the number of backtest
    paths ``φ = k/N · C(N, k)``; :meth:`paths` tells which split predicts each group on each
    path.

    Parameters
    ----------
    n_groups : int
        Number of groups ``N``, at least 2.
    n_test_groups : int
        Groups per test set ``k``, ``1 <= k < N``.
    horizon_bars : int
        Label horizon ``h`` in bars.
    embargo_bars : int
        Rows dropped after each test block's purged rows.

    Examples
    --------
    >>> cv = CombinatorialPurgedCV(n_groups=4, n_test_groups=2, horizon_bars=1)
    >>> cv.get_n_splits(), cv.test_groups()[:3]
    (6, [(0, 1), (0, 2), (0, 3)])
    >>> train, test = next(iter(cv.split(np.zeros((8, 2)))))
    >>> train.tolist(), test.tolist()
    ([5, 6, 7], [0, 1, 2, 3])
    >>> cv.paths()[0]
    [(0, 0), (1, 0), (2, 1), (3, 2)]
    """

    name: ClassVar[str] = "cpcv"

    n_groups: int = 6
    n_test_groups: int = 2
    horizon_bars: int = 1
    embargo_bars: int = 0

    def test_groups(self) -> list[tuple[int, ...]]:
        """The test groups of each split, in split order."""
        return list(itertools.combinations(range(self.n_groups), self.n_test_groups))

    def group_bounds(self, X: object) -> list[tuple[int, int]]:
        """First and last position (inclusive) of each group of the rows of ``X`` (as in
        :meth:`split`)."""
        return _even_blocks(self._rows(X), self.n_groups)

    def n_paths(self) -> int:
        """Number of backtest paths ``φ = k/N · C(N, k) = C(N-1, k-1)``."""
        return math.comb(self.n_groups - 1, self.n_test_groups - 1)

    def paths(self) -> list[list[tuple[int, int]]]:
        """The backtest paths: ``paths()[p][g] == (g, s)`` means split ``s`` predicts group ``g``.

        Each path lists every group once, in order, so stitching the test predictions of the
        named splits over their groups gives one full out-of-sample series per path (for
        path-wise Sharpe ratios and PBO). Path ``p`` takes, for every group, the ``p``-th split
        (in split order) that tests it; hence every (split, tested group) pair lies on exactly
        one path.

        Raises
        ------
        ConfigError
            ``n_groups`` / ``n_test_groups`` are invalid.
        """
        self._check_groups()
        by_group: list[list[int]] = [[] for _ in range(self.n_groups)]
        for split, groups in enumerate(self.test_groups()):
            for group in groups:
                by_group[group].append(split)
        return [
            [(group, by_group[group][path]) for group in range(self.n_groups)]
            for path in range(self.n_paths())
        ]

    def _check_groups(self) -> tuple[int, int]:
        n_groups = _check_int(self.name, "n_groups", self.n_groups, 2)
        k = _check_int(self.name, "n_test_groups", self.n_test_groups, 1)
        if k >= n_groups:
            raise ConfigError(
                f"{self.name}: n_test_groups must be smaller than n_groups, "
                f"got n_test_groups {k} and n_groups {n_groups}"
            )
        return n_groups, k

    def _n_splits_without_rows(self) -> int:
        self._check_common()
        n_groups, k = self._check_groups()
        return math.comb(n_groups, k)

    def _check(self, n_rows: int) -> None:
        n = n_rows
        horizon, embargo = self._check_common()
        n_groups, _ = self._check_groups()
        if n < n_groups:
            raise ConfigError(
                f"{self.name} needs at least {n_groups} rows (one per group), got {n}"
            )
        for fold in self._folds(n):
            if len(fold.train) == 0:
                raise ConfigError(
                    f"{self.name}: the split testing groups {list(fold.test_groups or ())} "
                    f"leaves no training rows after the horizon {horizon} purge and embargo "
                    f"{embargo}; got {n} rows in {n_groups} groups, use more rows or fewer "
                    "test groups"
                )

    def _n_splits(self, n_rows: int) -> int:
        return math.comb(self.n_groups, self.n_test_groups)

    def _folds(self, n_rows: int) -> Iterator[_Fold]:
        bounds = _even_blocks(n_rows, self.n_groups)
        for groups in self.test_groups():
            blocks = _merge([bounds[group] for group in groups])
            yield _purged_fold(n_rows, blocks, self.horizon_bars, self.embargo_bars, groups)


def make_splitter(kind: str, params: dict[str, Any], horizon_bars: int) -> Splitter:
    """Build the splitter registered as ``kind`` from config ``params`` and the label horizon.

    Parameters
    ----------
    kind : str
        ``"walk_forward"``, ``"purged_kfold"`` or ``"cpcv"`` (see :data:`SPLITTERS`).
    params : dict
        Constructor arguments except ``horizon_bars``.
    horizon_bars : int
        The label horizon in bars; it comes from the labels, never from ``params``.

    Returns
    -------
    Splitter
        The splitter; its values are checked when it is used.

    Raises
    ------
    ConfigError
        Unknown ``kind`` or parameter names, or a required parameter missing (the valid ones
        are listed).

    Examples
    --------
    >>> splitter = make_splitter("walk_forward", {"test_size": 120}, horizon_bars=20)
    >>> splitter.test_size, splitter.horizon_bars, splitter.get_n_splits(1000)
    (120, 20, 7)
    """
    factory: Callable[..., Splitter] = SPLITTERS.get(kind)
    accepted = [name for name in inspect.signature(factory).parameters if name != "horizon_bars"]
    if "horizon_bars" in params:
        raise ConfigError(
            f"splitter {kind!r}: horizon_bars comes from the labels, remove it from the "
            f"parameters (valid: {', '.join(accepted)})"
        )
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"splitter {kind!r}: unknown parameter(s) {', '.join(unknown)} "
            f"(valid: {', '.join(accepted)})"
        )
    signature = inspect.signature(factory).parameters
    required = [
        name
        for name in accepted
        if signature[name].default is inspect.Parameter.empty and name not in params
    ]
    if required:
        raise ConfigError(
            f"splitter {kind!r}: missing parameter(s) {', '.join(required)} "
            f"(validation.params; valid: {', '.join(accepted)})"
        )
    return factory(**params, horizon_bars=horizon_bars)
