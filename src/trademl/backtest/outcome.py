"""What a backtest produced, and which of a training run's models and horizons it trades."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from trademl.backtest.config import BacktestConfig
from trademl.config import RunConfig
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
