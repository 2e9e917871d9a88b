"""``example_threshold``: long above ``0.5 + edge``, short below ``0.5 - edge``, no stops."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trademl.backtest.signals import Signals
from trademl.backtest.strategies import Strategy, signals_from_arrays


def threshold_signals(
    candles: pd.DataFrame, p_up: pd.Series, *, edge: float = 0.05, max_bars: int = 6
) -> Signals:
    """Signals from P(up) with a symmetric dead band, held ``max_bars`` bars."""
    p = p_up.reindex(candles.index).to_numpy(dtype=np.float64)
    side = np.where(p >= 0.5 + edge, 1, np.where(p <= 0.5 - edge, -1, 0))
    return signals_from_arrays(pd.DatetimeIndex(candles.index), side, max_bars=max_bars)


THRESHOLD = Strategy(
    "example_threshold",
    threshold_signals,
    needs=("direction",),
    presets={"conservative": {"edge": 0.1}, "aggressive": {"edge": 0.02}},
)
