"""One tiny model trained once per session on real BTCUSDT 1h candles, registered in a
SQLite MLflow registry under a temporary TRADEML_HOME, and the app serving it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.support.training import tiny_run_config

from trademl.api import train as run
from trademl.config import Settings
from trademl.data.ingest import open_default_store
from trademl.data.sources.files import read_candle_file
from trademl.run_outputs import RunResult
from trademl.serving import create_app
from trademl.tracking.pipeline import load_pipeline

MODEL = "BTCUSDT_1h_serving_test"
API_KEY = "serving-test-key"
HEADERS = {"X-API-Key": API_KEY}
# The store ends here; the WebSocket test appends the next real bar.
STORE_END = pd.Timestamp("2023-06-01", tz="UTC")


def tiny_config(output: Path, n_estimators: int) -> dict[str, Any]:
    """A few-second LightGBM training run (see :func:`tiny_run_config`)."""
    model = {"kind": "lgbm", "params": {"n_estimators": n_estimators, "min_child_samples": 200}}
    # A gate no short run passes: versions stay unpromoted until the API promotes them.
    return tiny_run_config(
        output, model, name=MODEL, gate={"metric": "log_loss", "margin": 100.0, "min_rows": 10**6}
    )


@dataclass
class Served:
    """The session's home, settings, candles and training runs."""

    home: Path
    settings: Settings
    candles: pd.DataFrame  # every real BTCUSDT 1h bar of the shared file
    runs: list[RunResult]
    window_bars: int  # candles a served prediction reads: the feature warm-up + 1


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Served:
    """A store with BTCUSDT 1h up to STORE_END and two registered versions (v1 champion)."""
    home = tmp_path_factory.mktemp("serving")
    settings = Settings(
        home=home,
        mlflow_timeout_s=5,
        api_key=API_KEY,  # type: ignore[arg-type]
        model_reload_s=1.0,
        store_poll_s=0.1,
        ws_heartbeat_s=0.3,
        max_body_bytes=256 * 1024,
        jobs_workers=2,
        # The session's versions stay unpromoted (an impossible gate) and serve nonetheless.
        serve_latest_unpromoted=True,
    )
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    with open_default_store(settings) as store:
        store.write(candles[candles.index < STORE_END], "BTCUSDT", "1h")
    runs = [run(tiny_config(home / "runs" / "v1", 10), settings=settings)]
    pipeline, _ = load_pipeline(MODEL, 1, settings)
    return Served(home, settings, candles, runs, pipeline.window_bars)


@pytest.fixture(scope="session")
def client(served: Served) -> Iterator[TestClient]:
    """The app on the session's registry, with its lifespan (models loaded, queue open)."""
    with TestClient(create_app(served.settings)) as test_client:
        yield test_client
