"""The end-to-end demo behind ``make demo``: real candles in, a summary out.

Later stages (features, training, validation, backtest, registry) extend this same function.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trademl.config import Settings
from trademl.data.candles import candle_index
from trademl.data.gaps import GapReport, gap_report
from trademl.data.ingest import ImportResult, import_path, ingest, open_default_store, read_series
from trademl.data.resample import resample_candles
from trademl.features import FeatureCache, build_features, build_labels
from trademl.features.horizons import HORIZON_NAMES

DEMO_SYMBOL = "BTCUSDT"
DEMO_TIMEFRAME = "1h"


DEMO_FEATURE_SET = "standard"


@dataclass(frozen=True)
class DemoSummary:
    """What the demo ingested and built, and where it lives."""

    origin: str
    store_url: str
    imported: ImportResult
    candles: pd.DataFrame
    gaps: GapReport
    daily_returns: pd.Series
    features: pd.DataFrame
    features_seconds: float
    labels: pd.DataFrame


def demo_data_file(settings: Settings) -> Path | None:
    """The shared BTCUSDT 1h file when present (TRADEML_TEST_DATA, default ../shared/data)."""
    configured = os.environ.get("TRADEML_TEST_DATA")
    root = Path(configured).expanduser() if configured else settings.test_data
    path = root / "crypto" / f"{DEMO_SYMBOL}_{DEMO_TIMEFRAME}.csv"
    return path if path.exists() else None


def run_demo(settings: Settings, *, download_start: str = "2024-01-01") -> DemoSummary:
    """Ingest real BTCUSDT 1h candles (shared file, else the Binance archives) and summarise."""
    path = demo_data_file(settings)
    with open_default_store(settings) as store:
        if path is not None:
            origin = str(path)
            imported = import_path(path, store)[0]
        else:
            origin = "binance public archives"
            imported = ingest(
                "binance",
                store,
                settings,
                symbol=DEMO_SYMBOL,
                timeframe=DEMO_TIMEFRAME,
                start=pd.Timestamp(download_start, tz="UTC"),
            )
        candles = read_series(store, DEMO_SYMBOL, DEMO_TIMEFRAME)
        store_url = settings.market_store_url
    daily = resample_candles(candles, DEMO_TIMEFRAME, "1d").candles
    returns = daily["close"].pct_change().dropna()
    started = time.perf_counter()
    cache = FeatureCache(settings.cache_dir / "features")
    features = build_features(candles, DEMO_FEATURE_SET, warmup="drop", cache=cache)
    seconds = time.perf_counter() - started
    specs = [
        {"kind": kind, "horizon": horizon}
        for horizon in HORIZON_NAMES
        for kind in ("direction", "max_high", "min_low")
    ]
    labels = build_labels(candles, specs)
    gaps = gap_report(candle_index(candles), DEMO_TIMEFRAME)
    return DemoSummary(
        origin, store_url, imported, candles, gaps, returns, features, seconds, labels
    )
