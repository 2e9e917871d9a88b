"""The server reads the DuckDB store read-only: an import in another process (``trademl data
import``) writes while the server answers, and neither fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient
from tests.serving.conftest import STORE_END, Served

from trademl.data.stores import open_store
from trademl.serving import create_app

REQUEST = {"symbol": "BTCUSDT", "timeframe": "1h"}


def test_an_import_and_the_server_share_the_store(
    served: Served, tmp_path: Path, data_dir: Path
) -> None:
    url = f"duckdb:///{(tmp_path / 'market.duckdb').as_posix()}"
    settings = served.settings.model_copy(update={"store_url": url, "model_reload_s": 0})
    with open_store(url) as store:
        store.write(served.candles[served.candles.index < STORE_END], "BTCUSDT", "1h")
    env = {**os.environ, "TRADEML_HOME": str(tmp_path / "home"), "TRADEML_STORE_URL": url}
    command = [sys.executable, "-c", "from trademl.cli.app import main; main()", "data", "import"]
    statuses: list[int] = []
    with TestClient(create_app(settings)) as client:
        before = client.post("/api/v1/predict", json=REQUEST)
        assert before.status_code == 200, before.text
        # Every crypto file in one transaction: the import holds the file for seconds.
        importer = subprocess.Popen(
            [*command, str(data_dir / "crypto")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        while importer.poll() is None:
            response = client.post("/api/v1/predict", json=REQUEST)
            assert response.status_code == 200, response.text
            statuses.append(response.status_code)
            time.sleep(0.005)
        output = importer.stdout.read() if importer.stdout else ""
        assert importer.returncode == 0, output
        assert len(statuses) >= 10, "the import ended before the server was asked anything"
        # Once the import is done, the next request sees what it wrote.
        after = client.post("/api/v1/predict", json=REQUEST)
        assert after.status_code == 200, after.text
        assert pd.Timestamp(after.json()["bar_timestamp"]) == served.candles.index[-1]
    with open_store(url) as store:
        assert len(store.list_series()) > 1
