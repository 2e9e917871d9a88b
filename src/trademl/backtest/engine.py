"""The bar-by-bar backtest engine: a numba kernel and its typed Python wrapper.

Semantics (one position at a time, all prices in the candles' quote currency):

* **Entry.** A signal at the close of bar ``t`` enters at the open of bar ``t + 1``; a signal on
  the last bar is ignored (there is no next open). Signals are ignored while a position is open
  at the signal bar's close; a position that exits during bar ``t`` leaves the trader flat at its
  close, so a signal on that same bar ``t`` is taken.
* **Stop and target validity.** At *signal time* the levels are checked against the signal
  bar's close: a long needs ``stop < close < target``, a short ``target < close < stop`` (NaN =
  no level). A violation raises :class:`~trademl.errors.ConfigError` naming the bar. At *entry
  time* the raw open of the entry bar is checked the same way: when it has already gapped to or
  beyond the stop or the target, the entry is **skipped** (counted in
  :attr:`BacktestResult.skipped_entries`), because the risk distance would be undefined.
* **Exits**, checked from the entry bar on, in this order on each bar:

  1. the open gapped to or beyond the stop: exit at the open (``"stop"``);
  2. the open gapped to or beyond the target: exit at the open (``"target"``);
  3. the bar's range touches both levels: the stop is taken first (at the stop price) unless
     ``target_first=True`` (then at the target price);
  4. the range touches only the stop or only the target: exit at that level;
  5. the position has been held ``max_bars`` bars (the entry bar counts as bar 1): exit at the
     close of that bar (``"time"``);
  6. the last bar of the data: exit at its close (``"end"``).

* **Costs.** Slippage (``slippage_bps``) worsens every fill against the trader: a long buys at
  ``price · (1 + s)`` and sells at ``price · (1 − s)``, a short the mirror. Fees (``fee_bps``
  per side) are charged on the notional ``quantity · fill price`` of the entry and of the exit.
* **Sizing.** With a stop, ``quantity = risk_fraction · equity / |entry − stop| · size`` where
  ``entry`` is the slipped entry fill and ``equity`` the realised equity at entry (so the loss
  at the stop, before costs and gaps, is ``risk_fraction`` of equity). Without a stop,
  ``quantity = notional_fraction · equity / entry · size``. There is no leverage cap: a tight stop
  gives a large notional. No entry is taken while equity is zero or negative.
* **Equity** is marked to market at every bar's close: realised equity, minus the entry fee
  already paid, plus ``side · quantity · (close − entry)``. After the last bar every position is
  closed, so the final equity equals ``initial_equity`` plus the sum of the trades' net P&L.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np
import pandas as pd

from trademl.backtest.kernel import EXIT_REASONS, Costs, simulate_serial
from trademl.backtest.signals import Signals
from trademl.data.candles import PRICE_COLUMNS, candle_index, validate_candles
from trademl.errors import ConfigError

__all__ = ["EXIT_REASONS", "TRADE_COLUMNS", "BacktestResult", "run_backtest", "trades_frame"]

#: Trade sides, indexed by ``side > 0``.
SIDES: tuple[str, ...] = ("short", "long")
_SIDES, _REASONS = pd.Index(SIDES), pd.Index(EXIT_REASONS)

TRADE_COLUMNS: tuple[str, ...] = (
    "entry_time",
    "exit_time",
    "side",
    "entry_price",
    "exit_price",
    "stop",
    "target",
    "exit_reason",
    "bars_held",
    "quantity",
    "gross_pnl",
    "fees",
    "pnl",
    "r_multiple",
)


def trades_frame(
    index: pd.DatetimeIndex,
    trades_i: np.ndarray,
    trades_f: np.ndarray,
    assets: pd.Index | None = None,
) -> pd.DataFrame:
    """The trades table from the kernel's integer and float trade rows (see kernel.py); with
    ``assets``, an ``asset`` column comes first."""
    entry_bar, exit_bar = trades_i[:, 0], trades_i[:, 1]
    entry_px, stop, qty = trades_f[:, 0], trades_f[:, 2], trades_f[:, 4]
    gross, fees = trades_f[:, 5], trades_f[:, 6]
    pnl = gross - fees
    with np.errstate(invalid="ignore", divide="ignore"):
        r_multiple = pnl / (qty * np.abs(entry_px - stop))
    columns: dict[str, object] = {}
    if assets is not None:
        columns["asset"] = assets[trades_i[:, 4]]
    columns.update(
        {
            "entry_time": index[entry_bar],
            "exit_time": index[exit_bar],
            # Categoricals: building string columns costs more than the simulation itself.
            "side": pd.Categorical.from_codes((trades_i[:, 2] > 0).astype(np.int8), _SIDES),
            "entry_price": entry_px,
            "exit_price": trades_f[:, 1],
            "stop": stop,
            "target": trades_f[:, 3],
            "exit_reason": pd.Categorical.from_codes(trades_i[:, 3], _REASONS),
            "bars_held": exit_bar - entry_bar + 1,
            "quantity": qty,
            "gross_pnl": gross,
            "fees": fees,
            "pnl": pnl,
            "r_multiple": r_multiple,
        }
    )
    return pd.DataFrame(columns)


class ExecutionParams(TypedDict, total=False):
    """Keyword parameters of :func:`run_backtest` and
    :func:`~trademl.backtest.panel.run_backtest_panel` (documented on :func:`run_backtest`)."""

    fee_bps: float
    slippage_bps: float
    risk_fraction: float
    notional_fraction: float
    initial_equity: float
    target_first: bool


@dataclass(frozen=True)
class BacktestResult:
    """What :func:`run_backtest` returns.

    Attributes
    ----------
    trades:
        One row per closed trade, columns :data:`TRADE_COLUMNS`. ``entry_time`` and
        ``exit_time`` are the timestamps of the entry and exit *bars*; prices include slippage;
        ``pnl = gross_pnl − fees``; ``r_multiple = pnl / (quantity · |entry_price − stop|)``
        (NaN without a stop).
    equity:
        Mark-to-market equity at each bar's close, indexed like the candles.
    execution:
        The execution parameters the run used, defaults filled in.
    skipped_entries:
        Signals not entered because the entry bar's open had already gapped to or beyond the
        stop or the target (or equity was not positive).
    """

    trades: pd.DataFrame
    equity: pd.Series
    execution: ExecutionParams
    skipped_entries: int

    @property
    def final_equity(self) -> float:
        """Equity at the last close (all positions closed)."""
        return float(self.equity.iloc[-1])

    @property
    def params(self) -> dict[str, object]:
        """The run's parameters as a plain dict."""
        return {**self.execution}


