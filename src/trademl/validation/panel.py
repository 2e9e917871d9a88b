"""Splits of a panel (rows of many symbols pooled) on their common timeline.

A panel's rows are ``(timestamp, symbol)`` pairs sorted by time then symbol. Its *timeline* is
the sorted union of the rows' timestamps: every splitter of :mod:`trademl.validation.splitters`
runs on timeline positions unchanged, so test blocks are time ranges, and
:class:`PanelSplitter` maps each fold back to row positions:

- test rows: every symbol's rows whose time falls in the fold's test positions;
- training rows: every symbol's rows whose time falls in the fold's training positions, minus
  any whose own label window, in time, still meets a test block. A row's label window runs
  from its bar to its symbol's ``h``-th next bar; for symbols that trade on the timeline's
  every bar that is the splitter's own purge, but a symbol with overnight or weekend gaps
  (a stock in a panel with crypto) reaches further in time, and is purged by its reach.

So a test row's label window purges every symbol's overlapping training rows, and a symbol
holding every timeline bar gets exactly the single-symbol splitter's folds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trademl.errors import ConfigError
from trademl.validation.splitters import Positions, Splitter, n_rows_of

__all__ = ["PanelSplitter", "label_end_times"]


def label_end_times(timestamps: pd.DatetimeIndex, horizon_bars: int) -> pd.DatetimeIndex:
    """When each bar's label window ends: the timestamp ``horizon_bars`` bars later in the
    symbol's own series (the last bar's for the final rows, whose labels are incomplete).

    >>> index = pd.DatetimeIndex(["2024-01-01 10:00", "2024-01-01 11:00", "2024-01-02 09:00"])
    >>> label_end_times(index, 1).strftime("%d %H").tolist()
    ['01 11', '02 09', '02 09']
    """
    positions = np.minimum(np.arange(len(timestamps)) + horizon_bars, len(timestamps) - 1)
    return pd.DatetimeIndex(timestamps[positions])


@dataclass(frozen=True)
class PanelSplitter:
    """A splitter over the common timeline of a panel's rows.

    Parameters
    ----------
    base : Splitter
        The splitter of the timeline (walk-forward, purged k-fold); its ``horizon_bars`` and
        ``embargo_bars`` count timeline bars.
    times : pandas.DatetimeIndex
        Each row's timestamp, rows sorted by time (ties: one row per symbol).
    label_ends : pandas.DatetimeIndex
        Each row's label-window end (:func:`label_end_times` over its symbol's bars).
    symbols : pandas.Index
        Each row's symbol, for reports.

    Like the splitters, it speaks scikit-learn's ``cv=`` protocol: ``split(X, y=None,
    groups=None)``, where ``X`` is the panel's rows (a frame, an array) or their number, and
    ``get_n_splits``, for which ``X`` may be None (the splitter knows its rows).

    Examples
    --------
    >>> from trademl.validation.splitters import WalkForward
    >>> t = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
    >>> times = t.repeat(2)  # two symbols on every bar
    >>> ends = pd.DatetimeIndex(np.repeat(label_end_times(t, 1), 2))
    >>> panel = PanelSplitter(WalkForward(test_size=2, horizon_bars=1, min_train_size=2),
    ...                       times, ends, pd.Index(["A", "B"] * 6))
    >>> rows = pd.DataFrame({"close": np.ones(12)}, index=times)
    >>> [(train.tolist(), test.tolist()) for train, test in panel.split(rows)]
    [([0, 1, 2, 3, 4, 5], [8, 9, 10, 11])]
    >>> panel.get_n_splits()
    1
    >>> panel.timeline_bars
    6
    """

    base: Splitter
    times: pd.DatetimeIndex
    label_ends: pd.DatetimeIndex
    symbols: pd.Index

    @property
    def timeline(self) -> pd.DatetimeIndex:
        """The sorted, unique timestamps of the rows."""
        return pd.DatetimeIndex(self.times.unique()).sort_values()

    @property
    def timeline_bars(self) -> int:
        """Length of the common timeline, in bars."""
        return len(self.timeline)

    def _positions(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Each row's timeline position and the last timeline position its label reaches."""
        timeline = self.timeline.asi8
        at = np.searchsorted(timeline, self.times.asi8).astype(np.int64)
        # The last timeline bar at or before the label's end: a window ending between two
        # timeline bars meets the earlier one, never the later.
        reach = (np.searchsorted(timeline, self.label_ends.asi8, side="right") - 1).astype(np.int64)
        return at, reach

    def _check_rows(self, X: object) -> None:
        n_rows = n_rows_of("panel splitter", X)
        if not (len(self.times) == len(self.label_ends) == len(self.symbols) == n_rows):
            raise ConfigError(
                f"panel splitter: {n_rows} rows, but {len(self.times)} timestamps, "
                f"{len(self.label_ends)} label ends and {len(self.symbols)} symbols"
            )
        if len(self.times) > 1 and bool(np.any(np.diff(self.times.asi8) < 0)):
            raise ConfigError("panel splitter: rows must be sorted by time")

    def _check_timeline(self) -> None:
        try:
            self.base.get_n_splits(self.timeline_bars)
        except ConfigError as error:
            first, last = self.timeline[[0, -1]] if self.timeline_bars else (None, None)
            raise ConfigError(
                f"the panel's common timeline of {self.symbols.nunique()} symbols has "
                f"{self.timeline_bars} bars ({first} → {last}), too short for its folds: "
                f"{error}; widen data.start/data.end or ask for fewer or shorter folds"
            ) from None

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (and, when ``deep``, the base splitter's as
        ``base__name``), as scikit-learn's ``clone`` reads them."""
        params: dict[str, Any] = {
            "base": self.base,
            "times": self.times,
            "label_ends": self.label_ends,
            "symbols": self.symbols,
        }
        if deep:
            params.update(
                (f"base__{name}", value) for name, value in self.base.get_params().items()
            )
        return params

    def get_n_splits(self, X: object = None, y: object = None, groups: object = None) -> int:
        """Number of folds (those of the base splitter on the timeline).

        ``X`` (the rows or their number) is checked against the splitter's rows when given;
        ``y`` and ``groups`` are ignored.
        """
        if X is not None:
            self._check_rows(X)
        self._check_timeline()
        return self.base.get_n_splits(self.timeline_bars)

    def split(
        self, X: object, y: object = None, groups: object = None
    ) -> Iterator[tuple[Positions, Positions]]:
        """Yield ``(train_rows, test_rows)`` per fold, sorted ``int64`` row positions.

        As :meth:`Splitter.split <trademl.validation.splitters.Splitter.split>`, where ``X``
        is the panel's rows (in the order of ``times``) or their number.

        Raises
        ------
        ConfigError
            The rows are not the splitter's, or the timeline is too short for the folds (the
            message gives its length in bars and the splitter's need).
        """
        self._check_rows(X)
        self._check_timeline()
        at, reach = self._positions()
        folds = list(self.base.split(self.timeline_bars))
        return (self._fold(at, reach, train, test) for train, test in folds)

    def _fold(
        self,
        at: npt.NDArray[np.int64],
        reach: npt.NDArray[np.int64],
        train_bars: Positions,
        test_bars: Positions,
    ) -> tuple[Positions, Positions]:
        n_bars = self.timeline_bars
        is_test = np.zeros(n_bars, dtype=bool)
        is_test[test_bars] = True
        is_train = np.zeros(n_bars, dtype=bool)
        is_train[train_bars] = True
        test = np.flatnonzero(is_test[at]).astype(np.int64)
        candidates = is_train[at]
        embargo = int(self.base.embargo_bars)
        for start, end in _blocks(test_bars):
            in_block = (at >= start) & (at <= end)
            block_reach = max(int(reach[in_block].max()), end) if in_block.any() else end
            # Label windows [at, reach] meeting the block's test windows [start, block_reach],
            # and the embargo after those.
            candidates &= ~((reach >= start) & (at <= block_reach + embargo))
        return np.flatnonzero(candidates).astype(np.int64), test

    def describe(self, X: object) -> list[dict[str, Any]]:
        """One dict per fold: test span (times), training and test rows, rows per symbol.

        ``X`` is as in :meth:`split`.
        """
        rows = []
        for number, (train, test) in enumerate(self.split(X)):
            rows.append(
                {
                    "fold": number,
                    "test_start": self.times[test[0]],
                    "test_end": self.times[test[-1]],
                    "train_size": len(train),
                    "test_size": len(test),
                    "test_rows_per_symbol": self.symbols[test].value_counts().to_dict(),
                }
            )
        return rows


def _blocks(positions: Positions) -> list[tuple[int, int]]:
    """Contiguous runs of sorted positions, as (first, last) pairs."""
    if len(positions) == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) > 1)
    starts = np.r_[positions[0], positions[breaks + 1]]
    ends = np.r_[positions[breaks], positions[-1]]
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
