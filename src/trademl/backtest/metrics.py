"""Backtest metrics: returns, risk, trade statistics, the deflated Sharpe ratio, a buy-and-hold
baseline and a Monte Carlo resampling of the trades.

Conventions: returns are the simple per-bar returns of the equity curve
(``equity.pct_change()``); drawdowns are positive fractions of the running peak (0.2 = 20%
below the peak); Sharpe and Sortino ratios are annualised by ``sqrt(periods_per_year)`` and no
risk-free rate is subtracted.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from trademl.errors import ConfigError
from trademl.validation.overfitting import deflated_sharpe_ratio, sharpe_ratio

__all__ = ["backtest_metrics", "buy_and_hold", "drawdown", "monte_carlo"]

FloatArray = npt.NDArray[np.float64]

PERCENTILES = (5, 25, 50, 75, 95)
"""The percentiles :func:`monte_carlo` reports."""


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown from the running peak, as a positive fraction (0 at a new high).

    Parameters
    ----------
    equity:
        Equity curve.

    Returns
    -------
    pandas.Series
        ``1 - equity / equity.cummax()`` on the same index.
    """
    return 1.0 - equity / equity.cummax()


def _max_drawdown(values: FloatArray) -> float:
    if len(values) == 0:
        return math.nan
    peaks = np.maximum.accumulate(values)
    return float(np.max(1.0 - values / peaks))


def _drawdown_episode(values: FloatArray) -> tuple[int, int, int, int]:
    """Peak and end positions of the deepest drawdown and of the longest one.

    An episode runs from the bar of a peak to the first bar back at or above it (or to the last
    bar when equity never recovers).
    """
    peaks = np.maximum.accumulate(values)
    underwater = values < peaks
    deepest = int(np.argmax(1.0 - values / peaks))
    episodes: list[tuple[int, int]] = []
    start = -1
    for i, below in enumerate(underwater):
        if below and start < 0:
            start = i - 1
        elif not below and start >= 0:
            episodes.append((start, i))
            start = -1
    if start >= 0:
        episodes.append((start, len(values) - 1))
    if not episodes:
        return 0, 0, 0, 0
    deep = next(e for e in episodes if e[0] < deepest <= e[1])
    longest = max(episodes, key=lambda e: e[1] - e[0])
    return deep[0], deep[1], longest[0], longest[1]


def _exposure(trades: pd.DataFrame, index: pd.Index) -> float:
    if len(index) == 0:
        return math.nan
    if len(trades) == 0:
        return 0.0
    for column in ("entry_time", "exit_time"):
        if column not in trades.columns:
            raise ConfigError(f"trades have no {column!r} column")
    entry = index.searchsorted(pd.Index(trades["entry_time"]), side="left")
    exit_ = index.searchsorted(pd.Index(trades["exit_time"]), side="right")
    marks = np.zeros(len(index) + 1, dtype=np.int64)
    np.add.at(marks, entry, 1)
    np.add.at(marks, exit_, -1)
    held = np.cumsum(marks[:-1]) > 0
    return float(held.mean())


def _trade_stats(trades: pd.DataFrame) -> dict[str, float]:
    n = len(trades)
    pnl = trades["pnl"].to_numpy(dtype=np.float64) if "pnl" in trades.columns else np.array([])
    out: dict[str, float] = {}
    if n and len(pnl):
        gains, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
        out["win_rate"] = float(np.mean(pnl > 0))
        if losses > 0:
            out["profit_factor"] = float(gains / losses)
        else:
            out["profit_factor"] = math.inf if gains > 0 else math.nan
        out["expectancy"] = float(pnl.mean())
        out["avg_win"] = float(pnl[pnl > 0].mean()) if (pnl > 0).any() else math.nan
        out["avg_loss"] = float(pnl[pnl < 0].mean()) if (pnl < 0).any() else math.nan
    else:
        for key in ("win_rate", "profit_factor", "expectancy", "avg_win", "avg_loss"):
            out[key] = math.nan
    r = (
        trades["r_multiple"].to_numpy(dtype=np.float64)
        if "r_multiple" in trades.columns
        else np.array([])
    )
    r = r[np.isfinite(r)]
    out["expectancy_r"] = float(r.mean()) if len(r) else math.nan
    out["total_r"] = float(r.sum()) if len(r) else (0.0 if n == 0 else math.nan)
    if "bars_held" in trades.columns and n:
        out["avg_bars_held"] = float(trades["bars_held"].to_numpy(dtype=np.float64).mean())
    else:
        out["avg_bars_held"] = math.nan
    return out


