"""The end-to-end demo behind ``make demo``: the quickstart's stages on the shared BTCUSDT
1h file (:mod:`trademl.quickstart`), then monitoring and retraining on a later span.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from trademl.api import train as run_training
from trademl.backtest.outcome import BacktestRun
from trademl.backtest.strategy_table import STRATEGIES
from trademl.config import Settings
from trademl.data.gaps import GapReport
from trademl.data.ingest import ImportResult
from trademl.data.resample import resample_candles
from trademl.data.sources.base import SOURCES
from trademl.data.stores.base import STORES
from trademl.features.indicators import INDICATORS
from trademl.models.base import MODELS
from trademl.monitoring.assess import MonitoringError, served_records
from trademl.monitoring.html import write_report
from trademl.monitoring.predictions import PredictionLog
from trademl.monitoring.schedule import parse_cron
from trademl.plugins import PluginTable
from trademl.quickstart import FEATURE_SET, QuickstartResult, run_config, run_quickstart
from trademl.run_outputs import RunResult
from trademl.serving.parity import ParityReport
from trademl.tracking.pipeline import load_pipeline
from trademl.tracking.policy import check
from trademl.tracking.registry import promote
from trademl.tracking.retraining import retrain
from trademl.tracking.watch import log_url, monitor, summary_lines, window_features
from trademl.trading.parity import ParityReport as TradingParity
from trademl.trading.parity import champion_parity

DEMO_SYMBOL = "BTCUSDT"
DEMO_TIMEFRAME = "1h"


DEMO_FEATURE_SET = FEATURE_SET
# The year the demo trains on (the README's numbers are from it).
DEMO_SPAN = ("2023-08-01", "2024-08-01")


def demo_run_config(settings: Settings) -> dict[str, Any]:
    """The training run of the demo: the quickstart's on the shared year, a small GRU beside."""
    return run_config(
        settings,
        DEMO_SYMBOL,
        DEMO_TIMEFRAME,
        DEMO_SPAN,
        output=settings.home / "runs" / "btc_1h_demo",
        deep=True,
    )


# The monitoring stage: a champion trained on the year before MONITOR_FEED, the bars after it
# served, the retraining policy replayed over them.
MONITOR_MODEL = "BTCUSDT_1h_monitoring_demo"
MONITOR_FEED = pd.Timestamp("2024-02-01", tz="UTC")
MONITOR_CHECKS = "5 0 * * mon"  # the policy's checks: weekly here, hourly in production
MONITOR_SCHEDULE = "0 0 1 * *"  # a scheduled retrain on the first of each month


def monitoring_run_config(settings: Settings) -> dict[str, Any]:
    """The monitored model: the demo's LightGBM on the year before :data:`MONITOR_FEED`."""
    config = demo_run_config(settings)
    config["data"] = {**config["data"], "start": "2023-02-01", "end": MONITOR_FEED.isoformat()}
    config["models"] = config["models"][:1]
    config["registry"] = {**config["registry"], "name": MONITOR_MODEL}
    config["output"] = str(settings.home / "runs" / "btc_1h_monitoring_demo")
    config["monitoring"] = {
        "window": 720,
        "min_mature": 200,
        "arl0": 2000,
        "retraining": {
            "schedule": MONITOR_SCHEDULE,
            "on_alarm": True,
            "train_bars": 8760,
            "rollback_bars": 168,
        },
    }
    return config


@dataclass(frozen=True)
class MonitoringDemo:
    """What the monitoring stage did: the served span, the checks, the first cycle."""

    version: int
    forced: str | None
    served_from: pd.Timestamp
    served_bars: int
    checks: list[dict[str, Any]]
    cycle: dict[str, Any] | None
    report_lines: list[str]
    report_path: Path | None


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
    training: RunResult | None = None
    backtest: BacktestRun | None = None
    parity: ParityReport | None = None
    # The run folder's pipeline (loaded without MLflow) predicts what the registered one does.
    folder_matches_registry: bool | None = None
    # Family → (names registered, of which from installed packages' entry points).
    plugins: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    monitoring: MonitoringDemo | None = None
    quickstart: QuickstartResult | None = None
    # The champion's predictions replayed through the live loop on the paper broker.
    trading: TradingParity | None = None


def demo_data_file(settings: Settings) -> Path | None:
    """The shared BTCUSDT 1h file when present (TRADEML_TEST_DATA, default ../shared/data)."""
    configured = os.environ.get("TRADEML_TEST_DATA")
    root = Path(configured).expanduser() if configured else settings.test_data
    path = root / "crypto" / f"{DEMO_SYMBOL}_{DEMO_TIMEFRAME}.csv"
    return path if path.exists() else None


