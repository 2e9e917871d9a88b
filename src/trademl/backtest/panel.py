"""Many assets in one compiled call: wide OHLC frames (bars × assets) and 2-D signal arrays.

The rules are exactly :func:`~trademl.backtest.engine.run_backtest`'s (each asset is its own
account starting from ``initial_equity``); the difference is speed. Inputs are validated in one
compiled pass and simulated in one kernel call, so a sweep over hundreds of assets pays no
per-asset Python overhead. Assets run on numba's threads (``NUMBA_NUM_THREADS``); note that
numba's OpenMP pool and PyTorch's compete when one process does both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Unpack

import numpy as np
import pandas as pd

from trademl.backtest.engine import (
    ExecutionParams,
    check_execution,
    kernel_costs,
    trades_frame,
)
from trademl.backtest.kernel import simulate_parallel, simulate_serial
from trademl.data.candles import PRICE_COLUMNS
from trademl.errors import ConfigError, DataValidationError

__all__ = ["PanelResult", "PanelSignals", "run_backtest_panel"]


@dataclass(frozen=True)
class PanelSignals:
    """Signal arrays of shape ``(bars, assets)``; the per-bar meaning is :class:`Signals`'."""

    side: np.ndarray
    stop: np.ndarray
    target: np.ndarray
    max_bars: np.ndarray
    size: np.ndarray

    def __post_init__(self) -> None:
        shape = np.shape(self.side)
        if len(shape) != 2:
            raise ConfigError(f"signals.side must be 2-D (bars, assets), got shape {shape}")
        for name in ("stop", "target", "max_bars", "size"):
            if np.shape(getattr(self, name)) != shape:
                raise ConfigError(
                    f"signals.{name} has shape {np.shape(getattr(self, name))}, expected {shape} "
                    "like signals.side"
                )

    @classmethod
    def from_side(
        cls,
        side: np.ndarray | pd.DataFrame,
        stop: np.ndarray | pd.DataFrame | None = None,
        target: np.ndarray | pd.DataFrame | None = None,
        *,
        max_bars: int = 0,
        size: float = 1.0,
    ) -> PanelSignals:
        """Signals from a side array and optional stop/target price arrays (NaN = none)."""
        # Column-major like pandas' own blocks: the kernel walks one asset at a time.
        sides = np.asfortranarray(side, dtype=np.int8)
        shape = sides.shape

        def levels(values: np.ndarray | pd.DataFrame | None) -> np.ndarray:
            if values is None:
                return np.full(shape, np.nan, order="F")
            return np.asfortranarray(values, dtype=np.float64)

        return cls(
            sides,
            levels(stop),
            levels(target),
            np.full(shape, max_bars, dtype=np.int64, order="F"),
            np.full(shape, size, dtype=np.float64, order="F"),
        )


@dataclass(frozen=True)
class PanelResult:
    """What :func:`run_backtest_panel` returns.

    Attributes
    ----------
    trades:
        One row per closed trade: ``asset`` then the columns of
        :data:`~trademl.backtest.engine.TRADE_COLUMNS`, grouped by asset in column order.
    equity:
        Mark-to-market equity per asset (columns) at each bar's close.
    skipped_entries:
        Per asset, signals not entered (gapped entry or no equity).
    """

    trades: pd.DataFrame
    equity: pd.DataFrame
    skipped_entries: pd.Series


def _prices(prices: Mapping[str, pd.DataFrame]) -> tuple[pd.DatetimeIndex, pd.Index]:
    missing = [key for key in PRICE_COLUMNS if key not in prices]
    if missing:
        raise ConfigError(f"prices lack {', '.join(missing)}; expected frames {PRICE_COLUMNS}")
    first = prices["open"]
    if not isinstance(first, pd.DataFrame):
        raise ConfigError(f"prices['open'] must be a DataFrame, got {type(first).__name__}")
    index = first.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise DataValidationError(
            "prices must be indexed by a UTC DatetimeIndex (bars)", rule="index_type"
        )
    if len(index) == 0 or first.shape[1] == 0:
        raise DataValidationError(f"prices are empty (shape {first.shape})", rule="empty")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise DataValidationError(
            "price timestamps must be unique and increasing", rule="unsorted_timestamp"
        )
    for key in PRICE_COLUMNS[1:]:
        frame = prices[key]
        if not (frame.index.equals(index) and frame.columns.equals(first.columns)):
            raise ConfigError(
                f"prices[{key!r}] is not aligned with prices['open']: same bars and assets needed"
            )
    return index, first.columns