def backtest_metrics(
    trades: pd.DataFrame,
    equity: pd.Series,
    *,
    periods_per_year: float,
    n_trials: int = 1,
    trials_sr_variance: float | None = None,
) -> dict[str, Any]:
    """Performance of a backtest from its trades and equity curve.

    Parameters
    ----------
    trades:
        One row per closed trade with ``entry_time``, ``exit_time`` and ``pnl``; ``r_multiple``
        and ``bars_held`` are used when present.
    equity:
        Equity marked to market at every bar, on the candles' index; its first value is the
        starting equity.
    periods_per_year:
        Bars per year, to annualise (e.g. 365 · 24 for hourly crypto bars, 252 for daily stocks).
    n_trials:
        Number of configurations tried before this one was selected, for the deflated Sharpe
        ratio. With 1 the deflated Sharpe ratio is the probabilistic Sharpe ratio against 0:
        the probability that the true Sharpe ratio is positive.
    trials_sr_variance:
        Variance of the *per-bar* (not annualised) Sharpe ratios of those trials; required when
        ``n_trials > 1``.

    Returns
    -------
    dict
        ``total_return``, ``annual_return`` (compounded: ``(1 + total) ** (periods_per_year /
        n_returns) - 1``), ``volatility`` (annualised), ``sharpe``, ``sortino`` (downside
        deviation ``sqrt(mean(min(r, 0)²))`` over all bars), ``calmar`` (annual return / max
        drawdown), ``max_drawdown`` (positive fraction), ``max_drawdown_bars`` and
        ``max_drawdown_duration`` (from the peak before the deepest drawdown to the bar that
        regains it, or to the last bar: bar count and Timedelta), ``longest_drawdown_bars`` and
        ``longest_drawdown_duration`` (the same for the longest drawdown), ``n_trades``,
        ``win_rate``, ``profit_factor`` (gross gains / gross losses, inf without losses),
        ``expectancy`` (mean pnl), ``avg_win``, ``avg_loss``, ``expectancy_r`` and ``total_r``
        (mean and sum of R multiples), ``avg_bars_held``, ``exposure`` (share of the equity bars
        with a position: bars whose timestamp lies in ``[entry_time, exit_time]`` of some trade),
        ``deflated_sharpe`` (NaN where the Sharpe ratio is undefined) and ``n_bars``.

    Raises
    ------
    ConfigError
        An empty or non-positive equity curve, a non-positive ``periods_per_year``, or
        ``n_trials > 1`` without ``trials_sr_variance``.
    """
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ConfigError(f"periods_per_year must be positive, got {periods_per_year!r}")
    if n_trials < 1:
        raise ConfigError(f"n_trials must be at least 1, got {n_trials!r}")
    if n_trials > 1 and trials_sr_variance is None:
        raise ConfigError("n_trials > 1 needs trials_sr_variance (variance of trial Sharpes)")
    values = equity.to_numpy(dtype=np.float64)
    if len(values) == 0:
        raise ConfigError("equity is empty")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ConfigError("equity must be finite and positive at every bar")
    returns = values[1:] / values[:-1] - 1.0
    n_returns = len(returns)
    total = float(values[-1] / values[0] - 1.0)
    annual = (1.0 + total) ** (periods_per_year / n_returns) - 1.0 if n_returns else math.nan
    sharpe = sharpe_ratio(returns, periods_per_year) if n_returns else math.nan
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if n_returns else 0.0
    sortino = (
        float(returns.mean()) / downside * math.sqrt(periods_per_year) if downside > 0 else math.nan
    )
    volatility = (
        float(returns.std(ddof=1)) * math.sqrt(periods_per_year) if n_returns > 1 else math.nan
    )
    max_dd = _max_drawdown(values)
    calmar = annual / max_dd if max_dd > 0 else math.nan
    deep_start, deep_end, long_start, long_end = _drawdown_episode(values)
    index = equity.index

    def span(start: int, end: int) -> Any:
        if isinstance(index, pd.DatetimeIndex):
            return index[end] - index[start]
        return end - start

    per_bar_sr = sharpe_ratio(returns) if n_returns else math.nan
    if math.isfinite(per_bar_sr) and n_returns >= 2:
        dsr = deflated_sharpe_ratio(
            per_bar_sr,
            n_returns,
            n_trials,
            0.0 if trials_sr_variance is None else trials_sr_variance,
            float(stats.skew(returns)),
            float(stats.kurtosis(returns, fisher=False)),
        )
    else:
        dsr = math.nan
    out: dict[str, Any] = {
        "total_return": total,
        "annual_return": annual,
        "volatility": volatility,
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": calmar,
        "max_drawdown": max_dd,
        "max_drawdown_bars": deep_end - deep_start,
        "max_drawdown_duration": span(deep_start, deep_end),
        "longest_drawdown_bars": long_end - long_start,
        "longest_drawdown_duration": span(long_start, long_end),
    }
    out["n_trades"] = len(trades)
    out.update(_trade_stats(trades))
    out["exposure"] = _exposure(trades, index)
    out["deflated_sharpe"] = dsr
    out["n_bars"] = len(values)
    return out


