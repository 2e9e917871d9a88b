"""``trademl features list`` and ``trademl features build`` end to end on a real file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trademl.data.sources.files import read_candle_file
from trademl.features import build_features
from trademl.features.engine import warmup_bars


def test_list_shows_indicators_parameters_and_presets(cli) -> None:
    result = cli("features", "list")
    assert result.code == 0, result.stderr
    assert "timeperiod=14" in result.stdout and "rsi_14" in result.stdout
    assert "rv_yang_zhang_20" in result.stdout and "amd_phase" in result.stdout
    for preset in ("minimal", "standard", "alpha158"):
        assert f"│ {preset} " in result.stdout
    volatility = cli("features", "list", "--family", "volatility")
    assert "rv_parkinson" in volatility.stdout and "rsi_14" not in volatility.stdout


def test_build_writes_the_set_without_warmup_rows(
    cli, home: Path, data_dir: Path, tmp_path: Path
) -> None:
    path = data_dir / "crypto" / "ETHUSDT_1h.csv"
    assert cli("data", "import", path).code == 0
    out = tmp_path / "eth.parquet"
    args = (
        "features",
        "build",
        "--set",
        "minimal",
        "--symbol",
        "ETHUSDT",
        "--timeframe",
        "1h",
        "--out",
        out,
    )
    result = cli(*args, "--start", "2023-01-01")
    assert result.code == 0, result.stderr
    written = pd.read_parquet(out)
    candles = read_candle_file(path)
    expected = build_features(candles[candles.index >= "2023-01-01"], "minimal", warmup="drop")
    pd.testing.assert_frame_equal(written, expected, check_freq=False)
    assert f"{warmup_bars('minimal', '1h')} warm-up rows dropped" in result.stdout
    again = cli(*args, "--start", "2023-01-01")
    assert again.code == 0
    assert len(list((home / "cache" / "features").glob("*.parquet"))) == 1


def test_build_errors_are_one_line(cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("data", "import", data_dir / "fx" / "EURUSD_1h.csv").code == 0
    base = (
        "features",
        "build",
        "--symbol",
        "EURUSD",
        "--timeframe",
        "1h",
        "--out",
        tmp_path / "x.parquet",
    )
    unknown = cli(*base, "--set", "fancy")
    assert unknown.code != 0 and "neither a preset" in unknown.stderr
    short = cli(*base, "--set", "standard", "--start", "2018-02-01")
    assert short.code != 0 and "needs at least" in short.stderr
    assert short.stderr.strip().count("\n") == 0
