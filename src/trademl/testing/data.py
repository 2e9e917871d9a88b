"""Small deterministic inputs for the conformance checks: candles and a feature matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trademl.data.candles import make_candles
from trademl.data.timeframes import Timeframe


class ConformanceError(AssertionError):
    """A plug-in broke a promise of its family; the message names the plug-in and the promise."""


def sample_candles(
    n: int = 600, *, seed: int = 0, timeframe: str = "1h", symbol: str = "TEST"
) -> pd.DataFrame:
    """A Candles frame of ``n`` hourly (or ``timeframe``) bars of a random walk from 2024-01-01.

    Every bar honours the Candles contract (high >= open, close >= low, volume > 0).

    Examples
    --------
    >>> candles = sample_candles(5)
    >>> list(candles.columns), candles.attrs["timeframe"]
    (['open', 'high', 'low', 'close', 'volume'], '1h')
    """
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.001, n))
    high = np.maximum(open_, close) * np.exp(rng.uniform(0.0, 0.01, n))
    low = np.minimum(open_, close) * np.exp(-rng.uniform(0.0, 0.01, n))
    volume = rng.lognormal(3.0, 0.5, n)
    frame = Timeframe.parse(timeframe)
    index = pd.date_range("2024-01-01", periods=n, freq=frame.delta, tz="UTC")
    return make_candles(index, open_, high, low, close, volume, symbol=symbol, timeframe=frame.name)


def sample_features(n: int = 300, *, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Features ``x0``..``x3`` (``x3`` NaN in its first 10 rows), a positive ``vol`` column,
    and ``y = 2 x0 + noise``, on an hourly UTC index."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["x0", "x1", "x2", "x3"])
    X["vol"] = rng.uniform(0.5, 2.0, size=n)
    X.loc[X.index[:10], "x3"] = np.nan
    X.index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    y = pd.Series(2.0 * X["x0"].to_numpy() + rng.normal(size=n), index=X.index, name="y")
    return X, y
