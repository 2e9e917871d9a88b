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

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from trademl.backtest.signals import Signals
from trademl.data.candles import candle_index, validate_candles
from trademl.errors import ConfigError

__all__ = ["EXIT_REASONS", "TRADE_COLUMNS", "BacktestResult", "run_backtest"]

#: Exit reasons, indexed by the integer code the kernel writes.
EXIT_REASONS: tuple[str, ...] = ("stop", "target", "time", "end")
_STOP, _TARGET, _TIME, _END = 0, 1, 2, 3

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


def _backtest_kernel(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    side: np.ndarray,
    stop: np.ndarray,
    target: np.ndarray,
    max_bars: np.ndarray,
    size: np.ndarray,
    fee_rate: float,
    slip_rate: float,
    risk_fraction: float,
    notional_fraction: float,
    initial_equity: float,
    target_first: bool,
) -> tuple[Any, ...]:
    """Run the bar loop; see the module docstring for the rules. Plain arrays and scalars only."""
    n = open_.shape[0]
    t_entry = np.empty(n, np.int64)
    t_exit = np.empty(n, np.int64)
    t_side = np.empty(n, np.int8)
    t_entry_px = np.empty(n, np.float64)
    t_exit_px = np.empty(n, np.float64)
    t_stop = np.empty(n, np.float64)
    t_target = np.empty(n, np.float64)
    t_reason = np.empty(n, np.int8)
    t_qty = np.empty(n, np.float64)
    t_gross = np.empty(n, np.float64)
    t_fees = np.empty(n, np.float64)
    equity = np.empty(n, np.float64)

    cash = initial_equity
    count = 0
    skipped = 0
    pending = -1
    in_pos = False
    d = 0.0
    qty = 0.0
    entry_px = 0.0
    entry_fee = 0.0
    sl = np.nan
    tg = np.nan
    has_s = False
    has_t = False
    limit = 0
    entry_bar = 0

    for i in range(n):
        o = open_[i]
        # 1. Enter at this open on the previous bar's signal.
        if pending >= 0:
            j = pending
            pending = -1
            dj = float(side[j])
            sj = stop[j]
            tj = target[j]
            hs = not np.isnan(sj)
            ht = not np.isnan(tj)
            if dj > 0.0:
                gapped = (hs and o <= sj) or (ht and o >= tj)
            else:
                gapped = (hs and o >= sj) or (ht and o <= tj)
            if gapped or cash <= 0.0:
                skipped += 1
            else:
                d = dj
                sl = sj
                tg = tj
                has_s = hs
                has_t = ht
                entry_px = o * (1.0 + d * slip_rate)
                if has_s:
                    qty = risk_fraction * cash / abs(entry_px - sl)
                else:
                    qty = notional_fraction * cash / entry_px
                qty *= size[j]
                entry_fee = fee_rate * qty * entry_px
                limit = max_bars[j]
                entry_bar = i
                in_pos = True

        # 2. Exit during this bar.
        if in_pos:
            h = high[i]
            lo = low[i]
            c = close[i]
            if d > 0.0:
                stop_gap = has_s and o <= sl
                tgt_gap = has_t and o >= tg
                stop_hit = has_s and lo <= sl
                tgt_hit = has_t and h >= tg
            else:
                stop_gap = has_s and o >= sl
                tgt_gap = has_t and o <= tg
                stop_hit = has_s and h >= sl
                tgt_hit = has_t and lo <= tg
            reason = -1
            level = 0.0
            if stop_gap:
                reason = _STOP
                level = o
            elif tgt_gap:
                reason = _TARGET
                level = o
            elif stop_hit and tgt_hit:
                if target_first:
                    reason = _TARGET
                    level = tg
                else:
                    reason = _STOP
                    level = sl
            elif stop_hit:
                reason = _STOP
                level = sl
            elif tgt_hit:
                reason = _TARGET
                level = tg
            elif limit > 0 and i - entry_bar + 1 >= limit:
                reason = _TIME
                level = c
            elif i == n - 1:
                reason = _END
                level = c
            if reason >= 0:
                exit_px = level * (1.0 - d * slip_rate)
                gross = d * qty * (exit_px - entry_px)
                fees = entry_fee + fee_rate * qty * exit_px
                cash += gross - fees
                t_entry[count] = entry_bar
                t_exit[count] = i
                t_side[count] = 1 if d > 0.0 else -1
                t_entry_px[count] = entry_px
                t_exit_px[count] = exit_px
                t_stop[count] = sl
                t_target[count] = tg
                t_reason[count] = reason
                t_qty[count] = qty
                t_gross[count] = gross
                t_fees[count] = fees
                count += 1
                in_pos = False

        # 3. Mark to market at the close.
        if in_pos:
            equity[i] = cash - entry_fee + d * qty * (close[i] - entry_px)
        else:
            equity[i] = cash

        # 4. A signal at this close (only when flat, and only if a next bar exists).
        if not in_pos and side[i] != 0 and i < n - 1:
            pending = i

    return (
        count,
        skipped,
        equity,
        t_entry,
        t_exit,
        t_side,
        t_entry_px,
        t_exit_px,
        t_stop,
        t_target,
        t_reason,
        t_qty,
        t_gross,
        t_fees,
    )


