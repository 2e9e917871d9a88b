"""Reading candle files: header spellings, timestamp forms, zones and every bad-input rule."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.data.sources.files import infer_name, read_candle_file
from trademl.errors import ConfigError, DataValidationError

HEADER = "timestamp,open,high,low,close,volume\n"
ROWS = [
    "2024-01-01T00:00:00Z,100,101,99,100.5,10",
    "2024-01-01T01:00:00Z,100.5,102,100,101.5,11",
    "2024-01-01T02:00:00Z,101.5,103,101,102.5,12",
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BTCUSDT_1h.csv", ("BTCUSDT", "1h")),
        ("BTCUSDT_5m.csv.gz", ("BTCUSDT", "5m")),
        ("ES_F_15m.parquet", ("ES_F", "15m")),
        ("spy_60m.csv", ("spy", "1h")),
        ("prices.csv", None),
        ("AAPL_daily.csv", None),
    ],
)
def test_infer_symbol_and_timeframe_from_name(name: str, expected: tuple[str, str] | None) -> None:
    inferred = infer_name(Path(name))
    assert (None if inferred is None else (inferred.symbol, inferred.timeframe)) == expected


def test_real_files_import_with_exact_values(data_dir: Path) -> None:
    path = data_dir / "crypto" / "BTCUSDT_1m.csv"
    candles = read_candle_file(path)
    raw = pd.read_csv(path)
    assert candles.attrs == {"symbol": "BTCUSDT", "timeframe": "1m"}
    assert len(candles) == len(raw) == 7_207
    assert np.array_equal(candles["close"].to_numpy(), raw["close"].to_numpy())
    assert candles.index[0] == pd.Timestamp("2024-04-02T00:00Z")


def test_gzip_and_parquet_round_trip(tmp_path: Path, data_dir: Path) -> None:
    gz = read_candle_file(data_dir / "crypto" / "ETHUSDT_5m.csv.gz")
    gz.to_parquet(tmp_path / "ETHUSDT_5m.parquet")
    back = read_candle_file(tmp_path / "ETHUSDT_5m.parquet")
    pd.testing.assert_frame_equal(back, gz)


def test_broker_style_headers_and_adj_close(tmp_path: Path) -> None:
    text = "Date,Open,High,Low,Close,Adj Close,Vol\n2024-01-02,10,12,9,11,5.5,100\n2024-01-03,11,13,10,12,6,200\n"
    path = write(tmp_path, "x.csv", text)
    plain = read_candle_file(path, symbol="X", timeframe="1d")
    assert plain["close"].tolist() == [11.0, 12.0]
    adjusted = read_candle_file(path, symbol="X", timeframe="1d", adjusted=True)
    assert adjusted["close"].tolist() == [5.5, 6.0]
    assert adjusted["high"].tolist() == [6.0, 6.5]
    assert adjusted["volume"].tolist() == [100.0, 200.0]


@pytest.mark.parametrize(
    ("scale", "label"), [(1, "seconds"), (1000, "milliseconds"), (1_000_000, "micro")]
)
def test_epoch_timestamps(tmp_path: Path, scale: int, label: str) -> None:
    base = 1_704_067_200  # 2024-01-01T00:00Z
    lines = [f"{(base + 3600 * i) * scale},1,2,0.5,1.5,3" for i in range(3)]
    candles = read_candle_file(
        write(tmp_path, f"e_{label}.csv", "time,o,h,l,c,v\n" + "\n".join(lines))
    )
    assert candles.index[0] == pd.Timestamp("2024-01-01T00:00Z")
    assert candles.index[2] == pd.Timestamp("2024-01-01T02:00Z")


def test_naive_timestamps_read_in_given_zone(tmp_path: Path) -> None:
    text = "datetime,open,high,low,close,volume\n2024-07-01 09:00,1,2,0.5,1.5,3\n2024-07-01 10:00,1,2,0.5,1.5,3\n"
    path = write(tmp_path, "ny.csv", text)
    utc = read_candle_file(path)
    ny = read_candle_file(path, tz="America/New_York")
    assert utc.index[0] == pd.Timestamp("2024-07-01T09:00Z")
    assert ny.index[0] == pd.Timestamp("2024-07-01T13:00Z")  # EDT is UTC-4
    with pytest.raises(ConfigError, match="not a known time zone"):
        read_candle_file(path, tz="Mars/Olympus")


def test_zone_aware_strings_are_converted(tmp_path: Path) -> None:
    text = (
        HEADER
        + "2024-01-01T01:00:00+01:00,1,2,0.5,1.5,3\n2024-01-01T02:00:00+01:00,1,2,0.5,1.5,3\n"
    )
    candles = read_candle_file(write(tmp_path, "z.csv", text))
    assert candles.index[0] == pd.Timestamp("2024-01-01T00:00Z")


BAD_INPUTS = [
    (
        "missing column",
        "timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n",
        "missing_column",
        None,
    ),
    (
        "non-numeric",
        HEADER + ROWS[0] + "\n2024-01-01T01:00:00Z,100.5,abc,100,101.5,11\n",
        "not_numeric",
        2,
    ),
    (
        "empty cell",
        HEADER + ROWS[0] + "\n2024-01-01T01:00:00Z,100.5,102,,101.5,11\n",
        "nan_value",
        2,
    ),
    (
        "ohlc violation",
        HEADER + ROWS[0] + "\n" + ROWS[1] + "\n2024-01-01T02:00:00Z,101.5,103,102,101.8,12\n",
        "ohlc_consistency",
        3,
    ),
    (
        "duplicate",
        HEADER + ROWS[0] + "\n" + ROWS[1] + "\n" + ROWS[1] + "\n",
        "duplicate_timestamp",
        3,
    ),
    (
        "unsorted",
        HEADER + ROWS[1] + "\n" + ROWS[0] + "\n" + ROWS[2] + "\n",
        "unsorted_timestamp",
        2,
    ),
    ("empty file", "", "empty", None),
    ("header only", HEADER, "empty", None),
    ("bad timestamp", HEADER + ROWS[0] + "\nyesterday,1,2,0.5,1.5,3\n", "bad_timestamp", 2),
    (
        "negative volume",
        HEADER + ROWS[0] + "\n2024-01-01T01:00:00Z,100.5,102,100,101.5,-1\n",
        "negative_volume",
        2,
    ),
    (
        "off grid",
        HEADER + ROWS[0] + "\n2024-01-01T01:30:00Z,100.5,102,100,101.5,1\n",
        "off_grid",
        2,
    ),
]


@pytest.mark.parametrize(
    ("case", "text", "rule", "row"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_names_file_row_and_rule(
    tmp_path: Path, case: str, text: str, rule: str, row: int | None
) -> None:
    path = write(tmp_path, "BAD_1h.csv", text)
    with pytest.raises(DataValidationError) as caught:
        read_candle_file(path)
    error = caught.value
    assert (error.rule, error.row) == (rule, row), str(error)
    assert str(path) in str(error)
    assert "\n" not in str(error)


def test_gzip_bad_row_is_named(tmp_path: Path) -> None:
    path = tmp_path / "G_1h.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(HEADER + ROWS[0] + "\n" + ROWS[0] + "\n")
    with pytest.raises(DataValidationError, match=r"row 2 \[duplicate_timestamp\]"):
        read_candle_file(path)


def test_adjusted_without_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="Adj Close"):
        read_candle_file(write(tmp_path, "A_1h.csv", HEADER + ROWS[0] + "\n"), adjusted=True)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no such file"):
        read_candle_file(tmp_path / "nope_1h.csv")