def buy_and_hold(candles: pd.DataFrame, initial_equity: float) -> pd.Series:
    """Equity of buying at the first bar's close and holding: the baseline curve.

    Parameters
    ----------
    candles:
        Candles with a ``close`` column.
    initial_equity:
        Starting equity (> 0), all of it invested; no fees.

    Returns
    -------
    pandas.Series
        ``initial_equity · close / close[0]`` on the candles' index, named ``"equity"``.

    Raises
    ------
    ConfigError
        No candles, no ``close`` column, a non-positive first close or ``initial_equity``.
    """
    if not (math.isfinite(initial_equity) and initial_equity > 0):
        raise ConfigError(f"initial_equity must be positive, got {initial_equity!r}")
    if "close" not in candles.columns or len(candles) == 0:
        raise ConfigError("buy_and_hold needs candles with a close column and at least one bar")
    close = candles["close"].astype(np.float64)
    first = float(close.iloc[0])
    if not (math.isfinite(first) and first > 0):
        raise ConfigError(f"the first close must be positive, got {first!r}")
    return (initial_equity * close / first).rename("equity")


def _percentiles(values: FloatArray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES}


def monte_carlo(
    trades: pd.DataFrame,
    initial_equity: float,
    *,
    n: int = 1000,
    seed: int = 0,
    method: Literal["returns", "r"] = "returns",
    risk_fraction: float = 0.01,
) -> dict[str, Any]:
    """Bootstrap the trade sequence: the spread of final equity and drawdown.

    Each of ``n`` paths draws ``len(trades)`` trades with replacement and compounds them from
    ``initial_equity``:

    * ``method="returns"`` (default): each trade's return relative to the equity at its entry,
      ``pnl_i / (initial_equity + sum of earlier pnl)``: exact for a backtest holding one
      position at a time (trades in ``exit_time`` order);
    * ``method="r"``: each trade's R multiple times ``risk_fraction`` (the share of equity risked
      per trade, fixed-fractional sizing).

    The drawdown of a path is measured on its equity after each trade (not bar by bar).

    Parameters
    ----------
    trades:
        Closed trades with ``pnl`` (``returns``) or ``r_multiple`` (``r``); ordered by
        ``exit_time`` when that column is present.
    initial_equity:
        Starting equity (> 0).
    n:
        Number of resampled paths (>= 1).
    seed:
        Seed of the generator: the same seed gives the same result.
    method:
        ``"returns"`` or ``"r"``, see above.
    risk_fraction:
        Equity share risked per trade for ``method="r"``, in (0, 1).

    Returns
    -------
    dict
        ``final_equity`` and ``max_drawdown``: dicts of the percentiles ``p5``, ``p25``, ``p50``,
        ``p75``, ``p95``; ``prob_loss`` (share of paths ending below ``initial_equity``);
        ``n_paths``, ``n_trades`` and ``method``. With no trades every path stays at
        ``initial_equity``.

    Raises
    ------
    ConfigError
        Bad ``initial_equity``, ``n``, ``method`` or ``risk_fraction``, a missing column, or a
        trade that loses all the equity.
    """
    if not (math.isfinite(initial_equity) and initial_equity > 0):
        raise ConfigError(f"initial_equity must be positive, got {initial_equity!r}")
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n!r}")
    if "exit_time" in trades.columns:
        trades = trades.sort_values("exit_time", kind="stable")
    if method == "returns":
        if "pnl" not in trades.columns:
            raise ConfigError("trades have no 'pnl' column")
        pnl = trades["pnl"].to_numpy(dtype=np.float64)
        before = initial_equity + np.concatenate(([0.0], np.cumsum(pnl)[:-1]))
        if np.any(before <= 0):
            raise ConfigError("equity reached zero: per-trade returns are undefined")
        per_trade = pnl / before
    elif method == "r":
        if not 0.0 < risk_fraction < 1.0:
            raise ConfigError(f"risk_fraction must lie in (0, 1), got {risk_fraction!r}")
        if "r_multiple" not in trades.columns:
            raise ConfigError("trades have no 'r_multiple' column")
        r = trades["r_multiple"].to_numpy(dtype=np.float64)
        per_trade = r[np.isfinite(r)] * risk_fraction
    else:
        raise ConfigError(f"method must be 'returns' or 'r', got {method!r}")
    if np.any(per_trade <= -1.0):
        raise ConfigError("a trade loses all the equity: compounding is undefined")
    m = len(per_trade)
    if m == 0:
        final = np.full(n, float(initial_equity))
        drawdowns = np.zeros(n)
    else:
        rng = np.random.default_rng(seed)
        draws = per_trade[rng.integers(0, m, size=(n, m))]
        paths = initial_equity * np.cumprod(1.0 + draws, axis=1)
        paths = np.concatenate([np.full((n, 1), float(initial_equity)), paths], axis=1)
        final = paths[:, -1]
        drawdowns = np.max(1.0 - paths / np.maximum.accumulate(paths, axis=1), axis=1)
    return {
        "final_equity": _percentiles(final),
        "max_drawdown": _percentiles(drawdowns),
        "prob_loss": float(np.mean(final < initial_equity)),
        "n_paths": n,
        "n_trades": m,
        "method": method,
    }
