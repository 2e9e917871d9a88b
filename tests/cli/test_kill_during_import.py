"""A process killed (SIGKILL) in the middle of a large import leaves the store as before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from trademl.data.sources.files import read_candle_file
from trademl.data.stores import open_store

pytestmark = pytest.mark.integration


def test_sigkill_mid_import_leaves_store_unchanged(
    store_url: str, data_dir: Path, tmp_path: Path
) -> None:
    seed = read_candle_file(data_dir / "fx" / "EURUSD_1h.csv")
    with open_store(store_url) as store:
        store.write(seed, "EURUSD", "1h")
        before = {(s.symbol, s.timeframe, s.rows) for s in store.list_series()}

    # A large import: the real 5-minute files, linked under several symbols (~700k rows).
    folder = tmp_path / "big"
    folder.mkdir()
    for alias, name in [
        ("BTCA", "BTCUSDT"),
        ("ETHA", "ETHUSDT"),
        ("BTCB", "BTCUSDT"),
        ("ETHB", "ETHUSDT"),
    ]:
        (folder / f"{alias}_5m.csv.gz").symlink_to(data_dir / "crypto" / f"{name}_5m.csv.gz")

    env = {
        **os.environ,
        "TRADEML_HOME": str(tmp_path / "home"),
        "TRADEML_STORE_URL": store_url,
        "TRADEML_STORE_CHUNK_ROWS": "20000",
        "TRADEML_LOG_LEVEL": "DEBUG",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "trademl", "data", "import", str(folder)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + 120
    try:
        for line in process.stderr:
            seen.append(line)
            # Chunks 1-3 of the first series are inside the open transaction: kill now.
            if "chunk 3/" in line:
                process.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "import never reached its third chunk"
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "".join(seen[-5:])

    with open_store(store_url) as store:
        after = {(s.symbol, s.timeframe, s.rows) for s in store.list_series()}
        assert after == before
        pd.testing.assert_frame_equal(store.read("EURUSD", "1h"), seed, check_freq=False)
        # And the store accepts the same import afterwards.
        store.write(read_candle_file(folder / "BTCA_5m.csv.gz"), "BTCA", "5m")
        assert store.series_info("BTCA", "5m") is not None
