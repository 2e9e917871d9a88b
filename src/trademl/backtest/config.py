"""Backtest configs (YAML), validated before any data loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trademl.backtest.strategy_table import STRATEGIES
from trademl.config import load_config_file
from trademl.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StrategySection(_Strict):
    """Which strategy turns which model's predictions into signals."""

    kind: str = "maxmin"
    preset: Literal["conservative", "aggressive"] | None = None
    model: str | None = None
    horizon: str | int | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        try:
            STRATEGIES.get(kind)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        return kind


class CostsSection(_Strict):
    """Trading costs, in basis points (never negative)."""

    fee_bps: float = Field(default=10.0, ge=0.0)
    slippage_bps: float = Field(default=5.0, ge=0.0)


class SizingSection(_Strict):
    """Fixed-fraction sizing."""

    risk_fraction: float = Field(default=0.01, gt=0.0, le=1.0)
    initial_equity: float = Field(default=100_000.0, gt=0.0)


class PBOSection(_Strict):
    """How a sweep's probability of backtest overfitting is estimated: CPCV over the grid's
    per-bar returns, ``n_groups`` groups with ``n_groups / 2`` tested per split, purged and
    embargoed by the strategy's holding horizon."""

    n_groups: int = Field(default=8, ge=2, le=16)

    @model_validator(mode="after")
    def _even(self) -> PBOSection:
        if self.n_groups % 2:
            raise ValueError(f"pbo.n_groups must be even, got {self.n_groups}")
        return self


class BacktestConfig(_Strict):
    """``trademl backtest CONFIG.yaml``: ``run`` (a train output folder) or ``train`` (a run
    config to train first), the strategy, costs, sizing, an optional sweep grid, ``output``."""

    run: str | None = None
    train: str | None = None
    strategy: StrategySection = Field(default_factory=StrategySection)
    costs: CostsSection = Field(default_factory=CostsSection)
    sizing: SizingSection = Field(default_factory=SizingSection)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    pbo: PBOSection = Field(default_factory=PBOSection)
    output: str

    @model_validator(mode="after")
    def _source(self) -> BacktestConfig:
        if (self.run is None) == (self.train is None):
            raise ValueError(
                "give exactly one of 'run' (a train output folder) or 'train' (a run config)"
            )
        return self


def load_backtest_config(source: str | Path | dict[str, Any]) -> BacktestConfig:
    """Read and validate a backtest config; errors name the key and the choices."""
    return load_config_file(
        source,
        BacktestConfig,
        "a backtest config is a mapping with run or train, strategy and output",
    )
