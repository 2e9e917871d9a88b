"""The backtest engine: hand-computed cases for each rule, properties and bad input."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trademl.backtest.engine import TRADE_COLUMNS, BacktestResult, run_backtest
from trademl.backtest.signals import Signals
from trademl.data.candles import make_candles
from trademl.errors import ConfigError, DataValidationError

NAN = float("nan")


def candles(bars: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    """Candles from (open, high, low, close) rows, hourly from 2024-01-01 UTC."""
    arr = np.asarray(bars, dtype=np.float64)
    idx = pd.date_range("2024-01-01", periods=len(bars), freq="h", tz="UTC")
    return make_candles(idx, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], np.ones(len(bars)))


def signals(
    frame: pd.DataFrame,
    at: dict[int, tuple[int, float, float]] | None = None,
    *,
    max_bars: dict[int, int] | None = None,
    size: dict[int, float] | None = None,
) -> Signals:
    """Signals on ``frame``: ``at[bar] = (side, stop, target)``."""
    s = Signals.empty(pd.DatetimeIndex(frame.index))
    for bar, (side, stop, target) in (at or {}).items():
        s.side[bar] = side
        s.stop[bar] = stop
        s.target[bar] = target
    for bar, limit in (max_bars or {}).items():
        s.max_bars[bar] = limit
    for bar, scale in (size or {}).items():
        s.size[bar] = scale
    return s


def one_trade(result: BacktestResult) -> pd.Series:
    assert len(result.trades) == 1
    return result.trades.iloc[0]


# Long at the close 100 of bar 0 with stop 95 and target 110: quantity = 1000 / 5 = 200.
FLAT = (100.0, 101.0, 99.0, 100.0)


def long_case(*later: tuple[float, float, float, float], **kwargs: object) -> BacktestResult:
    frame = candles([FLAT, FLAT, *later])
    return run_backtest(frame, signals(frame, {0: (1, 95.0, 110.0)}), **kwargs)  # type: ignore[arg-type]


def test_entry_at_next_open_and_end_exit() -> None:
    frame = candles([(10, 10, 10, 10), (11, 12, 10.5, 11.5), (12, 13, 11, 12)])
    result = run_backtest(frame, signals(frame, {0: (1, NAN, NAN)}))
    trade = one_trade(result)
    assert list(result.trades.columns) == list(TRADE_COLUMNS)
    assert trade.entry_time == frame.index[1]
    assert trade.exit_time == frame.index[2]
    assert trade.side == "long"
    assert trade.entry_price == 11.0
    assert trade.exit_price == 12.0
    assert trade.exit_reason == "end"
    assert trade.bars_held == 2
    # No stop: notional_fraction (1.0) of equity.
    assert trade.quantity == pytest.approx(100_000 / 11)
    assert trade.pnl == pytest.approx(100_000 / 11)
    assert math.isnan(trade.r_multiple)
    # Mark to market: flat, then 100000/11 units marked at 11.5, then closed at 12.
    expected = [100_000, 100_000 + 0.5 * 100_000 / 11, 100_000 + 100_000 / 11]
    np.testing.assert_allclose(result.equity.to_numpy(), expected)
    assert result.equity.index.equals(frame.index)
    assert result.final_equity == pytest.approx(100_000 + 100_000 / 11)


def test_stop_hit_intrabar() -> None:
    trade = one_trade(long_case((99, 100, 94, 96)))
    assert trade.exit_reason == "stop"
    assert trade.exit_price == 95.0
    assert trade.quantity == pytest.approx(200.0)
    assert trade.pnl == pytest.approx(-1000.0)
    assert trade.r_multiple == pytest.approx(-1.0)
    assert trade.bars_held == 2


def test_stop_hit_on_the_entry_bar() -> None:
    frame = candles([FLAT, (100, 101, 94, 96)])
    trade = one_trade(run_backtest(frame, signals(frame, {0: (1, 95.0, 110.0)})))
    assert (trade.exit_reason, trade.exit_price, trade.bars_held) == ("stop", 95.0, 1)


def test_gap_through_stop_exits_at_the_open() -> None:
    trade = one_trade(long_case((93, 94, 90, 92)))
    assert (trade.exit_reason, trade.exit_price) == ("stop", 93.0)
    assert trade.pnl == pytest.approx(200 * -7.0)
    assert trade.r_multiple == pytest.approx(-1.4)


def test_target_hit() -> None:
    trade = one_trade(long_case((101, 111, 100, 105)))
    assert (trade.exit_reason, trade.exit_price) == ("target", 110.0)
    assert trade.pnl == pytest.approx(2000.0)
    assert trade.r_multiple == pytest.approx(2.0)


def test_gap_through_target_exits_at_the_open() -> None:
    trade = one_trade(long_case((112, 113, 111, 112)))
    assert (trade.exit_reason, trade.exit_price) == ("target", 112.0)
    assert trade.pnl == pytest.approx(2400.0)


def test_both_touched_stop_first_by_default() -> None:
    trade = one_trade(long_case((100, 111, 94, 100)))
    assert (trade.exit_reason, trade.exit_price) == ("stop", 95.0)


def test_both_touched_target_first_when_configured() -> None:
    result = long_case((100, 111, 94, 100), target_first=True)
    trade = one_trade(result)
    assert (trade.exit_reason, trade.exit_price) == ("target", 110.0)
    assert result.execution["target_first"] is True


def test_time_exit_at_the_max_bars_th_close() -> None:
    frame = candles([FLAT, (100, 101, 99, 100.5), (100.5, 102, 100, 101.5), (101, 103, 100, 102)])
    result = run_backtest(frame, signals(frame, {0: (1, 95.0, 110.0)}, max_bars={0: 2}))
    trade = one_trade(result)
    assert (trade.exit_reason, trade.exit_price, trade.bars_held) == ("time", 101.5, 2)
    assert trade.exit_time == frame.index[2]
    assert trade.pnl == pytest.approx(200 * 1.5)


def test_max_bars_one_exits_at_the_entry_bar_close() -> None:
    frame = candles([FLAT, (100, 101, 99, 100.5), FLAT])
    trade = one_trade(run_backtest(frame, signals(frame, {0: (1, 95.0, NAN)}, max_bars={0: 1})))
    assert (trade.exit_reason, trade.exit_price, trade.bars_held) == ("time", 100.5, 1)


def test_end_of_data_exit_at_the_last_close() -> None:
    trade = one_trade(long_case((100, 102, 98, 101), (101, 103, 100, 102.5)))
    assert (trade.exit_reason, trade.exit_price, trade.bars_held) == ("end", 102.5, 3)
    assert trade.pnl == pytest.approx(200 * 2.5)


def test_fees_and_slippage_arithmetic() -> None:
    # Long, no stop, 10 bps slippage, 5 bps fee per side; exit at the end close 110.
    frame = candles([FLAT, FLAT, (105, 111, 104, 110)])
    result = run_backtest(frame, signals(frame, {0: (1, NAN, NAN)}), fee_bps=5.0, slippage_bps=10.0)
    trade = one_trade(result)
    entry, exit_ = 100 * 1.001, 110 * 0.999
    qty = 100_000 / entry
    fees = 0.0005 * qty * (entry + exit_)
    assert trade.entry_price == pytest.approx(100.1)
    assert trade.exit_price == pytest.approx(109.89)
    assert trade.quantity == pytest.approx(qty)
    assert trade.gross_pnl == pytest.approx(qty * (exit_ - entry))
    assert trade.fees == pytest.approx(fees)
    assert trade.pnl == pytest.approx(qty * (exit_ - entry) - fees)
    assert result.final_equity == pytest.approx(100_000 + trade.pnl)
    # While open, equity = cash − entry fee + qty · (close − entry).
    assert result.equity.iloc[1] == pytest.approx(
        100_000 - 0.0005 * qty * entry + qty * (100 - entry)
    )


def test_stop_fill_is_slipped_and_sized_on_the_slipped_entry() -> None:
    result = long_case((99, 100, 94, 96), slippage_bps=10.0, fee_bps=2.0)
    trade = one_trade(result)
    entry, exit_ = 100.1, 95 * 0.999
    qty = 1000 / (entry - 95)
    assert trade.quantity == pytest.approx(qty)
    assert trade.exit_price == pytest.approx(exit_)
    assert trade.fees == pytest.approx(0.0002 * qty * (entry + exit_))
    assert trade.r_multiple == pytest.approx(trade.pnl / 1000)


def test_sizing_by_risk_fraction_and_size_compounds() -> None:
    frame = candles([FLAT, FLAT, (99, 100, 97, 99), FLAT, (100, 105, 99, 104)])
    at = {0: (1, 98.0, NAN), 2: (1, 97.0, NAN)}
    result = run_backtest(
        frame, signals(frame, at, size={0: 0.5}), risk_fraction=0.02, initial_equity=50_000.0
    )
    first, second = result.trades.iloc[0], result.trades.iloc[1]
    # 0.02 · 50000 / (100 − 98) · 0.5 = 250 units, stopped at 98: −500.
    assert first.quantity == pytest.approx(250.0)
    assert (first.exit_reason, first.pnl) == ("stop", pytest.approx(-500.0))
    # Re-entered at the open 100 of bar 3 on the signal of the exit bar 2, equity 49500:
    # 0.02 · 49500 / (100 − 97) = 330 units, closed at 104 at the end.
    assert second.entry_time == frame.index[3]
    assert second.quantity == pytest.approx(330.0)
    assert second.pnl == pytest.approx(330 * 4.0)
    assert result.final_equity == pytest.approx(50_000 - 500 + 1320)


def test_short_mirrors_long() -> None:
    def short(*later: tuple[float, float, float, float], **kw: Any) -> pd.Series:
        frame = candles([FLAT, FLAT, *later])
        return one_trade(run_backtest(frame, signals(frame, {0: (-1, 105.0, 90.0)}), **kw))

    trade = short((100, 101, 89, 92))
    assert (trade.side, trade.exit_reason, trade.exit_price) == ("short", "target", 90.0)
    assert trade.quantity == pytest.approx(200.0)
    assert trade.pnl == pytest.approx(2000.0)
    assert trade.r_multiple == pytest.approx(2.0)
    trade = short((101, 106, 100, 104))
    assert (trade.exit_reason, trade.exit_price, trade.pnl) == ("stop", 105.0, pytest.approx(-1000))
    trade = short((107, 108, 106, 107))
    assert (trade.exit_reason, trade.exit_price, trade.pnl) == ("stop", 107.0, pytest.approx(-1400))
    trade = short((88, 89, 87, 88))
    assert (trade.exit_reason, trade.exit_price, trade.pnl) == ("target", 88.0, pytest.approx(2400))
    trade = short((100, 106, 89, 100))
    assert (trade.exit_reason, trade.exit_price) == ("stop", 105.0)
    trade = short((100, 106, 89, 100), target_first=True)
    assert (trade.exit_reason, trade.exit_price) == ("target", 90.0)
    # Slippage on a short: sells lower, buys back higher.
    trade = short((100, 101, 89, 92), slippage_bps=10.0)
    assert trade.entry_price == pytest.approx(99.9)
    assert trade.exit_price == pytest.approx(90.09)
    assert trade.quantity == pytest.approx(1000 / (105 - 99.9))


def test_signals_ignored_while_in_a_position() -> None:
    frame = candles([FLAT, FLAT, FLAT, (99, 100, 94, 96), FLAT, FLAT])
    at = {0: (1, 95.0, NAN), 1: (-1, 105.0, NAN), 2: (1, 90.0, NAN), 3: (1, 90.0, NAN)}
    result = run_backtest(frame, signals(frame, at))
    assert len(result.trades) == 2
    first, second = result.trades.iloc[0], result.trades.iloc[1]
    # Bars 1 and 2 are in the first trade; it is stopped during bar 3, so bar 3's signal enters.
    assert (first.entry_time, first.exit_time) == (frame.index[1], frame.index[3])
    assert (second.entry_time, second.exit_time) == (frame.index[4], frame.index[5])
    assert second.exit_reason == "end"


def test_entry_skipped_when_the_open_gapped_beyond_the_stop() -> None:
    frame = candles([FLAT, (94, 95, 93, 94), FLAT])
    result = run_backtest(frame, signals(frame, {0: (1, 95.0, NAN)}))
    assert result.trades.empty
    assert result.skipped_entries == 1
    assert (result.equity == 100_000).all()


def test_signal_on_the_last_bar_is_ignored() -> None:
    frame = candles([FLAT, FLAT])
    result = run_backtest(frame, signals(frame, {1: (1, NAN, NAN)}))
    assert result.trades.empty
    assert result.skipped_entries == 0
    assert result.params["initial_equity"] == 100_000.0


# --- properties ---------------------------------------------------------------------------


def random_case(seed: int, n: int) -> tuple[pd.DataFrame, Signals]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * (1 + rng.exponential(0.005, n))
    low = np.minimum(open_, close) * (1 - rng.exponential(0.005, n))
    idx = pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")
    frame = make_candles(idx, open_, high, low, close, np.ones(n))
    side = rng.choice(np.array([-1, 0, 0, 1], dtype=np.int8), n)
    stop = close * (1 - side * rng.uniform(0.02, 0.05, n))
    stop[rng.random(n) < 0.3] = np.nan
    target = close * (1 + side * rng.uniform(0.002, 0.05, n))
    target[rng.random(n) < 0.3] = np.nan
    max_bars = rng.integers(0, 6, n)
    size = rng.uniform(0.2, 1.0, n)
    return frame, Signals(pd.DatetimeIndex(idx), side, stop, target, max_bars, size)


def bar_positions(frame: pd.DataFrame, times: pd.Series) -> np.ndarray:
    return np.asarray(frame.index.get_indexer(pd.DatetimeIndex(times)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 120),
    target_first=st.booleans(),
    fee=st.floats(0, 20),
    slip=st.floats(0, 20),
)
def test_properties(seed: int, n: int, target_first: bool, fee: float, slip: float) -> None:
    frame, sig = random_case(seed, n)
    kwargs = {"risk_fraction": 0.01, "notional_fraction": 0.2, "target_first": target_first}
    free = run_backtest(frame, sig, **kwargs)  # type: ignore[arg-type]
    costly = run_backtest(frame, sig, fee_bps=fee, slippage_bps=slip, **kwargs)  # type: ignore[arg-type]
    for result in (free, costly):
        trades = result.trades
        entry = bar_positions(frame, trades.entry_time)
        exit_ = bar_positions(frame, trades.exit_time)
        # No exit before entry; bars_held consistent.
        assert (exit_ >= entry).all()
        assert (trades.bars_held.to_numpy() == exit_ - entry + 1).all()
        # No two overlapping positions: each entry comes after the previous exit bar.
        assert (entry[1:] > exit_[:-1]).all()
        # Each trade enters on the bar after a signal of its side.
        sides = np.where(trades.side == "long", 1, -1)
        assert (sig.side[entry - 1] == sides).all()
        # P&L of the trades sums to the equity change; the curve ends flat.
        assert result.final_equity - 100_000 == pytest.approx(trades.pnl.sum(), abs=1e-6)
        assert (result.equity > 0).all()
        np.testing.assert_allclose(trades.pnl, trades.gross_pnl - trades.fees)
    # Exits depend on raw prices and levels only, so costs change no entry/exit bar; per unit
    # traded, costs never increase a trade's P&L (the quantity itself depends on costs and on
    # the equity path, so P&L is compared per unit).
    pd.testing.assert_series_equal(free.trades.entry_time, costly.trades.entry_time)
    pd.testing.assert_series_equal(free.trades.exit_time, costly.trades.exit_time)
    per_unit_free = free.trades.pnl / free.trades.quantity
    per_unit_costly = costly.trades.pnl / costly.trades.quantity
    assert (per_unit_costly <= per_unit_free + 1e-9).all()
    assert (costly.trades.fees >= 0).all()


# --- bad input ----------------------------------------------------------------------------


@pytest.fixture
def frame() -> pd.DataFrame:
    return candles([FLAT, FLAT, FLAT])


def test_signals_not_aligned(frame: pd.DataFrame) -> None:
    other = pd.DatetimeIndex(frame.index + pd.Timedelta("1min"))
    with pytest.raises(
        ConfigError, match="not aligned with the candles: index differs at position 0"
    ):
        run_backtest(frame, Signals.empty(other))
    with pytest.raises(ConfigError, match="2 signal bars for 3 candles"):
        run_backtest(frame, Signals.empty(pd.DatetimeIndex(frame.index[:2])))


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ((1, 100.0, NAN), "long signal at 2024-01-01T01:00:00\\+00:00 has stop 100.0 on the wrong"),
        ((1, NAN, 99.0), "long signal .* has target 99.0 on the wrong side: it must be above"),
        ((-1, 99.0, NAN), "short signal .* has stop 99.0 on the wrong side: it must be above"),
        ((-1, NAN, 100.0), "short signal .* has target 100.0 .* must be below the signal bar"),
    ],
)
def test_levels_on_the_wrong_side_at_signal_time(
    frame: pd.DataFrame, at: tuple[int, float, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_backtest(frame, signals(frame, {1: at}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fee_bps": -1.0}, "fee_bps must be a finite number in \\[0, inf\\), got -1.0"),
        ({"slippage_bps": -0.5}, "slippage_bps must be a finite number"),
        ({"slippage_bps": 10_000.0}, "slippage_bps must be below 10000"),
        ({"fee_bps": float("nan")}, "fee_bps must be a finite number"),
        ({"risk_fraction": 0.0}, "risk_fraction must be a finite number in \\(0, 1\\], got 0.0"),
        ({"risk_fraction": 1.5}, "risk_fraction must be a finite number in \\(0, 1\\], got 1.5"),
        ({"notional_fraction": 0.0}, "notional_fraction must be"),
        ({"initial_equity": -5.0}, "initial_equity must be"),
    ],
)
def test_bad_parameters(frame: pd.DataFrame, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_backtest(frame, signals(frame), **kwargs)  # type: ignore[arg-type]


def test_risk_fraction_one_is_allowed(frame: pd.DataFrame) -> None:
    assert run_backtest(frame, signals(frame), risk_fraction=1.0).trades.empty


def test_bad_signal_arrays(frame: pd.DataFrame) -> None:
    s = signals(frame)
    s.side[0] = 2
    with pytest.raises(ConfigError, match=r"signals\.side must be -1, 0 or \+1, got 2"):
        run_backtest(frame, s)
    with pytest.raises(ConfigError, match=r"signals\.size must be a finite number > 0"):
        run_backtest(frame, signals(frame, {0: (1, NAN, NAN)}, size={0: 0.0}))
    with pytest.raises(ConfigError, match=r"signals\.max_bars must be >= 0"):
        run_backtest(frame, signals(frame, {0: (1, NAN, NAN)}, max_bars={0: -1}))
    with pytest.raises(ConfigError, match=r"signals\.stop is inf"):
        run_backtest(frame, signals(frame, {0: (-1, float("inf"), NAN)}))


def test_bad_candles_raise_data_validation_error(frame: pd.DataFrame) -> None:
    broken = frame.copy()
    broken.loc[broken.index[1], "low"] = 200.0
    with pytest.raises(DataValidationError, match="ohlc_consistency"):
        run_backtest(broken, signals(frame))