def _describe(code: int, bar: str, asset: str) -> str:
    where = f"asset {asset!r} at {bar}"
    return {
        1: f"a price is not a finite number for {where}",
        2: f"a price is not positive for {where}",
        3: f"low is above min(open, close) for {where}",
        4: f"high is below max(open, close) for {where}",
        5: f"signals.side must be -1, 0 or +1 ({where})",
        6: f"signals.stop is infinite for {where}; use NaN for none",
        7: f"signals.target is infinite for {where}; use NaN for none",
        8: f"signals.max_bars must be >= 0 (0 = no limit) ({where})",
        9: f"signals.size must be a finite number > 0 on signal bars ({where})",
        10: f"long signal for {where} has its stop on the wrong side: it must be below the close",
        11: f"long signal for {where} has its target on the wrong side: it must be above the close",
        12: f"short signal for {where} has its stop on the wrong side: it must be above the close",
        13: f"short signal for {where} has its target on the wrong side: it must be below the close",
    }[code]


def run_backtest_panel(
    prices: Mapping[str, pd.DataFrame], signals: PanelSignals, **params: Unpack[ExecutionParams]
) -> PanelResult:
    """Backtest every asset of a panel at once, each as its own account.

    Parameters
    ----------
    prices:
        ``{"open", "high", "low", "close"}`` → DataFrames with the same UTC bar index and the
        same asset columns (volume is not needed).
    signals:
        :class:`PanelSignals` of shape ``(bars, assets)``.
    **params:
        Fees, slippage and sizing, as in :func:`~trademl.backtest.engine.run_backtest`.

    Raises
    ------
    DataValidationError
        Prices that are not finite, not positive or not OHLC-consistent.
    ConfigError
        Bad parameters, misaligned frames, or signals breaking a rule (the message names the
        asset and bar).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> idx = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    >>> px = pd.DataFrame({"A": [10.0, 11, 12], "B": [20.0, 19, 18]}, index=idx)
    >>> side = np.zeros((3, 2), np.int8); side[0] = 1
    >>> r = run_backtest_panel({k: px for k in ("open", "high", "low", "close")},
    ...                        PanelSignals.from_side(side))
    >>> r.trades[["asset", "entry_price", "exit_price", "exit_reason"]].values.tolist()
    [['A', 11.0, 12.0, 'end'], ['B', 19.0, 18.0, 'end']]
    """
    execution = check_execution(params)
    index, assets = _prices(prices)
    if not isinstance(signals, PanelSignals):
        raise ConfigError(f"signals must be PanelSignals, got {type(signals).__name__}")
    if signals.side.shape != (len(index), len(assets)):
        raise ConfigError(
            f"signals have shape {signals.side.shape}; the prices have {len(index)} bars × "
            f"{len(assets)} assets"
        )
    ohlc = tuple(np.asarray(prices[key].to_numpy(dtype=np.float64)) for key in PRICE_COLUMNS)
    arrays = (
        np.asarray(signals.side, dtype=np.int8),
        np.asarray(signals.stop, dtype=np.float64),
        np.asarray(signals.target, dtype=np.float64),
        np.asarray(signals.max_bars, dtype=np.int64),
        np.asarray(signals.size, dtype=np.float64),
    )
    simulate = simulate_parallel if len(assets) > 1 else simulate_serial
    code, bar, column, skipped, equity, trades_i, trades_f = simulate(
        ohlc, arrays, kernel_costs(execution), True
    )
    if code:
        message = _describe(int(code), index[bar].isoformat(), str(assets[column]))
        raise (DataValidationError if code <= 4 else ConfigError)(message)
    return PanelResult(
        trades=trades_frame(index, trades_i, trades_f, assets),
        equity=pd.DataFrame(equity, index=index, columns=assets, copy=False),
        skipped_entries=pd.Series(skipped, index=assets, name="skipped_entries"),
    )
