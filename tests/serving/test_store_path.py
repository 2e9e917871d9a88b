"""The store path's fast answers stay current: a bar written to the store is served by the very
next request (no polling period to wait out), and a known bar is answered from cached bytes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.serving.conftest import STORE_END, Served

from trademl.data.stores import open_store
from trademl.data.stores.duckdb_store import DuckDBStore
from trademl.errors import StoreError
from trademl.serving import create_app

REQUEST = {"symbol": "BTCUSDT", "timeframe": "1h"}


def test_the_next_request_sees_each_bar_written(served: Served, tmp_path: Path) -> None:
    url = f"duckdb:///{(tmp_path / 'market.duckdb').as_posix()}"
    # A polling period far longer than the test: only the store's own change can tell.
    settings = served.settings.model_copy(
        update={"store_url": url, "store_poll_s": 600.0, "model_reload_s": 0}
    )
    candles = served.candles[served.candles.index < STORE_END]
    feed = served.candles[served.candles.index >= STORE_END].iloc[:5]
    hole = candles.index[-3]  # a bar missing inside the window, filled in later
    with open_store(url) as store:
        store.write(candles.drop(hole), "BTCUSDT", "1h")
    with TestClient(create_app(settings)) as client:
        first = client.post("/api/v1/predict", json=REQUEST)
        assert first.status_code == 200, first.text
        assert first.json()["missing_bars"] == 1
        again = client.post("/api/v1/predict", json=REQUEST)
        assert again.content == first.content  # the cached bytes are the rendered answer
        # Filling the hole changes the window, not the last bar: the row count tells.
        with open_store(url) as store:
            store.write(candles.loc[[hole]], "BTCUSDT", "1h")
        filled = client.post("/api/v1/predict", json=REQUEST).json()
        assert filled["bar_timestamp"] == first.json()["bar_timestamp"]
        assert filled["missing_bars"] == 0
        for stamp in feed.index:
            with open_store(url) as store:
                store.write(feed.loc[[stamp]], "BTCUSDT", "1h")
            body = client.post("/api/v1/predict", json=REQUEST).json()
            assert pd.Timestamp(body["bar_timestamp"]) == stamp
            assert body["close"] == float(feed.loc[stamp, "close"])


def test_series_info_is_the_listed_series(served: Served, tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "market.duckdb") as store:
        store.write(served.candles.iloc[:100], "BTCUSDT", "1h")
        store.write(served.candles.iloc[:50], "ETHUSDT", "1h")
        assert store.series_info("BTCUSDT", "1h") == store.list_series()[0]
        assert store.series_info("ETHUSDT", "60min") == store.list_series()[1]
        assert store.series_info("BTCUSDT", "4h") is None


def test_a_read_only_store_reads_and_refuses_writes(served: Served, tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "missing.duckdb", read_only=True) as empty:
        assert empty.list_series() == [] and empty.series_info("BTCUSDT", "1h") is None
    assert not (tmp_path / "missing.duckdb").exists()
    with DuckDBStore(tmp_path / "market.duckdb") as store:
        store.write(served.candles.iloc[:10], "BTCUSDT", "1h")
    with DuckDBStore(tmp_path / "market.duckdb", read_only=True) as reader:
        assert len(reader.read("BTCUSDT", "1h")) == 10
        with pytest.raises(StoreError, match="open read-only: it cannot be written"):
            reader.write(served.candles.iloc[10:20], "BTCUSDT", "1h")
