"""Signals: the arrays the backtest engine takes, one entry per candle (signal) bar.

A signal at the close of bar t enters at the open of bar t+1. ``side`` is +1 (long), -1
(short) or 0 (no signal); ``stop`` and ``target`` are prices (NaN when absent); ``max_bars`` is
the most bars a position is held (0 = no time limit); ``size`` scales the position (1.0 =
the sizing rule's full size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trademl.errors import ConfigError


@dataclass(frozen=True)
class Signals:
    """Per-bar signal arrays aligned on ``index`` (the candles' timestamps)."""

    index: pd.DatetimeIndex
    side: np.ndarray  # int8: +1 long, -1 short, 0 none
    stop: np.ndarray  # float64 price, NaN = no stop
    target: np.ndarray  # float64 price, NaN = no target
    max_bars: np.ndarray  # int64, 0 = no limit
    size: np.ndarray  # float64, 1.0 = full size

    def __post_init__(self) -> None:
        n = len(self.index)
        for name in ("side", "stop", "target", "max_bars", "size"):
            array = getattr(self, name)
            if np.shape(array) != (n,):
                raise ConfigError(
                    f"signals.{name} has shape {np.shape(array)}, expected ({n},) like the candles"
                )

    @classmethod
    def empty(cls, index: pd.DatetimeIndex) -> Signals:
        """No signal on any bar."""
        n = len(index)
        return cls(
            index,
            np.zeros(n, dtype=np.int8),
            np.full(n, np.nan),
            np.full(n, np.nan),
            np.zeros(n, dtype=np.int64),
            np.ones(n),
        )

    @property
    def count(self) -> int:
        """Bars carrying a signal."""
        return int(np.count_nonzero(self.side))
