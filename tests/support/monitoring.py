"""A registered champion with served predictions logged over real bars after its training, the
case the monitoring suites assess (a few seconds of training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from tests.support.training import SHORT_RUN_GATE, SMALL_LGBM, tiny_run_config

from trademl.api import train
from trademl.config import Settings
from trademl.data.ingest import open_default_store
from trademl.data.sources.files import read_candle_file
from trademl.monitoring.predictions import PredictionLog, horizon_records
from trademl.tracking.pipeline import load_pipeline
from trademl.tracking.watch import log_url

# Seeded and byte-reproducible: on this span the max-high forecast passes GATE (the version
# becomes champion) and, over the logged weeks, the min-low target's CUSUM alarm fires.
MODEL_SECTION = SMALL_LGBM
GATE = SHORT_RUN_GATE
MONITORING = {"window": 400, "min_mature": 100, "arl0": 500}
TRAINED_UNTIL = "2023-04-30 23:00"
LOGGED_FROM, LOGGED_UNTIL = "2023-05-01", "2023-06-30 23:00"


def monitored_champion(home: Path, data_dir: Path, name: str, **settings: Any) -> Settings:
    """Train ``name`` on BTCUSDT 1h up to :data:`TRAINED_UNTIL` (champion), log what it would
    have served on every bar of May and June 2023, and store those bars; the settings."""
    config = Settings(home=home, mlflow_timeout_s=5, **settings)
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    with open_default_store(config) as store:
        store.write(candles.loc["2022-06-01":TRAINED_UNTIL], "BTCUSDT", "1h")
    run = tiny_run_config(
        home / "runs" / "champion", MODEL_SECTION, name=name, gate=GATE, monitoring=MONITORING
    )
    train(run, settings=config)
    pipeline, info = load_pipeline(name, "champion", config)
    served = pipeline.predict(candles.loc["2023-03-01":LOGGED_UNTIL]).loc[LOGGED_FROM:]
    rows = []
    for bar, values in served.iterrows():
        rows += horizon_records(
            values.to_dict(),
            pipeline.horizons,
            request_id=f"logged-{bar:%Y%m%d%H}",
            model_name=name,
            model_version=info.version,
            symbol="BTCUSDT",
            timeframe="1h",
            bar_timestamp=pd.Timestamp(bar),
            source="store",
        )
    with PredictionLog(log_url(config)) as log:
        log.append(rows)
    with open_default_store(config) as store:
        store.write(candles.loc[LOGGED_FROM:LOGGED_UNTIL], "BTCUSDT", "1h")
    return config
