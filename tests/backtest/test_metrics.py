"""Backtest metrics on hand-made equity curves and trades."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trademl.backtest.metrics import backtest_metrics, buy_and_hold, drawdown, monte_carlo
from trademl.errors import ConfigError
from trademl.validation.overfitting import probabilistic_sharpe_ratio, sharpe_ratio

INDEX = pd.date_range("2024-01-01", periods=11, freq="D")
# Peak 110 at bar 1, trough 88 at bar 3 (-20%), back above 110 at bar 5 (4 bars); then a
# shallower drawdown from the 121 peak at bar 5 that lasts to the last bar (5 bars).
EQUITY = pd.Series([100, 110, 99, 88, 104.5, 121, 118, 117, 119, 120, 120.0], index=INDEX)


def _trades() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entry_time": INDEX[[1, 4, 5, 9]],
            "exit_time": INDEX[[2, 6, 5, 10]],
            "side": [1, -1, 1, 1],
            "pnl": [10.0, -5.0, 20.0, -10.0],
            "r_multiple": [1.0, -0.5, 2.0, -1.0],
            "bars_held": [2, 3, 1, 2],
        }
    )


def test_metrics_on_hand_made_curve() -> None:
    m = backtest_metrics(_trades(), EQUITY, periods_per_year=252)
    returns = EQUITY.pct_change().dropna().to_numpy()
    assert m["total_return"] == pytest.approx(0.2)
    assert m["annual_return"] == pytest.approx(1.2 ** (252 / 10) - 1)
    assert m["max_drawdown"] == pytest.approx(0.2)
    assert m["max_drawdown_bars"] == 4
    assert m["max_drawdown_duration"] == pd.Timedelta(days=4)
    assert m["longest_drawdown_bars"] == 5
    assert m["longest_drawdown_duration"] == pd.Timedelta(days=5)
    assert m["calmar"] == pytest.approx(m["annual_return"] / 0.2)
    assert m["sharpe"] == pytest.approx(sharpe_ratio(returns, 252))
    downside = math.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
    assert m["sortino"] == pytest.approx(returns.mean() / downside * math.sqrt(252))
    assert m["n_trades"] == 4
    assert m["win_rate"] == 0.5
    assert m["profit_factor"] == pytest.approx(30.0 / 15.0)
    assert m["expectancy"] == pytest.approx(3.75)
    assert m["expectancy_r"] == pytest.approx(0.375)
    assert m["total_r"] == pytest.approx(1.5)
    assert m["avg_bars_held"] == pytest.approx(2.0)
    # Bars 1, 2, 4, 5, 6, 9, 10 are inside a trade (the overlap at bar 5 counts once).
    assert m["exposure"] == pytest.approx(7 / 11)
    assert m["n_bars"] == 11


def test_deflated_sharpe() -> None:
    m = backtest_metrics(_trades(), EQUITY, periods_per_year=252)
    returns = EQUITY.pct_change().dropna().to_numpy()
    psr = probabilistic_sharpe_ratio(
        sharpe_ratio(returns),
        0.0,
        len(returns),
        float(stats.skew(returns)),
        float(stats.kurtosis(returns, fisher=False)),
    )
    assert m["deflated_sharpe"] == pytest.approx(psr)  # one trial: the PSR against 0
    deflated = backtest_metrics(
        _trades(), EQUITY, periods_per_year=252, n_trials=50, trials_sr_variance=0.05
    )
    assert deflated["deflated_sharpe"] < m["deflated_sharpe"]
    with pytest.raises(ConfigError, match="trials_sr_variance"):
        backtest_metrics(_trades(), EQUITY, periods_per_year=252, n_trials=5)


def test_no_trades_and_flat_equity() -> None:
    empty = _trades().iloc[:0]
    flat = pd.Series(100.0, index=INDEX)
    m = backtest_metrics(empty, flat, periods_per_year=252)
    assert m["n_trades"] == 0 and m["exposure"] == 0.0
    assert m["max_drawdown"] == 0.0 and m["max_drawdown_bars"] == 0
    assert math.isnan(m["sharpe"]) and math.isnan(m["deflated_sharpe"])
    assert math.isnan(m["profit_factor"]) and m["total_r"] == 0.0
    with pytest.raises(ConfigError, match="periods_per_year"):
        backtest_metrics(empty, flat, periods_per_year=0)
    wins = _trades().assign(pnl=[1.0, 2.0, 3.0, 4.0])
    assert backtest_metrics(wins, EQUITY, periods_per_year=252)["profit_factor"] == math.inf


def test_drawdown_series() -> None:
    dd = drawdown(EQUITY)
    assert dd.iloc[3] == pytest.approx(0.2)
    assert dd.iloc[5] == 0.0


def test_buy_and_hold() -> None:
    candles = pd.DataFrame({"close": [50.0, 55.0, 45.0]}, index=INDEX[:3])
    equity = buy_and_hold(candles, 1000.0)
    assert equity.tolist() == pytest.approx([1000.0, 1100.0, 900.0])
    assert equity.index.equals(candles.index)
    with pytest.raises(ConfigError):
        buy_and_hold(candles, 0.0)


def test_monte_carlo_ordered_and_seeded() -> None:
    trades = _trades()
    a = monte_carlo(trades, 100.0, n=500, seed=1)
    b = monte_carlo(trades, 100.0, n=500, seed=1)
    c = monte_carlo(trades, 100.0, n=500, seed=2)
    assert a == b
    assert a != c
    for key in ("final_equity", "max_drawdown"):
        values = list(a[key].values())
        assert values == sorted(values)
        assert list(a[key]) == ["p5", "p25", "p50", "p75", "p95"]
    assert a["final_equity"]["p5"] < a["final_equity"]["p95"]
    assert a["max_drawdown"]["p5"] >= 0.0 and a["max_drawdown"]["p95"] < 1.0
    assert 0.0 <= a["prob_loss"] <= 1.0
    r = monte_carlo(trades, 100.0, n=200, seed=1, method="r", risk_fraction=0.02)
    assert r["n_trades"] == 4 and r["method"] == "r"


def test_monte_carlo_known_answers() -> None:
    # +10% of the equity at entry each time: every path ends at 100 · 1.1².
    same = pd.DataFrame({"exit_time": INDEX[:2], "pnl": [10.0, 11.0], "r_multiple": [1.0, 1.0]})
    out = monte_carlo(same, 100.0, n=50)
    assert list(out["final_equity"].values()) == pytest.approx([121.0] * 5)
    assert out["max_drawdown"]["p95"] == 0.0 and out["prob_loss"] == 0.0
    by_r = monte_carlo(same, 100.0, n=50, method="r", risk_fraction=0.01)
    assert by_r["final_equity"]["p50"] == pytest.approx(100.0 * 1.01**2)
    none = monte_carlo(same.iloc[:0], 100.0, n=10)
    assert none["final_equity"]["p50"] == 100.0 and none["n_trades"] == 0
    with pytest.raises(ConfigError, match="method"):
        monte_carlo(same, 100.0, method="kelly")  # type: ignore[arg-type]
