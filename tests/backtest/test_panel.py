"""The panel engine: the same trades as the single-asset engine, asset by asset, and clear
errors naming the asset and bar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trademl.backtest.engine import TRADE_COLUMNS, run_backtest
from trademl.backtest.panel import PanelSignals, run_backtest_panel
from trademl.backtest.signals import Signals
from trademl.data.candles import make_candles
from trademl.errors import ConfigError, DataValidationError


def random_panel(seed: int, bars: int, assets: int) -> tuple[dict[str, pd.DataFrame], PanelSignals]:
    """A random-walk panel with long and short signals carrying stops, targets and time limits."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=bars, freq="h", tz="UTC", name="timestamp")
    names = [f"A{k}" for k in range(assets)]
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (bars, assets)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.002, (bars, assets)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, (bars, assets)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, (bars, assets)))
    prices = {
        key: pd.DataFrame(values, index=idx, columns=names)
        for key, values in (("open", open_), ("high", high), ("low", low), ("close", close))
    }
    side = rng.choice([-1, 0, 0, 0, 1], size=(bars, assets)).astype(np.int8)
    width = rng.uniform(0.002, 0.03, (bars, assets))
    stop = np.where(side == 0, np.nan, close * (1 - side * width))
    target = np.where(side == 0, np.nan, close * (1 + side * width * 1.5))
    stop[rng.random((bars, assets)) < 0.1] = np.nan  # some signals without a stop
    signals = PanelSignals(
        side,
        stop,
        target,
        rng.choice([0, 3, 10], size=(bars, assets)).astype(np.int64),
        rng.uniform(0.5, 1.5, (bars, assets)),
    )
    return prices, signals


def single(prices: dict[str, pd.DataFrame], signals: PanelSignals, k: int, **kw: float) -> object:
    idx = pd.DatetimeIndex(prices["open"].index)
    candles = make_candles(
        idx,
        *(prices[c].iloc[:, k].to_numpy() for c in ("open", "high", "low", "close")),
        np.ones(len(idx)),
    )
    one = Signals(
        idx,
        signals.side[:, k].copy(),
        signals.stop[:, k].copy(),
        signals.target[:, k].copy(),
        signals.max_bars[:, k].copy(),
        signals.size[:, k].copy(),
    )
    return run_backtest(candles, one, **kw)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    bars=st.integers(2, 80),
    assets=st.integers(1, 6),
    fee=st.sampled_from([0.0, 5.0]),
    slip=st.sampled_from([0.0, 3.0]),
    target_first=st.booleans(),
)
def test_panel_equals_each_asset_alone(
    seed: int, bars: int, assets: int, fee: float, slip: float, target_first: bool
) -> None:
    prices, signals = random_panel(seed, bars, assets)
    kw = {"fee_bps": fee, "slippage_bps": slip, "target_first": target_first}
    panel = run_backtest_panel(prices, signals, **kw)  # type: ignore[arg-type]
    assert list(panel.trades.columns) == ["asset", *TRADE_COLUMNS]
    for k, name in enumerate(prices["open"].columns):
        alone = single(prices, signals, k, **kw)  # type: ignore[arg-type]
        mine = panel.trades[panel.trades["asset"] == name].drop(columns="asset")
        pd.testing.assert_frame_equal(
            mine.reset_index(drop=True),
            alone.trades.reset_index(drop=True),
            check_dtype=False,  # type: ignore[attr-defined]
        )
        np.testing.assert_allclose(panel.equity[name].to_numpy(), alone.equity.to_numpy())  # type: ignore[attr-defined]
        assert panel.skipped_entries[name] == alone.skipped_entries  # type: ignore[attr-defined]


def test_trades_grouped_by_asset_in_column_order() -> None:
    prices, signals = random_panel(1, 300, 4)
    trades = run_backtest_panel(prices, signals).trades
    order = trades["asset"].map({n: i for i, n in enumerate(prices["open"].columns)})
    assert order.is_monotonic_increasing
    assert set(trades["asset"]) == set(prices["open"].columns)


def test_from_side_without_levels_holds_to_the_end() -> None:
    idx = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")
    px = pd.DataFrame({"A": [10.0, 11, 12, 13]}, index=idx)
    side = np.array([[1], [0], [0], [0]])
    result = run_backtest_panel(
        dict.fromkeys(("open", "high", "low", "close"), px),
        PanelSignals.from_side(side),
        fee_bps=10.0,
    )
    trade = result.trades.iloc[0]
    assert (trade.entry_price, trade.exit_price, trade.exit_reason) == (11.0, 13.0, "end")
    assert result.equity["A"].iloc[-1] == pytest.approx(100_000 + trade.pnl)


def test_bad_price_names_asset_and_bar() -> None:
    prices, signals = random_panel(2, 50, 3)
    prices["low"].iloc[17, 2] = prices["high"].iloc[17, 2] * 2
    with pytest.raises(DataValidationError, match=r"low is above.*'A2'.*2024-01-01T17:00"):
        run_backtest_panel(prices, signals)
    prices, signals = random_panel(2, 50, 3)
    prices["close"].iloc[5, 1] = np.nan
    with pytest.raises(DataValidationError, match=r"not a finite number.*'A1'"):
        run_backtest_panel(prices, signals)


def test_wrong_side_stop_names_asset_and_bar() -> None:
    prices, signals = random_panel(3, 40, 2)
    bar = int(np.flatnonzero(signals.side[:, 1] == 1)[0])
    signals.stop[bar, 1] = prices["close"].iloc[bar, 1] * 1.01
    with pytest.raises(ConfigError, match=r"long signal for asset 'A1'.*stop on the wrong side"):
        run_backtest_panel(prices, signals)


def test_misaligned_inputs_and_bad_costs() -> None:
    prices, signals = random_panel(4, 30, 2)
    shifted = dict(prices, high=prices["high"].iloc[1:])
    with pytest.raises(ConfigError, match="not aligned"):
        run_backtest_panel(shifted, signals)
    with pytest.raises(ConfigError, match="shape"):
        run_backtest_panel(prices, PanelSignals.from_side(np.zeros((29, 2))))
    with pytest.raises(ConfigError, match="fee_bps"):
        run_backtest_panel(prices, signals, fee_bps=-1.0)
    with pytest.raises(ConfigError, match="lack close"):
        run_backtest_panel({k: prices[k] for k in ("open", "high", "low")}, signals)