def run_demo(
    settings: Settings,
    *,
    download_start: str = "2024-01-01",
    train: bool = True,
    say: Callable[[str], None] | None = None,
) -> DemoSummary:
    """The quickstart's stages on BTCUSDT 1h (the shared file, else the Binance archives),
    then the monitoring stage; a download holds too little history for the folds: no training."""
    path = demo_data_file(settings)
    quick = run_quickstart(
        settings,
        source=path or "binance",
        symbol=DEMO_SYMBOL,
        timeframe=DEMO_TIMEFRAME,
        span=DEMO_SPAN,
        deep=True,
        train=train and path is not None,
        output=settings.home / "runs" / "btc_1h_demo",
        download_start=pd.Timestamp(download_start, tz="UTC"),
        say=say,
    )
    daily = resample_candles(quick.candles, DEMO_TIMEFRAME, "1d").candles
    returns = daily["close"].pct_change().dropna()
    training = quick.training
    monitoring = run_monitoring_demo(settings, quick.candles) if training is not None else None
    trading = None
    if training is not None and training.model_name and training.model_version is not None:
        trading = champion_parity(
            settings, training.model_name, training.model_version, quick.candles
        )
    return DemoSummary(
        quick.origin,
        quick.store_url,
        quick.imported,
        quick.candles,
        quick.gaps,
        returns,
        quick.features,
        quick.features_seconds,
        quick.labels,
        training,
        quick.backtest,
        quick.parity,
        quick.folder_matches_registry,
        plugin_families(),
        monitoring,
        quick,
        trading,
    )


def _log_served(settings: Settings, pipeline: Any, version: int, candles: pd.DataFrame) -> int:
    """The bars from MONITOR_FEED as the server logs them (one batch: served = validated)."""
    first = int(candles.index.searchsorted(MONITOR_FEED))
    out = pipeline.predict(candles.iloc[first - pipeline.warmup_bars :])
    rows = served_records(
        out, pipeline, model_name=MONITOR_MODEL, model_version=version, request_id="demo-replay"
    )
    with PredictionLog(log_url(settings)) as log:
        log.append(rows)
    return len(out)


def run_monitoring_demo(settings: Settings, candles: pd.DataFrame) -> MonitoringDemo:
    """Train on the year before MONITOR_FEED, serve the bars after it, and replay the
    retraining policy over them: weekly checks (an alarm or drift starts a cycle) and the
    monthly schedule, until the first cycle; then the current champion's report."""
    result = run_training(monitoring_run_config(settings), settings=settings)
    assert result.model_version is not None
    forced = None
    if result.alias != "champion":
        # Monitoring watches a champion; the demo says when the gate would not have made one.
        forced = result.registry_reason or "not promoted by the gate"
        promote(
            MONITOR_MODEL,
            result.model_version,
            force=True,
            settings=settings,
            reason="the demo's monitoring stage needs a champion",
        )
    pipeline, _ = load_pipeline(MONITOR_MODEL, result.model_version, settings)
    served = _log_served(settings, pipeline, result.model_version, candles)
    checks: list[dict[str, Any]] = []
    cycle: dict[str, Any] | None = None
    end = candles.index[-1]
    every, schedule = parse_cron(MONITOR_CHECKS), parse_cron(MONITOR_SCHEDULE)
    at_check = every.next_after(MONITOR_FEED.to_pydatetime())
    at_schedule = schedule.next_after(MONITOR_FEED.to_pydatetime())
    while min(at_check, at_schedule) <= end and cycle is None:
        outcome: dict[str, Any]
        if at_schedule <= at_check:
            when = pd.Timestamp(at_schedule)
            done = retrain(MONITOR_MODEL, trigger="scheduled", until=when, settings=settings)
            outcome = {
                "action": done.decision,
                "at": when.isoformat(),
                "trigger": "scheduled",
                "reason": done.reason,
                "cycle": done.as_dict(),
            }
            at_schedule = schedule.next_after(at_schedule)
        else:
            when = pd.Timestamp(at_check)
            outcome = check(MONITOR_MODEL, until=when, settings=settings)
            outcome["at"] = when.isoformat()
            at_check = every.next_after(at_check)
        checks.append(outcome)
        if "cycle" in outcome:
            cycle = outcome["cycle"]
    lines: list[str] = []
    path = None
    try:
        report, _, champion = monitor(MONITOR_MODEL, settings=settings)
        lines = summary_lines(report)
        if champion.monitoring is not None:
            path = write_report(
                report,
                champion.monitoring,
                window_features(report, champion, settings),
                settings.home / "monitoring" / f"{MONITOR_MODEL}.html",
            )
    except MonitoringError as error:
        lines = [f"no report: {error}"]
    return MonitoringDemo(
        result.model_version, forced, MONITOR_FEED, served, checks, cycle, lines, path
    )


def plugin_families() -> dict[str, tuple[int, list[str]]]:
    """Every plug-in family: how many names it knows, and those from installed packages."""
    tables: dict[str, PluginTable[Any]] = {
        "model kinds": MODELS,
        "indicators": INDICATORS,
        "sources": SOURCES,
        "stores": STORES,
        "strategies": STRATEGIES,
    }
    return {name: (len(table.names()), table.third_party()) for name, table in tables.items()}
