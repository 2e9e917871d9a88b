"""``trademl labels build`` end to end: import a real file, build labels, read the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.data.candles import with_meta
from trademl.data.sources.files import read_candle_file
from trademl.features.labels import build_labels


@pytest.fixture
def btc_file(data_dir: Path) -> Path:
    return data_dir / "crypto" / "BTCUSDT_1h.csv"


def expected_labels(path: Path, start: str, end: str, specs: list[dict]) -> pd.DataFrame:
    candles = read_candle_file(path)
    index = candles.index
    part = candles[(index >= pd.Timestamp(start, tz="UTC")) & (index < pd.Timestamp(end, tz="UTC"))]
    return build_labels(with_meta(part.copy(), symbol="BTCUSDT", timeframe="1h"), specs)


def test_build_writes_every_kind_and_horizon_to_parquet(
    cli, btc_file: Path, tmp_path: Path
) -> None:
    assert cli("data", "import", btc_file).code == 0
    out = tmp_path / "out" / "labels.parquet"
    result = cli(
        "labels", "build", "--symbol", "BTCUSDT", "--timeframe", "60m",
        "--kind", "direction", "--kind", "max_high", "--kind", "triple_barrier",
        "--horizon", "intraday", "--horizon", "24", "--dead-zone", "0.001",
        "--start", "2024-01-01", "--end", "2024-03-01", "--out", out,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    written = pd.read_parquet(out)
    assert written.columns.tolist() == [
        "direction_6",
        "direction_24",
        "max_high_6",
        "max_high_24",
        "triple_barrier_6",
        "triple_barrier_24",
        "complete_6",
        "complete_24",
    ]
    assert written.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert written.index[-1] < pd.Timestamp("2024-03-01", tz="UTC")
    specs = [
        {"kind": k, "horizon": h, "dead_zone": 0.001}
        for k in ("direction", "max_high", "triple_barrier")
        for h in ("intraday", 24)
    ]
    expected = expected_labels(btc_file, "2024-01-01", "2024-03-01", specs)
    pd.testing.assert_frame_equal(written, expected, check_freq=False, check_index_type=False)
    # Windows never look past --end: the last 24 rows are incomplete and NaN.
    assert not written["complete_24"].iloc[-24:].any() and written["complete_24"].iloc[:-24].all()
    assert written["max_high_24"].iloc[-24:].isna().all()
    rows = len(written)
    for name in ("direction_24", "max_high_6", "triple_barrier_24"):
        line = next(ln for ln in result.stdout.splitlines() if name in ln)
        assert f"{rows:,}" in line and f"{rows - int(name.rsplit('_', 1)[1]):,}" in line, line
    line = next(ln for ln in result.stdout.splitlines() if "direction_24" in ln)
    minus = int((written["direction_24"] == -1).sum())
    assert f"{minus:,} (" in line
    assert not list(out.parent.glob(".export-*"))


def test_build_csv_output_and_return_statistics(cli, btc_file: Path, tmp_path: Path) -> None:
    assert cli("data", "import", btc_file).code == 0
    out = tmp_path / "labels.csv"
    result = cli(
        "labels", "build", "--symbol", "BTCUSDT", "--timeframe", "1h",
        "--kind", "forward_return", "--kind", "min_low", "--horizon", "4",
        "--start", "2024-06-01", "--end", "2024-06-08", "--out", out,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    written = pd.read_csv(out)
    assert written.columns.tolist() == ["timestamp", "forward_return_4", "min_low_4", "complete_4"]
    assert written["timestamp"].iloc[0] == "2024-06-01T00:00:00Z"
    assert len(written) == 7 * 24
    assert written["forward_return_4"].iloc[-4:].isna().all()
    assert written["complete_4"].tolist() == [True] * (7 * 24 - 4) + [False] * 4
    mean = written["forward_return_4"].mean()
    line = next(ln for ln in result.stdout.splitlines() if "forward_return_4" in ln)
    assert f"{mean:.6f}" in line
    assert np.all(written["min_low_4"].dropna() <= 0.01)


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--horizon", "weekly"], 2, "unknown horizon 'weekly'"),
        (["--horizon", "0"], 2, "at least 1 bar"),
        (["--horizon", "4", "--out-format"], 2, "No such option"),
        (["--horizon", "4", "--kind", "sharpe"], 2, "sharpe"),
        (["--horizon", "4", "--stop-loss", "0"], 2, "stop_loss"),
    ],
)
def test_bad_options_fail_cleanly(
    cli, btc_file: Path, tmp_path: Path, extra: list[str], code: int, message: str
) -> None:
    assert cli("data", "import", btc_file).code == 0
    out = tmp_path / "labels.csv"
    args = ["labels", "build", "--symbol", "BTCUSDT", "--timeframe", "1h", "--kind", "direction"]
    result = cli(*args, *extra, "--out", out)
    assert result.code == code, (result.stdout, result.stderr)
    assert message in result.stderr
    assert not out.exists()


def test_missing_series_and_bad_path(cli, btc_file: Path, tmp_path: Path) -> None:
    args = ["labels", "build", "--timeframe", "1h", "--kind", "direction", "--horizon", "4"]
    missing = cli(*args, "--symbol", "ETHUSDT", "--out", tmp_path / "x.csv")
    assert missing.code == 6 and "no ETHUSDT 1h candles" in missing.stderr
    assert cli("data", "import", btc_file).code == 0
    bad = cli(*args, "--symbol", "BTCUSDT", "--out", tmp_path / "x.txt")
    assert bad.code == 2 and "must end in .csv" in bad.stderr
    assert not (tmp_path / "x.txt").exists()