def _when(index: pd.DatetimeIndex, position: int) -> str:
    return str(index[position].isoformat())


def _check_number(name: str, value: float, *, low: float, low_open: bool, high: float) -> float:
    number = float(value)
    ok = np.isfinite(number) and (number > low if low_open else number >= low) and number <= high
    if not ok:
        bracket = "(" if low_open else "["
        upper = "inf)" if high == np.inf else f"{high:g}]"
        raise ConfigError(
            f"{name} must be a finite number in {bracket}{low:g}, {upper}, got {value!r}"
        )
    return number


def kernel_costs(execution: ExecutionParams) -> Costs:
    """The tuple the kernel takes from validated parameters (rates, not basis points)."""
    return (
        execution["fee_bps"] / 10_000.0,
        execution["slippage_bps"] / 10_000.0,
        execution["risk_fraction"],
        execution["notional_fraction"],
        execution["initial_equity"],
        execution["target_first"],
    )


# (name, default, lower bound excluded?, upper bound); every lower bound is 0.
_LIMITS: tuple[tuple[str, float, bool, float], ...] = (
    ("fee_bps", 0.0, False, np.inf),
    ("slippage_bps", 0.0, False, np.inf),
    ("risk_fraction", 0.01, True, 1.0),
    ("notional_fraction", 1.0, True, np.inf),
    ("initial_equity", 100_000.0, True, np.inf),
)


def check_execution(params: ExecutionParams) -> ExecutionParams:
    """Validate execution parameters (fees, slippage, sizing); return them all, defaults filled
    in. Unknown names are refused."""
    unknown = sorted(set(params) - set(ExecutionParams.__annotations__))
    if unknown:
        raise ConfigError(
            f"unknown backtest parameter(s) {', '.join(unknown)}; expected "
            f"{', '.join(ExecutionParams.__annotations__)}"
        )
    values: dict[str, float] = {}
    for name, default, low_open, high in _LIMITS:
        value = params.get(name, default)
        values[name] = _check_number(name, value, low=0.0, low_open=low_open, high=high)  # type: ignore[arg-type]
    if values["slippage_bps"] >= 10_000.0:
        raise ConfigError(
            f"slippage_bps must be below 10000 (100%), got {params.get('slippage_bps')!r}"
        )
    return {
        "fee_bps": values["fee_bps"],
        "slippage_bps": values["slippage_bps"],
        "risk_fraction": values["risk_fraction"],
        "notional_fraction": values["notional_fraction"],
        "initial_equity": values["initial_equity"],
        "target_first": bool(params.get("target_first", False)),
    }