def _compile(func: Callable[..., Any]) -> Any:
    """``njit(cache=True)``, or plain ``njit`` when no cache directory is writable."""
    try:
        return njit(cache=True)(func)
    except RuntimeError as error:  # numba found no writable cache locator
        warnings.warn(
            f"numba cannot cache the backtest kernel ({error}); it will compile on every run",
            RuntimeWarning,
            stacklevel=2,
        )
        return njit(func)


_kernel: Any = _compile(_backtest_kernel)


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
    fee_bps, slippage_bps, risk_fraction, notional_fraction, initial_equity, target_first:
        The parameters the run used.
    skipped_entries:
        Signals not entered because the entry bar's open had already gapped to or beyond the
        stop or the target (or equity was not positive).
    """

    trades: pd.DataFrame
    equity: pd.Series
    fee_bps: float
    slippage_bps: float
    risk_fraction: float
    notional_fraction: float
    initial_equity: float
    target_first: bool
    skipped_entries: int

    @property
    def final_equity(self) -> float:
        """Equity at the last close (all positions closed)."""
        return float(self.equity.iloc[-1])

    @property
    def params(self) -> dict[str, float | bool]:
        """The run's parameters as a plain dict."""
        return {
            "fee_bps": self.fee_bps,
            "slippage_bps": self.slippage_bps,
            "risk_fraction": self.risk_fraction,
            "notional_fraction": self.notional_fraction,
            "initial_equity": self.initial_equity,
            "target_first": self.target_first,
        }


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
    stop = np.ascontiguousarray(signals.stop, dtype=np.float64).copy()
    target = np.ascontiguousarray(signals.target, dtype=np.float64).copy()
    max_bars = np.ascontiguousarray(signals.max_bars, dtype=np.int64).copy()
    size = np.ascontiguousarray(signals.size, dtype=np.float64).copy()
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
    candles: pd.DataFrame,
    signals: Signals,
    *,
    fee_bps: float = 0.0,
    slippage_bps: float = 0.0,
    risk_fraction: float = 0.01,
    notional_fraction: float = 1.0,
    initial_equity: float = 100_000.0,
    target_first: bool = False,
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
    fee_bps:
        Fee per side, in basis points of the fill's notional (>= 0).
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
    fee = _check_number("fee_bps", fee_bps, low=0.0, low_open=False, high=np.inf)
    slip = _check_number("slippage_bps", slippage_bps, low=0.0, low_open=False, high=np.inf)
    if slip >= 10_000.0:
        raise ConfigError(f"slippage_bps must be below 10000 (100%), got {slippage_bps!r}")
    risk = _check_number("risk_fraction", risk_fraction, low=0.0, low_open=True, high=1.0)
    notional = _check_number(
        "notional_fraction", notional_fraction, low=0.0, low_open=True, high=np.inf
    )
    equity0 = _check_number("initial_equity", initial_equity, low=0.0, low_open=True, high=np.inf)

    validate_candles(candles)
    index = candle_index(candles)
    open_, high, low, close = (
        candles[column].to_numpy(dtype=np.float64, copy=True)
        for column in ("open", "high", "low", "close")
    )
    side, stop, target, max_bars, size = _check_signals(signals, index, close)

    (
        count,
        skipped,
        equity,
        t_entry,
        t_exit,
        t_side,
        t_entry_px,
        t_exit_px,
        t_stop,
        t_target,
        t_reason,
        t_qty,
        t_gross,
        t_fees,
    ) = _kernel(
        open_,
        high,
        low,
        close,
        side,
        stop,
        target,
        max_bars,
        size,
        fee / 10_000.0,
        slip / 10_000.0,
        risk,
        notional,
        equity0,
        bool(target_first),
    )
    k = int(count)
    entry_bar, exit_bar = t_entry[:k], t_exit[:k]
    entry_px, stop_k, qty = t_entry_px[:k], t_stop[:k], t_qty[:k]
    pnl = t_gross[:k] - t_fees[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        r_multiple = pnl / (qty * np.abs(entry_px - stop_k))
    trades = pd.DataFrame(
        {
            "entry_time": index[entry_bar],
            "exit_time": index[exit_bar],
            "side": np.where(t_side[:k] > 0, "long", "short"),
            "entry_price": entry_px,
            "exit_price": t_exit_px[:k],
            "stop": stop_k,
            "target": t_target[:k],
            "exit_reason": np.asarray(EXIT_REASONS)[t_reason[:k]],
            "bars_held": exit_bar - entry_bar + 1,
            "quantity": qty,
            "gross_pnl": t_gross[:k],
            "fees": t_fees[:k],
            "pnl": pnl,
            "r_multiple": r_multiple,
        },
        columns=list(TRADE_COLUMNS),
    )
    return BacktestResult(
        trades=trades,
        equity=pd.Series(equity, index=index, name="equity"),
        fee_bps=fee,
        slippage_bps=slip,
        risk_fraction=risk,
        notional_fraction=notional,
        initial_equity=equity0,
        target_first=bool(target_first),
        skipped_entries=int(skipped),
    )
