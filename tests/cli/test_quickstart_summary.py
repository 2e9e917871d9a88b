"""The quickstart's summary table on a small real run: out-of-sample metrics with intervals
beside the baselines, the backtest with its deflated Sharpe ratio, the next commands."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tests.support.training import SHORT_RUN_GATE, SMALL_LGBM, tiny_run_config

from trademl.api import backtest, train
from trademl.cli.quickstart import print_quickstart
from trademl.config import Settings
from trademl.quickstart import backtest_config, run_quickstart


def test_summary_table(
    data_dir: Path, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(home=home)
    said: list[str] = []
    quick = run_quickstart(
        settings,
        source=data_dir / "crypto" / "BTCUSDT_1h.csv",
        train=False,
        say=said.append,
    )
    assert said == ["[1/5] ingest", "[2/5] features and labels"]
    assert (quick.symbol, quick.timeframe, quick.imported.rows) == ("BTCUSDT", "1h", 60_852)
    run = tiny_run_config(tmp_path / "run", SMALL_LGBM, name="summary", gate=SHORT_RUN_GATE)
    training = train(run, settings=settings)
    trades = backtest(backtest_config(training.output, tmp_path / "bt"), settings=settings)
    print_quickstart(dataclasses.replace(quick, training=training, backtest=trades), 12.0)
    text = " ".join(capsys.readouterr().out.split())
    assert "trademl quickstart: BTCUSDT 1h, 60,852 bars" in text
    for expected in (
        "max_high, horizon intraday (6 bars)",
        "naive_volatility",
        "R² (95% CI)",
        "coverage (95% CI)",
        "deflated_sharpe_grid",
        "(buy & hold",
        f"{training.output / 'summary.md'}",
        "mlflow ui",
        f"summary version {training.model_version}",
        "http://127.0.0.1:8000/ui",
        "Out of sample is not the future",
    ):
        assert expected in text, expected
