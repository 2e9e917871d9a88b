"""Adaptive conformal inference along a walk-forward path (Gibbs & Candès, 2021).

A conformal interval of level ``1 - alpha`` covers about ``1 - alpha`` of exchangeable rows;
market rows are not exchangeable, so a model's intervals drift off nominal when volatility
changes between its calibration rows and the rows it predicts. Adaptive conformal inference
watches the misses and moves the quantile level::

    alpha_{t+1} = alpha_t + rate * (alpha - err_t)

where ``err_t`` is 1 when row ``t``'s target fell outside its interval. Misses lower
``alpha_t`` (a higher quantile of the calibration scores: wider intervals); long runs of
hits raise it. Over any stretch of ``T`` rows the miss rate is within about
``1 / (rate * T)`` of ``alpha``, whatever the data do.

Labels look ``horizon`` bars ahead, so a row's miss is known only ``horizon`` bars later: the
interval at row ``t`` uses only the misses of rows ``t'`` with ``t' + horizon <= t`` (their
labels had matured by the close of bar ``t``). That makes the path causal: changing the
label of a row that has not matured by ``t`` leaves every interval up to ``t`` unchanged.

What ``alpha_t`` outside (0, 1) means. In the original update ``alpha_t <= 0`` asks for the
quantile of level ``>= 1``: the whole real line, an interval that always covers (and
``alpha_t >= 1`` the empty set). Neither is a usable forecast, so here the state is clipped to
``[lower, upper]`` (by default ``[alpha / 10, min(0.5, 3 alpha)]``): the widest interval is the
calibration scores' ``1 - alpha / 10`` quantile, the narrowest their ``1 - 3 alpha``
quantile. With fewer than ``1 / lower`` calibration rows the widest quantile is infinite, as
for the plain split-conformal interval.

:class:`AdaptiveConformal` walks one path; the walk-forward runner feeds it one test block
per fold (each block with its own fold's calibration scores) and the served model starts
from the level the path ended at (``alpha_``), so served intervals are the validated ones.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from trademl.errors import ConfigError


@runtime_checkable
class ConformalModel(Protocol):
    """A fitted conformal wrapper whose threshold can be chosen per row."""

    scores_: np.ndarray

    def conformity_scores(self, X: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        """Scores comparable with ``scores_``; a row is covered iff its score <= q."""
        ...

    def interval_at(self, X: pd.DataFrame, q: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """The interval for per-row thresholds ``q``."""
        ...


class AdaptiveConformal:
    """The adaptive level ``alpha_t`` along one out-of-sample path.

    Parameters
    ----------
    alpha : float
        Nominal miscoverage, in (0, 1).
    rate : float
        Step ``gamma`` of the update, in (0, 1): larger follows changes faster and makes the
        width noisier.
    horizon : int
        Label horizon in bars: a row's miss counts from ``horizon`` bars after it.
    lower, upper : float or None
        Clip range of ``alpha_t``; ``None`` for ``alpha / 10`` and ``min(0.5, 3 alpha)``.

    Attributes
    ----------
    alpha_ : float
        The current level: after :meth:`finish`, the level a model served after the path
        starts from.

    Examples
    --------
    >>> path = AdaptiveConformal(alpha=0.1, rate=0.05, horizon=1)
    >>> scores = np.linspace(0.0, 1.0, 101)
    >>> q = path.step(scores, np.array([5.0, 5.0, 5.0]), np.array([0, 1, 2]))  # three misses
    >>> [round(a, 3) for a in path.levels_]
    [0.1, 0.055, 0.01]
    """

    def __init__(
        self,
        alpha: float,
        rate: float = 0.005,
        horizon: int = 1,
        lower: float | None = None,
        upper: float | None = None,
    ) -> None:
        if not 0.0 < float(alpha) < 1.0:
            raise ConfigError(f"adaptive conformal: alpha must lie in (0, 1), got {alpha!r}")
        if not 0.0 < float(rate) < 1.0:
            raise ConfigError(f"adaptive conformal: rate must lie in (0, 1), got {rate!r}")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ConfigError(
                f"adaptive conformal: horizon must be an integer >= 1 (bars), got {horizon!r}"
            )
        self.alpha = float(alpha)
        self.rate = float(rate)
        self.horizon = horizon
        self.lower = self.alpha / 10.0 if lower is None else float(lower)
        self.upper = min(0.5, 3.0 * self.alpha) if upper is None else float(upper)
        if not 0.0 < self.lower <= self.alpha <= self.upper < 1.0:
            raise ConfigError(
                "adaptive conformal: need 0 < lower <= alpha <= upper < 1, got "
                f"lower={self.lower!r}, alpha={self.alpha!r}, upper={self.upper!r}"
            )
        self.alpha_ = self.alpha
        self.levels_: list[float] = []
        # (position at which the label is known, missed) of rows not yet absorbed.
        self._pending: deque[tuple[int, float]] = deque()
        self._last_position: int | None = None

    def _absorb(self, until: float) -> None:
        """Update the level with every pending miss whose label is known at ``until``."""
        while self._pending and self._pending[0][0] <= until:
            _, missed = self._pending.popleft()
            level = self.alpha_ + self.rate * (self.alpha - missed)
            self.alpha_ = min(self.upper, max(self.lower, level))

    def step(
        self, calibration_scores: np.ndarray, test_scores: np.ndarray, positions: np.ndarray
    ) -> np.ndarray:
        """Thresholds for one block of test rows, updating the level row by row.

        Parameters
        ----------
        calibration_scores : numpy.ndarray
            The block's model's calibration scores (any order).
        test_scores : numpy.ndarray
            The test rows' scores (NaN where the label is unknown: such rows count no miss).
        positions : numpy.ndarray
            The test rows' bar positions, increasing, after every position of earlier blocks.

        Returns
        -------
        numpy.ndarray
            The threshold ``q_t`` of each row: the ``ceil((n + 1)(1 - alpha_t))``-th smallest
            calibration score (infinite past the largest).
        """
        scores = np.asarray(test_scores, dtype=np.float64)
        where = np.asarray(positions, dtype=np.int64)
        if scores.shape != where.shape or scores.ndim != 1:
            raise ConfigError(
                f"adaptive conformal: test_scores {scores.shape} and positions {where.shape} "
                "must be 1-D and of one length"
            )
        start = self._last_position
        if len(where) and (
            np.any(np.diff(where) <= 0) or (start is not None and where[0] <= start)
        ):
            raise ConfigError("adaptive conformal: positions must increase along the path")
        ordered = np.sort(np.asarray(calibration_scores, dtype=np.float64))
        n = len(ordered)
        thresholds = np.empty(len(scores))
        for row, (position, score) in enumerate(zip(where.tolist(), scores.tolist(), strict=True)):
            self._absorb(position)
            self.levels_.append(self.alpha_)
            rank = math.ceil((n + 1) * (1.0 - self.alpha_))
            q = math.inf if rank > n else float(ordered[rank - 1])
            thresholds[row] = q
            if math.isfinite(score):
                self._pending.append((position + self.horizon, float(score > q)))
        if len(where):
            self._last_position = int(where[-1])
        return thresholds

    def finish(self) -> float:
        """Absorb every pending miss (all labels known) and return the final level."""
        self._absorb(math.inf)
        return self.alpha_


__all__ = ["AdaptiveConformal", "ConformalModel"]
