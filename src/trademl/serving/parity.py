"""Replay parity: what the server computes for a bar equals what was validated for it.

A live feed sees the history one bar at a time, and the server predicts each new bar from its
``warmup_bars + 1`` last candles (:meth:`PipelineModel.predict_last`). Walk-forward validation
and backtests predicted the same bars in one batch over the full history
(:meth:`PipelineModel.predict`). :func:`replay_parity` replays the last bars of a history as a
feed would and measures the largest difference between the two; ``make demo`` prints it, and
``tests/serving/test_replay_parity.py`` checks it (with the HTTP, WebSocket and MLflow paths)
against 1e-9.

>>> report = replay_parity(pipeline, candles, bars=48)  # doctest: +SKIP
>>> print(report)  # doctest: +SKIP
served = validated on 48 replayed bars (max abs diff 0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from trademl.errors import ConfigError
from trademl.pipeline import PipelineModel


@dataclass(frozen=True)
class ParityReport:
    """The outcome of a replay.

    Attributes
    ----------
    bars : int
        How many bars were replayed.
    max_abs_diff : float
        The largest absolute difference, over every bar and output column, between the served
        and the batch prediction (``inf`` where one is NaN and the other is not).
    worst : str or None
        ``"{timestamp} {column}"`` of that largest difference (None when it is 0).
    """

    bars: int
    max_abs_diff: float
    worst: str | None = None

    def __str__(self) -> str:
        return (
            f"served = validated on {self.bars} replayed bars "
            f"(max abs diff {self.max_abs_diff:.3g})"
        )


def max_abs_diff(expected: Mapping[str, float], got: Mapping[str, float]) -> tuple[float, str]:
    """The largest ``|expected - got|`` over ``expected``'s keys, and the key where it is.

    Two NaN are equal; a NaN against a number, or a key missing from ``got``, is ``inf``.

    >>> max_abs_diff({"a": 1.0, "b": float("nan")}, {"a": 1.5, "b": float("nan")})
    (0.5, 'a')
    """
    worst, where = -1.0, ""
    for key, value in expected.items():
        other = got.get(key)
        if other is None:
            diff = math.inf
        elif math.isnan(value) or math.isnan(other):
            diff = 0.0 if math.isnan(value) and math.isnan(other) else math.inf
        else:
            diff = abs(float(value) - float(other))
        if diff > worst:
            worst, where = diff, key
    return max(worst, 0.0), where


def replay_parity(pipeline: PipelineModel, candles: pd.DataFrame, bars: int) -> ParityReport:
    """Replay the last ``bars`` candles as a live feed and compare with the batch predictions.

    For each of those bars, the history up to and including it is handed to
    :meth:`PipelineModel.predict_last` (which reads its last ``warmup_bars + 1`` candles, as
    the server does); the result is compared with the same bar's row of
    :meth:`PipelineModel.predict` over all of ``candles``, computed once.

    Parameters
    ----------
    pipeline : PipelineModel
        The model to check (a registered version: :func:`~trademl.tracking.load_pipeline`).
    candles : pandas.DataFrame
        The full history at the model's timeframe, oldest first.
    bars : int
        How many of the last candles to replay (at least 1).

    Returns
    -------
    ParityReport
        The number of bars replayed and the largest difference.

    Raises
    ------
    ConfigError
        ``bars`` is not positive, or the history is too short to predict that many bars.
    DataValidationError
        The candles break the contract or are not at the model's timeframe.
    """
    if bars < 1:
        raise ConfigError(f"bars must be at least 1, got {bars}")
    if len(candles) < pipeline.warmup_bars + bars:
        raise ConfigError(
            f"replaying {bars} bars needs at least {pipeline.warmup_bars + bars} candles "
            f"({pipeline.warmup_bars} of warm-up before the first), got {len(candles)}"
        )
    batch = pipeline.predict(candles).iloc[-bars:]
    worst, where = 0.0, None
    for offset in range(bars):
        end = len(candles) - bars + offset + 1
        served = pipeline.predict_last(candles.iloc[:end])
        expected = batch.iloc[offset]
        diff, column = max_abs_diff({str(k): float(v) for k, v in expected.items()}, served.values)
        if served.timestamp != batch.index[offset]:
            diff, column = math.inf, "timestamp"
        if diff > worst:
            worst, where = diff, f"{served.timestamp.isoformat()} {column}"
    return ParityReport(bars, worst, where)
