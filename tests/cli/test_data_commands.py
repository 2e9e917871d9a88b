"""``trademl data ...`` end to end on the real files of ../shared/data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.config import get_settings
from trademl.data.ingest import open_default_store
from trademl.data.sources.files import read_candle_file


def stored(symbol: str, timeframe: str) -> pd.DataFrame:
    with open_default_store(get_settings()) as store:
        return store.read(symbol, timeframe)


def test_import_every_shared_file_then_list(cli, data_dir: Path) -> None:
    result = cli("data", "import", data_dir)
    assert result.code == 0, result.stderr
    listing = cli("data", "list")
    assert listing.code == 0
    files = sorted(p for p in data_dir.rglob("*") if p.name.endswith((".csv", ".csv.gz")))
    assert len(files) == 20
    for path in files:
        raw = pd.read_csv(path, usecols=["timestamp"])
        symbol, timeframe = path.name.split(".")[0].split("_")
        first = pd.Timestamp(raw["timestamp"].iloc[0]).strftime("%Y-%m-%d %H:%M")
        last = pd.Timestamp(raw["timestamp"].iloc[-1]).strftime("%Y-%m-%d %H:%M")
        line = next(
            (
                ln
                for ln in listing.stdout.splitlines()
                if f" {symbol} " in ln and f" {timeframe} " in ln
            ),
            None,
        )
        assert line is not None, f"{symbol} {timeframe} missing from:\n{listing.stdout}"
        assert f"{len(raw):,}" in line and first in line and last in line, line
    again = cli("data", "import", data_dir)
    assert again.code == 0
    assert "updated" in again.stdout


def test_show_csv_and_json_write_only_data(cli, data_dir: Path) -> None:
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1m.csv").code == 0
    shown = cli(
        "data",
        "show",
        "BTCUSDT",
        "1m",
        "--start",
        "2024-04-03",
        "--end",
        "2024-04-03T01:00",
        "--format",
        "csv",
    )
    assert shown.code == 0
    assert shown.stdout.splitlines()[0] == "timestamp,open,high,low,close,volume"
    piped = pd.read_csv(io.StringIO(shown.stdout))
    assert len(piped) == 60
    assert piped["timestamp"].iloc[0] == "2024-04-03T00:00:00Z"
    source = pd.read_csv(data_dir / "crypto" / "BTCUSDT_1m.csv").set_index("timestamp")
    assert np.array_equal(
        piped.set_index("timestamp").to_numpy(), source.loc[piped["timestamp"]].to_numpy()
    )
    as_json = cli("data", "show", "BTCUSDT", "1m", "--end", "2024-04-02T00:05", "--format", "json")
    records = json.loads(as_json.stdout)
    assert [r["timestamp"] for r in records][-1] == "2024-04-02T00:04:00Z"
    assert set(records[0]) == {"timestamp", "open", "high", "low", "close", "volume"}
    table = cli("data", "show", "BTCUSDT", "1m")
    assert "7,207 bars" in table.stdout


def test_resample_stores_a_new_timeframe_matching_the_real_file(cli, data_dir: Path) -> None:
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1m.csv").code == 0
    result = cli("data", "resample", "BTCUSDT", "1m", "5m")
    assert result.code == 0, result.stderr
    assert "dropped the unfinished last bar 2024-04-07 00:05" in result.stdout
    mine = stored("BTCUSDT", "5m")
    real = read_candle_file(data_dir / "crypto" / "BTCUSDT_5m.csv.gz")
    shared = mine.index.intersection(real.index)
    assert len(shared) == len(mine) == 1_441
    assert np.allclose(mine.loc[shared].to_numpy(), real.loc[shared].to_numpy(), rtol=1e-12)


def test_export_then_reimport_elsewhere_is_identical(cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("data", "import", data_dir / "fx" / "EURUSD_1h.csv").code == 0
    for name in ("EURUSD_1h.csv", "EURUSD_1h.parquet", "EURUSD_1h.csv.gz"):
        out = tmp_path / name
        assert cli("data", "export", "EURUSD", "1h", out).code == 0
        assert cli("--home", tmp_path / name.replace(".", "-"), "data", "import", out).code == 0
        with open_default_store(get_settings()) as store:
            copy = store.read("EURUSD", "1h")
        pd.testing.assert_frame_equal(
            copy, read_candle_file(data_dir / "fx" / "EURUSD_1h.csv"), check_freq=False
        )


def test_validate_and_gaps(cli, data_dir: Path) -> None:
    ok = cli("data", "validate", data_dir / "crypto")
    assert ok.code == 0
    assert "BTCUSDT_1h.csv" in ok.stdout and "128 bars in 28 gaps" in ok.stdout
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0
    gaps = cli("data", "gaps", "BTCUSDT", "1h", "--top", "1")
    assert "missing 128" in gaps.stdout
    assert "2018-02-08 01:00 → 2018-02-09 09:00: 33 bars" in gaps.stdout


def test_validate_a_file_named_anyhow(cli, data_dir: Path, tmp_path: Path) -> None:
    # A name that says neither symbol nor timeframe: --symbol and --timeframe say them.
    odd = tmp_path / "download (3).csv"
    odd.write_bytes((data_dir / "fx" / "EURUSD_1h.csv").read_bytes())
    refused = cli("data", "validate", odd)
    assert refused.code != 0 and "pass --symbol and --timeframe" in refused.stderr
    ok = cli("data", "validate", odd, "--symbol", "EURUSD", "--timeframe", "1h")
    assert ok.code == 0, ok.stderr
    assert "download (3).csv" in ok.stdout and "1 valid file(s)" in ok.stdout


def test_home_option_isolates_state(cli, data_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-home"
    assert cli("--home", other, "data", "import", data_dir / "fx" / "EURUSD_1h.csv").code == 0
    assert (other / "market.duckdb").exists()
    assert "EURUSD" in cli("--home", other, "data", "list").stdout
    assert "empty" in cli("--home", tmp_path / "third", "data", "list").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("data", "show", "NOPE", "1h"), "no NOPE 1h candles in the store"),
        (("data", "show", "BTCUSDT", "7x"), "timeframe '7x' is not understood"),
        (
            ("data", "ingest", "nasdaq", "--symbol", "X", "--timeframe", "1h"),
            "unknown source 'nasdaq'",
        ),
        (("data", "resample", "EURUSD", "1h", "30m"), "cannot resample 1h to 30m"),
        (("data", "show", "EURUSD", "1h", "--start", "soon"), "--start 'soon' is not a date"),
        (("data", "export", "EURUSD", "1h", "out.xlsx"), "must end in .csv, .csv.gz or .parquet"),
    ],
)
def test_user_errors_are_one_clear_line(
    cli, data_dir: Path, args: tuple[str, ...], message: str
) -> None:
    assert cli("data", "import", data_dir / "fx" / "EURUSD_1h.csv").code == 0
    result = cli(*args)
    assert result.code != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
