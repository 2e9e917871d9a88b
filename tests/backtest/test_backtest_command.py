"""``trademl backtest`` and ``trademl backtest sweep`` on the predictions of a real training run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from trademl.api import train as run
from trademl.errors import ConfigError

TRADE_COLUMNS = ["entry_time", "exit_time", "side", "entry_price", "exit_price", "stop", "target",
                 "exit_reason", "bars_held", "pnl", "r_multiple"]  # fmt: skip


@pytest.fixture
def trained(cli, data_dir: Path, tmp_path: Path) -> Path:
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0
    output = tmp_path / "run"
    run({
        "data": {"symbol": "BTCUSDT", "timeframe": "1h", "start": "2023-01-01", "end": "2023-10-01"},
        "features": "minimal",
        "labels": {"kinds": ["direction", "max_high", "min_low"], "horizons": ["intraday"]},
        "models": [{"kind": "lgbm", "params": {"n_estimators": 60}}],
        "validation": {"kind": "walk_forward", "params": {"test_size": 800, "n_splits": 3, "min_train_size": 2000}},
        "output": str(output),
    })  # fmt: skip
    return output


def config(path: Path, run_dir: Path, output: Path, **changes: object) -> Path:
    body = {
        "run": str(run_dir),
        "strategy": {"kind": "maxmin", "params": {"reward_risk": 1.2, "max_bars": 6}},
        "costs": {"fee_bps": 10, "slippage_bps": 5},
        "grid": {"reward_risk": [1.0, 1.5, 2.0], "min_confidence": [0.0, 0.1]},
        "output": str(output),
        **changes,
    }
    path.write_text(yaml.safe_dump(body))
    return path


def test_backtest_writes_report_metrics_and_trades(cli, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt"
    result = cli("backtest", config(tmp_path / "bt.yaml", trained, out))
    assert result.code == 0, result.stderr
    assert "deflated_sharpe" in result.stdout and "buy & hold" in result.stdout
    trades = pd.read_csv(out / "trades.csv")
    assert list(trades.columns[: len(TRADE_COLUMNS)]) == TRADE_COLUMNS or set(TRADE_COLUMNS) <= set(
        trades.columns
    )
    assert len(trades) > 0
    assert (pd.to_datetime(trades["exit_time"]) >= pd.to_datetime(trades["entry_time"])).all()
    predictions = pd.read_parquet(trained / "predictions.parquet")
    assert pd.to_datetime(trades["entry_time"]).min() > predictions.index.min()
    # Strategy and buy-and-hold over the same span: the predicted bars and a last trade's
    # horizon, not the bars the store holds beyond the run's data.end.
    curves = pd.read_csv(out / "equity.csv", index_col="timestamp", parse_dates=True)
    horizon = json.loads((out / "metrics.json").read_text())["meta"]["horizon_bars"]
    assert curves.index[0] == predictions.index[0]
    assert curves.index[-1] == predictions.index[-1] + pd.Timedelta(hours=horizon + 1)
    assert curves.index[-1] < pd.Timestamp("2023-10-03", tz="UTC")
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"sharpe", "deflated_sharpe", "max_drawdown", "n_trades"} <= set(metrics["metrics"])
    # The config carries a grid of 6: DSR given 6 trials and the grid's PBO are reported too.
    assert metrics["metrics"]["grid_trials"] == 6
    assert metrics["metrics"]["pbo"] is None or 0.0 <= metrics["metrics"]["pbo"] <= 1.0
    assert "pbo" in result.stdout
    # Buy-and-hold: one position held throughout, always exposed.
    assert metrics["baseline_metrics"]["n_trades"] == 1
    assert metrics["baseline_metrics"]["exposure"] == 1.0
    html = (out / "report.html").read_text()
    for section in (
        "Metrics",
        "Price and trades",
        "Equity and drawdown",
        "Monthly returns",
        "R-multiple",
    ):
        assert section in html, section
    assert '<script src="http' not in html


def test_sweep_reports_dsr_and_pbo(cli, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = cli("backtest", "sweep", config(tmp_path / "bt.yaml", trained, out))
    assert result.code == 0, result.stderr
    assert "6 configurations" in result.stdout and "PBO" in result.stdout
    summary = json.loads((out / "sweep.json").read_text())["metrics"]
    assert summary["n_trials"] == 6
    assert summary["pbo"] is None or 0.0 <= summary["pbo"] <= 1.0
    assert len(pd.read_csv(out / "sweep.csv")) == 6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"costs": {"fee_bps": -1}}, "costs.fee_bps"),
        ({"strategy": {"kind": "martingale"}}, "strategy.kind"),
        ({"strategy": {"model": "xgb"}}, "strategy.model 'xgb' is not in the run"),
        ({"strategy": {"horizon": "swing"}}, "was not trained"),
        ({"strategy": {"params": {"leverage": 5}}}, "leverage"),
    ],
)
def test_bad_backtest_configs(
    cli, trained: Path, tmp_path: Path, changes: dict, message: str
) -> None:
    from trademl.backtest.runner import backtest

    with pytest.raises(ConfigError, match=message):
        backtest(
            yaml.safe_load(
                config(tmp_path / "bt.yaml", trained, tmp_path / "x", **changes).read_text()
            )
        )
