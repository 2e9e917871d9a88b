"""The HAR baseline of the range targets: its trailing windows, the columns it reads (realised
volatility, range and session gaps over a short, a medium and a long window, and an hour-of-week
profile), and the features a run adds so that residual models and the served pipeline have them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trademl.data.timeframes import Timeframe
from trademl.features import (
    get_indicator,
)
from trademl.features.indicators import Bars
from trademl.features.sets import FeatureSet

# The HAR baseline's trailing windows, as multiples of the horizon (short, medium, long), like
# the day/week/month of daily volatility forecasts.
HAR_WINDOW_MULTIPLES = (1, 4, 16)


# The long window stops here: beyond it the served window (the warm-up) would grow with the
# horizon for little gain.
HAR_MAX_WINDOW = 480


# Realised return volatility, realised range and the size of session gaps (overnight moves of
# stocks; about zero around the clock), each over a short, a medium and a long window.
HAR_ESTIMATORS = ("rv_close", "rv_parkinson", "rv_gap")


# The HAR columns whose mean scales normalised conformal intervals.
SCALE_PREFIXES = ("rv_close_", "rv_parkinson_")


# The bucket of the HAR baseline's seasonal profile (fitted on each training fold).
HAR_SEASONAL = "hour_of_week"


def with_har_features(feature_set: FeatureSet, timeframe: Timeframe, horizons: Any) -> FeatureSet:
    """``feature_set`` plus the HAR baseline's columns for ``horizons`` (bars), where missing.

    Residual models regress on them inside each fold, so the pipeline must compute them when
    serving too: they become part of the set (named ``{name}.har``).
    """
    present = set(feature_set.columns(timeframe))
    extra = [
        {"indicator": name, "params": {"window": window}}
        for name in HAR_ESTIMATORS
        for window in sorted({w for h in set(horizons) for w in har_windows(int(h))})
        if f"{name}_{window}" not in present
    ]
    if HAR_SEASONAL not in present:
        extra.append({"indicator": HAR_SEASONAL})
    if not extra:
        return feature_set
    definition = feature_set.model_dump(mode="json")
    definition["name"] = f"{feature_set.name}.har"
    definition["features"] = [*definition["features"], *extra]
    return FeatureSet.model_validate(definition)


def har_windows(bars: int) -> list[int]:
    """The HAR baseline's trailing windows for a horizon of ``bars`` (each at least 2)."""
    windows = [min(HAR_MAX_WINDOW, max(2, multiple * bars)) for multiple in HAR_WINDOW_MULTIPLES]
    return sorted(set(windows))


def har_columns(bars: int) -> list[str]:
    """The baseline-input columns the HAR baseline of a ``bars`` horizon regresses on."""
    return [f"{name}_{window}" for name in HAR_ESTIMATORS for window in har_windows(bars)]


def baseline_inputs(candles: pd.DataFrame, horizons: Any) -> pd.DataFrame:
    """What the naive baselines read: trailing realised volatility and range over the HAR
    windows of every horizon (and past returns)."""
    bars = Bars.from_candles(candles)
    columns: dict[str, np.ndarray] = {}
    windows = sorted({w for h in set(horizons) for w in har_windows(int(h))})
    for name in HAR_ESTIMATORS:
        estimator = get_indicator(name)
        for window in windows:
            columns.update(estimator.run(bars, estimator.resolve({"window": window})))
    returns = get_indicator("log_return")
    for h in sorted(set(horizons)):
        columns.update(returns.run(bars, returns.resolve({"n": h})))
    seasonal = get_indicator(HAR_SEASONAL)
    columns.update(seasonal.run(bars, seasonal.resolve({})))
    return pd.DataFrame(columns, index=candles.index)


def interval_scale(frame: pd.DataFrame, bars: int) -> list[str] | None:
    """The columns whose per-row mean scales normalised conformal scores at ``bars``: the HAR
    baseline's trailing realised volatility and range (not its gap columns, about zero around
    the clock), when ``frame`` holds them all."""
    columns = [c for c in har_columns(bars) if c.startswith(SCALE_PREFIXES)]
    return columns if all(c in frame.columns for c in columns) else None
