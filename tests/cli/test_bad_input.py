"""Bad input through ``trademl data import``: non-zero exit, one line naming file, row and rule,
and the store exactly as it was — for a single file and for a folder with one bad file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from trademl.config import get_settings
from trademl.data.ingest import open_default_store

HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = "2024-01-01T00:00:00Z,100,101,99,100.5,10\n2024-01-01T01:00:00Z,100.5,102,100,101.5,11\n"

CASES = {
    "missing column": (
        "timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n",
        None,
        "missing_column",
    ),
    "non-numeric cell": (
        HEADER + GOOD + "2024-01-01T02:00:00Z,101,1o3,100,102,5\n",
        3,
        "not_numeric",
    ),
    "ohlc violation": (
        HEADER + GOOD + "2024-01-01T02:00:00Z,101,103,101.5,102,5\n",
        3,
        "ohlc_consistency",
    ),
    "duplicate timestamp": (
        HEADER + GOOD + "2024-01-01T01:00:00Z,101,103,100,102,5\n",
        3,
        "duplicate_timestamp",
    ),
    "unsorted timestamp": (
        HEADER + GOOD + "2023-12-31T23:00:00Z,101,103,100,102,5\n",
        3,
        "unsorted_timestamp",
    ),
    "empty file": ("", None, "empty"),
}


def snapshot() -> dict[tuple[str, str], pd.DataFrame]:
    with open_default_store(get_settings()) as store:
        return {
            (s.symbol, s.timeframe): store.read(s.symbol, s.timeframe) for s in store.list_series()
        }


def assert_unchanged(before: dict[tuple[str, str], pd.DataFrame]) -> None:
    after = snapshot()
    assert before.keys() == after.keys()
    for key, frame in before.items():
        pd.testing.assert_frame_equal(frame, after[key])


@pytest.fixture
def seeded(cli, data_dir: Path) -> dict[tuple[str, str], pd.DataFrame]:
    assert cli("data", "import", data_dir / "fx" / "EURUSD_1h.csv").code == 0
    return snapshot()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file(cli, tmp_path: Path, seeded, case: str) -> None:
    text, row, rule = CASES[case]
    # Name it like a series the store already holds: a partial write would show.
    path = tmp_path / "EURUSD_1h.csv"
    path.write_text(text)
    result = cli("data", "import", path)
    assert result.code != 0
    line = result.stderr.strip()
    assert "\n" not in line, result.stderr
    assert str(path) in line and f"[{rule}]" in line
    if row is not None:
        assert f"row {row}" in line
    assert_unchanged(seeded)


@pytest.mark.parametrize("case", ["non-numeric cell", "ohlc violation"])
def test_one_bad_file_in_a_folder_writes_nothing(
    cli, tmp_path: Path, data_dir: Path, seeded, case: str
) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("BTCUSDT_1h.csv", "ETHUSDT_1h.csv"):
        shutil.copy(data_dir / "crypto" / name, folder / name)
    (folder / "ZZZ_1h.csv").write_text(CASES[case][0])
    result = cli("data", "import", folder)
    assert result.code != 0
    assert "ZZZ_1h.csv row 3" in result.stderr
    assert_unchanged(seeded)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--timeframe", "1x"), "timeframe '1x' is not understood"),
        (("--tz", "Nowhere/City"), "not a known time zone"),
    ],
)
def test_bad_options(cli, tmp_path: Path, seeded, args: tuple[str, ...], message: str) -> None:
    path = tmp_path / "EURUSD_1h.csv"
    path.write_text("datetime,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,1.5,3\n")
    result = cli("data", "import", path, *args)
    assert result.code != 0
    assert message in result.stderr
    assert_unchanged(seeded)


def test_unknown_source_leaves_store_unchanged(cli, seeded) -> None:
    result = cli("data", "ingest", "bloomberg", "--symbol", "EURUSD", "--timeframe", "1h")
    assert result.code != 0
    assert "unknown source 'bloomberg'" in result.stderr
    assert_unchanged(seeded)
