"""The numba core of the backtest engine: one bar loop, run over every column of 2-D inputs.

Inputs are ``(bars, assets)`` arrays (a single asset is a ``(bars, 1)`` view), so one compiled
call simulates a whole panel without a Python round trip per asset. The rules are documented in
:mod:`trademl.backtest.engine`; this module holds only plain arrays and scalars.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

#: (open, high, low, close), each ``(bars, assets)`` float64.
Prices = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: (side int8, stop, target, max_bars int64, size), each ``(bars, assets)``.
SignalArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: (fee rate, slippage rate, risk fraction, notional fraction, initial equity, target first).
Costs = tuple[float, float, float, float, float, bool]

#: Exit reasons, indexed by the integer code the kernel writes.
EXIT_REASONS: tuple[str, ...] = ("stop", "target", "time", "end")
_STOP, _TARGET, _TIME, _END = 0, 1, 2, 3

#: Input violations the kernel detects, indexed by the code it returns (0 = none).
VIOLATIONS: tuple[str, ...] = (
    "",
    "price_not_finite",
    "price_not_positive",
    "low_above_open_close",
    "high_below_open_close",
    "bad_side",
    "infinite_stop",
    "infinite_target",
    "negative_max_bars",
    "bad_size",
    "long_stop",
    "long_target",
    "short_stop",
    "short_target",
)


def _renamed(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """The same function under another name, so numba caches its second compilation (other
    flags) in a file of its own."""
    clone = types.FunctionType(func.__code__, func.__globals__, name, func.__defaults__)
    clone.__qualname__ = name
    return clone


def _compile(func: Callable[..., Any], *, parallel: bool = False) -> Any:
    """``njit(cache=True)``, or plain ``njit`` when no cache directory is writable."""
    try:
        return njit(cache=True, parallel=parallel)(func)
    except RuntimeError as error:  # numba found no writable cache locator
        warnings.warn(
            f"numba cannot cache the backtest kernel ({error}); it will compile on every run",
            RuntimeWarning,
            stacklevel=2,
        )
        return njit(parallel=parallel)(func)


def _prices_ok(
    j: int, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> bool:
    """Branch-free screen of column ``j``'s prices (vectorisable); False sends the column to the
    exact scan. NaN fails every comparison, and ``h < inf`` rejects infinities."""
    ok = True
    for i in range(open_.shape[0]):
        o = open_[i, j]
        h = high[i, j]
        lo = low[i, j]
        c = close[i, j]
        ok &= (lo > 0.0) & (lo <= o) & (lo <= c) & (h >= o) & (h >= c) & (h < np.inf)
    return ok


def _price_violation(
    j: int, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> tuple[int, int]:
    """(code, bar) of the first bad price in column ``j``; code 0 = none (see VIOLATIONS)."""
    for i in range(open_.shape[0]):
        o = open_[i, j]
        h = high[i, j]
        lo = low[i, j]
        c = close[i, j]
        if not (np.isfinite(o) and np.isfinite(h) and np.isfinite(lo) and np.isfinite(c)):
            return 1, i
        if o <= 0.0 or h <= 0.0 or lo <= 0.0 or c <= 0.0:
            return 2, i
        if lo > min(o, c):
            return 3, i
        if h < max(o, c):
            return 4, i
    return 0, -1


def _signal_violation(
    j: int,
    close: np.ndarray,
    side: np.ndarray,
    stop: np.ndarray,
    target: np.ndarray,
    max_bars: np.ndarray,
    size: np.ndarray,
) -> tuple[int, int]:
    """(code, bar) of the first bad signal in column ``j``; code 0 = none (see VIOLATIONS)."""
    for i in range(side.shape[0]):
        d = side[i, j]
        if d == 0:
            continue
        if d != 1 and d != -1:
            return 5, i
        s = stop[i, j]
        t = target[i, j]
        c = close[i, j]
        if np.isinf(s):
            return 6, i
        if np.isinf(t):
            return 7, i
        if max_bars[i, j] < 0:
            return 8, i
        z = size[i, j]
        if not (np.isfinite(z) and z > 0.0):
            return 9, i
        if d == 1:
            if s >= c:
                return 10, i
            if t <= c:
                return 11, i
        else:
            if s <= c:
                return 12, i
            if t >= c:
                return 13, i
    return 0, -1


def _column_loop(
    j: int,
    prices: Prices,
    signals: SignalArrays,
    costs: Costs,
    equity: np.ndarray,
    trades_i: np.ndarray,
    trades_f: np.ndarray,
    start: int,
) -> tuple[int, int]:
    """Simulate column ``j``; write its trades from row ``start`` on. Returns (count, skipped).

    ``trades_i`` columns: entry bar, exit bar, side, exit reason, asset.
    ``trades_f`` columns: entry price, exit price, stop, target, quantity, gross P&L, fees.
    """
    open_, high, low, close = prices
    side, stop, target, max_bars, size = signals
    fee_rate, slip_rate, risk_fraction, notional_fraction, initial_equity, target_first = costs
    n = open_.shape[0]
    cash = initial_equity
    count = start
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

    i = -1
    while i < n - 1:
        i += 1
        if not in_pos and pending < 0:
            # Flat with nothing to enter (most bars): skip to the next signal in a tight loop.
            while i < n and side[i, j] == 0:
                equity[i, j] = cash
                i += 1
            if i == n:
                break
            equity[i, j] = cash
            if i < n - 1:
                pending = i
            continue
        o = open_[i, j]
        # 1. Enter at this open on the previous bar's signal.
        if pending >= 0:
            p = pending
            pending = -1
            dj = float(side[p, j])
            sj = stop[p, j]
            tj = target[p, j]
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
                qty *= size[p, j]
                entry_fee = fee_rate * qty * entry_px
                limit = max_bars[p, j]
                entry_bar = i
                in_pos = True

        # 2. Exit during this bar.
        if in_pos:
            h = high[i, j]
            lo = low[i, j]
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
                level = close[i, j]
            elif i == n - 1:
                reason = _END
                level = close[i, j]
            if reason >= 0:
                exit_px = level * (1.0 - d * slip_rate)
                gross = d * qty * (exit_px - entry_px)
                fees = entry_fee + fee_rate * qty * exit_px
                cash += gross - fees
                trades_i[count, 0] = entry_bar
                trades_i[count, 1] = i
                trades_i[count, 2] = 1 if d > 0.0 else -1
                trades_i[count, 3] = reason
                trades_i[count, 4] = j
                trades_f[count, 0] = entry_px
                trades_f[count, 1] = exit_px
                trades_f[count, 2] = sl
                trades_f[count, 3] = tg
                trades_f[count, 4] = qty
                trades_f[count, 5] = gross
                trades_f[count, 6] = fees
                count += 1
                in_pos = False

        # 3. Mark to market at the close.
        if in_pos:
            equity[i, j] = cash - entry_fee + d * qty * (close[i, j] - entry_px)
        else:
            equity[i, j] = cash

        # 4. A signal at this close (only when flat, and only if a next bar exists).
        if not in_pos and side[i, j] != 0 and i < n - 1:
            pending = i

    return count - start, skipped


def _simulate_panel(
    prices: Prices, signals: SignalArrays, costs: Costs, check: bool
) -> tuple[Any, ...]:
    """Simulate every column; returns (violation, bar, asset, skipped per asset, equity,
    trades_i, trades_f), trades grouped by asset in column order.

    Columns run in parallel in :data:`simulate_parallel` (numba threads; each asset is an
    independent account), one after the other in :data:`simulate_serial`. With
    ``check``, each column is validated just before it is simulated (while it is in cache); a
    violation is reported for the first offending column, with no trades.
    """
    open_, high, low, close = prices
    side, stop, target, max_bars, size = signals
    n, k = open_.shape
    # A trade can open and close on the same bar, so column j gets rows j*n .. (j+1)*n - 1 of
    # the buffers; pages never written are never touched, and the rows are compacted below.
    trades_i = np.empty((k * n, 5), np.int64)
    trades_f = np.empty((k * n, 7), np.float64)
    equity = np.empty((k, n), np.float64).T  # column-major, as pandas stores a frame
    skipped = np.zeros(k, np.int64)
    counts = np.zeros(k, np.int64)
    codes = np.zeros(k, np.int64)
    bars = np.full(k, -1, np.int64)
    for j in prange(k):
        if check:
            code, bar = 0, -1
            if not _prices_screen(j, open_, high, low, close):
                code, bar = _prices_scan(j, open_, high, low, close)
            if code == 0:
                code, bar = _signals_scan(j, close, side, stop, target, max_bars, size)
            if code != 0:
                codes[j] = code
                bars[j] = bar
                continue
        made, missed = _simulate_column(
            j, prices, signals, costs, equity, trades_i, trades_f, j * n
        )
        counts[j] = made
        skipped[j] = missed
    for j in range(k):
        if codes[j] != 0:
            return codes[j], bars[j], j, skipped, equity, trades_i[:0], trades_f[:0]
    out_i = np.empty((counts.sum(), 5), np.int64)
    out_f = np.empty((counts.sum(), 7), np.float64)
    row = 0
    for j in range(k):
        start = j * n
        for r in range(counts[j]):
            out_i[row] = trades_i[start + r]
            out_f[row] = trades_f[start + r]
            row += 1
    return 0, -1, -1, skipped, equity, out_i, out_f


_prices_screen: Any = _compile(_prices_ok)
_prices_scan: Any = _compile(_price_violation)
_signals_scan: Any = _compile(_signal_violation)
_simulate_column: Any = _compile(_column_loop)
#: One thread: what single-asset backtests and sweeps use. It never starts numba's thread
#: pool, whose OpenMP runtime would then compete with PyTorch's own in the same process (a
#: GRU trained after a backtest ran ~10x slower).
simulate_serial: Any = _compile(_simulate_panel)
#: Columns on numba's threads: for panels of many assets.
simulate_parallel: Any = _compile(
    _renamed(_simulate_panel, "_simulate_panel_parallel"), parallel=True
)
