"""``range_mean``: the mean of (high - low) / close over the last ``window`` bars.

The entry point names this module: importing it registers the indicator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from trademl.features.indicators import Bars, Indicator, Param, register


def _range_mean(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    relative = (bars.high - bars.low) / bars.close
    window = int(params["window"])
    return {"": pd.Series(relative).rolling(window).mean().to_numpy()}


RANGE_MEAN = register(
    Indicator(
        name="range_mean",
        family="volatility",
        compute=_range_mean,
        warmup=lambda params: int(params["window"]) - 1,
        params=(Param("window", 10, low=1, high=1000),),
        description="Mean bar range relative to the close over a window (example plug-in).",
        source="trademl-example-plugin",
    )
)
