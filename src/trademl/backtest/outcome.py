"""What a backtest produced, and which of a training run's models and horizons it trades."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from trademl.backtest.config import BacktestConfig
from trademl.config import RunConfig
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError
from trademl.features.horizons import resolve_horizon


@dataclass(frozen=True)
class BacktestRun:
    """What a backtest produced (also written under ``output``)."""

    output: Path
    trades: pd.DataFrame
    equity: pd.Series
    metrics: dict[str, Any]
    baseline_metrics: dict[str, Any]


def choose_model(cfg: BacktestConfig, run_config: RunConfig) -> tuple[str, int]:
    """The strategy's model column and horizon (bars), checked against what the run trained."""
    timeframe = run_config.data.timeframe
    horizons = [resolve_horizon(h, timeframe) for h in run_config.labels.horizons]
    wanted = cfg.strategy.horizon
    horizon_bars = horizons[0] if wanted is None else resolve_horizon(wanted, timeframe)
    if horizon_bars not in horizons:
        raise ConfigError(
            f"strategy.horizon {wanted!r} ({horizon_bars} bars) was not trained; trained: {horizons}"
        )
    names = [m.name or m.kind for m in run_config.models]
    model = cfg.strategy.model or names[0]
    if model not in names:
        raise ConfigError(f"strategy.model {model!r} is not in the run; models: {', '.join(names)}")
    return model, horizon_bars


def traded_span(
    predicted: pd.Index, timeframe: str, horizon_bars: int
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The bars a backtest of ``predicted`` reads, ``[start, end)``: the predicted span and
    those a last trade needs to close (entry on the next bar, then the horizon). Bars the store
    holds beyond would run buy-and-hold on past what the strategy could trade.

    >>> index = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    >>> traded_span(index, "1h", 2)
    (Timestamp('2024-01-01 00:00:00+0000', tz='UTC'), Timestamp('2024-01-01 06:00:00+0000', tz='UTC'))
    """
    first, last = pd.Timestamp(predicted[0]), pd.Timestamp(predicted[-1])
    return first, last + Timeframe.parse(timeframe).delta * (horizon_bars + 2)
