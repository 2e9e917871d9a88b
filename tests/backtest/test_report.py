"""The backtest report: a self-contained HTML file, a metrics JSON file, monthly returns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.backtest.engine import TRADE_COLUMNS
from trademl.backtest.report import (
    format_value,
    monthly_returns,
    write_metrics_json,
    write_report,
)
from trademl.data.sources.files import read_candle_file

METRICS = {
    "total_return": 0.123456,
    "sharpe": 1.5,
    "max_drawdown": -0.0812,
    "trades": 3.0,
    "profit_factor": float("inf"),
    "deflated_sharpe": float("nan"),
}
BASELINE = {"total_return": 0.0567, "sharpe": 0.75, "max_drawdown": -0.2345, "trades": 1.0}
HEADINGS = (
    "<h2>Run</h2>",
    "<h2>Metrics</h2>",
    "<h2>Price and trades</h2>",
    "<h2>Equity and drawdown</h2>",
    "<h2>Monthly returns</h2>",
    "<h2>R-multiple distribution</h2>",
)


@pytest.fixture(scope="module")
def candles(data_dir: Path) -> pd.DataFrame:
    return read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-2_000:]


def _trades(candles: pd.DataFrame) -> pd.DataFrame:
    idx, close = candles.index, candles["close"]
    rows = []
    for i, (side, reason, r) in enumerate(
        [("long", "target", 2.0), ("short", "stop", -1.0), ("long", "time", 0.4)]
    ):
        entry, exit_ = 100 + 500 * i, 150 + 500 * i
        price_in, price_out = float(close.iloc[entry]), float(close.iloc[exit_])
        gross = price_out - price_in
        stop, target = price_in * 0.98, price_in * 1.04
        rows.append(
            [idx[entry], idx[exit_], side, price_in, price_out, stop, target, reason, exit_ - entry]
        )
        rows[-1].extend([1.0, gross, 1.0, gross - 1.0, r])
    return pd.DataFrame(rows, columns=TRADE_COLUMNS)


def _equity(candles: pd.DataFrame) -> pd.Series:
    steps = np.random.default_rng(7).normal(0.0002, 0.004, len(candles))
    return pd.Series(10_000 * np.cumprod(1 + steps), index=candles.index, name="equity")


def _buy_and_hold(candles: pd.DataFrame) -> pd.Series:
    return 10_000 * candles["close"] / candles["close"].iloc[0]


def test_report_is_self_contained_with_every_section(candles: pd.DataFrame, tmp_path: Path) -> None:
    path = write_report(
        tmp_path / "out" / "report.html",
        candles=candles,
        trades=_trades(candles),
        equity=_equity(candles),
        metrics=METRICS,
        baseline_equity=_buy_and_hold(candles),
        baseline_metrics=BASELINE,
        title="BTC test run",
        max_candles=1_500,
        meta={"fee_bps": 7.5, "slippage_bps": 2.0},
    )
    assert path == tmp_path / "out" / "report.html"
    text = path.read_text(encoding="utf-8")
    assert "<title>BTC test run</title>" in text
    assert "<script src=" not in text
    assert '<script src="http' not in text
    assert "Plotly" in text and len(text) > 3_000_000  # the inline plotly.js bundle
    for heading in HEADINGS:
        assert heading in text
    assert "BTCUSDT" in text and "fee_bps = 7.5" in text
    assert "buy &amp; hold" in text
    for name, value in METRICS.items():
        assert f'<th scope="row">{name}</th><td>{format_value(value)}</td>' in text
    assert "<td>0.1235</td><td>0.0567</td>" in text  # strategy beside baseline
    assert "<td>inf</td>" in text and "<td>—</td>" in text
    assert "The last 1,500 of 2,000 bars" in text
    assert "exit: stop" in text and "exit: time" in text and "short entry" in text
    assert "exit: target" not in text  # the first trade lies before the last 1,500 bars
    assert "No trades" not in text
    assert not list(path.parent.glob(".part-*"))


def test_zero_trade_report(candles: pd.DataFrame, tmp_path: Path) -> None:
    trades = pd.DataFrame({c: pd.Series(dtype=object) for c in TRADE_COLUMNS})
    path = write_report(
        tmp_path / "empty.html",
        candles=candles,
        trades=trades,
        equity=pd.Series(10_000.0, index=candles.index),
        metrics={"total_return": 0.0, "trades": 0.0},
    )
    text = path.read_text(encoding="utf-8")
    assert "No trades were taken" in text
    for heading in HEADINGS:
        assert heading in text
    assert "buy &amp; hold" not in text
    assert "All 2,000 bars." in text


def test_monthly_returns_exact() -> None:
    idx = pd.DatetimeIndex(
        ["2023-11-15", "2023-11-30 23:00", "2023-12-31", "2024-01-10", "2024-03-31"], tz="UTC"
    )
    equity = pd.Series([100.0, 110.0, 99.0, 120.0, 150.0], index=idx)
    table = monthly_returns(equity)
    assert list(table.columns) == list(range(1, 13))
    assert list(table.index) == [2023, 2024]
    assert table.loc[2023, 11] == pytest.approx(0.10)
    assert table.loc[2023, 12] == pytest.approx(-0.10)
    assert table.loc[2024, 1] == pytest.approx(120 / 99 - 1)
    assert math.isnan(table.loc[2024, 2])
    assert table.loc[2024, 3] == pytest.approx(150 / 120 - 1)
    assert int(table.notna().sum().sum()) == 4
    assert monthly_returns(pd.Series([], dtype=float, index=pd.DatetimeIndex([]))).empty


def test_metrics_json_round_trips_with_nan_as_null(tmp_path: Path) -> None:
    path = write_metrics_json(
        tmp_path / "metrics.json",
        {**METRICS, "win_rate": np.float64(0.5)},
        BASELINE,
        meta={"symbol": "BTCUSDT", "start": pd.Timestamp("2024-01-01", tz="UTC")},
    )
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["metrics"]["deflated_sharpe"] is None
    assert data["metrics"]["profit_factor"] is None
    assert data["metrics"]["win_rate"] == 0.5
    assert data["metrics"]["total_return"] == METRICS["total_return"]
    assert data["baseline_metrics"] == BASELINE
    assert data["meta"] == {"symbol": "BTCUSDT", "start": "2024-01-01T00:00:00+00:00"}
    no_baseline = json.loads(write_metrics_json(tmp_path / "m2.json", BASELINE).read_text())
    assert no_baseline["baseline_metrics"] is None