def _check_signals(
    signals: Signals, index: pd.DatetimeIndex, close: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Validate ``signals`` against the candles; return contiguous kernel arrays."""
    if not isinstance(signals, Signals):
        raise ConfigError(f"signals must be a Signals object, got {type(signals).__name__}")
    if len(signals.index) != len(index):
        raise ConfigError(
            f"signals are not aligned with the candles: {len(signals.index)} signal bars "
            f"for {len(index)} candles"
        )
    if not signals.index.equals(index):
        differ = np.flatnonzero(signals.index.asi8 != index.asi8)
        p = int(differ[0]) if len(differ) else 0
        raise ConfigError(
            "signals are not aligned with the candles: index differs at position "
            f"{p} (signal bar {signals.index[p]}, candle {index[p]})"
        )
    side = np.asarray(signals.side)
    bad_side = ~np.isin(side, (-1, 0, 1))
    if bad_side.any():
        p = int(np.flatnonzero(bad_side)[0])
        raise ConfigError(
            f"signals.side must be -1, 0 or +1, got {side[p].item()!r} at {_when(index, p)}"
        )
    side = side.astype(np.int8)
    # The kernel only reads its inputs, so no defensive copies.
    stop = np.ascontiguousarray(signals.stop, dtype=np.float64)
    target = np.ascontiguousarray(signals.target, dtype=np.float64)
    max_bars = np.ascontiguousarray(signals.max_bars, dtype=np.int64)
    size = np.ascontiguousarray(signals.size, dtype=np.float64)
    active = side != 0

    for name, levels in (("stop", stop), ("target", target)):
        bad = active & np.isinf(levels)
        if bad.any():
            p = int(np.flatnonzero(bad)[0])
            raise ConfigError(
                f"signals.{name} is {levels[p]} at {_when(index, p)}; use NaN for none"
            )
    bad = active & (max_bars < 0)
    if bad.any():
        p = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"signals.max_bars must be >= 0 (0 = no limit), got {max_bars[p]} at {_when(index, p)}"
        )
    bad = active & ~(np.isfinite(size) & (size > 0))
    if bad.any():
        p = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"signals.size must be a finite number > 0 on signal bars, got {size[p]} "
            f"at {_when(index, p)}"
        )

    long_, short = side == 1, side == -1
    with np.errstate(invalid="ignore"):
        checks = (
            ("stop", long_ & (stop >= close), "long", "below"),
            ("target", long_ & (target <= close), "long", "above"),
            ("stop", short & (stop <= close), "short", "above"),
            ("target", short & (target >= close), "short", "below"),
        )
    for name, bad, label, where in checks:
        if bad.any():
            p = int(np.flatnonzero(bad)[0])
            level = stop[p] if name == "stop" else target[p]
            raise ConfigError(
                f"{label} signal at {_when(index, p)} has {name} {level} on the wrong side: "
                f"it must be {where} the signal bar's close {close[p]}"
            )
    return side, stop, target, max_bars, size


def run_backtest(
    candles: pd.DataFrame, signals: Signals, **params: Unpack[ExecutionParams]
) -> BacktestResult:
    """Backtest ``signals`` on ``candles``, one position at a time.

    The rules (entry at the next open, stop/target/time/end exits, gap handling, costs, sizing)
    are those of the module docstring.

    Parameters
    ----------
    candles:
        A Candles frame (validated here).
    signals:
        Per-bar signals on exactly the candles' index.
    **params:
        Execution parameters (:class:`ExecutionParams`):
    fee_bps:
        Fee per side, in basis points of the fill's notional (>= 0; default 0).
    slippage_bps:
        Adverse price move on every fill, in basis points (0 <= slippage_bps < 10,000).
    risk_fraction:
        Fraction of current equity lost at the stop (before costs and gaps), in (0, 1].
    notional_fraction:
        Fraction of current equity put into a trade without a stop (> 0; above 1 = leverage).
    initial_equity:
        Starting equity (> 0).
    target_first:
        When a bar touches both the stop and the target, take the target (default: the stop).

    Returns
    -------
    BacktestResult
        The trades, the equity curve and the parameters used.

    Raises
    ------
    DataValidationError
        The candles break the Candles contract.
    ConfigError
        A bad parameter, signals not aligned with the candles, or a stop/target on the wrong side
        of the signal bar's close.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from trademl.data.candles import make_candles
    >>> idx = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    >>> c = make_candles(idx, np.array([10.0, 10, 11]), np.array([10.0, 11, 12]),
    ...                  np.array([10.0, 10, 11]), np.array([10.0, 11, 12]), np.ones(3))
    >>> s = Signals.empty(c.index)
    >>> s.side[0] = 1
    >>> r = run_backtest(c, s)
    >>> r.trades[["entry_price", "exit_price", "exit_reason", "bars_held"]].values.tolist()
    [[10.0, 12.0, 'end', 2]]
    """
    execution = check_execution(params)
    validate_candles(candles)
    index = candle_index(candles)
    open_, high, low, close = (
        np.ascontiguousarray(candles[column].to_numpy(dtype=np.float64)) for column in PRICE_COLUMNS
    )
    side, stop, target, max_bars, size = _check_signals(signals, index, close)

    column = (-1, 1)
    # Validated above with messages naming the rule, so the kernel's own check is skipped.
    *_, skipped, equity, trades_i, trades_f = simulate_serial(
        tuple(a.reshape(column) for a in (open_, high, low, close)),
        tuple(a.reshape(column) for a in (side, stop, target, max_bars, size)),
        kernel_costs(execution),
        False,
    )
    return BacktestResult(
        trades=trades_frame(index, trades_i, trades_f),
        equity=pd.Series(equity[:, 0], index=index, name="equity", copy=False),
        execution=execution,
        skipped_entries=int(skipped[0]),
    )
