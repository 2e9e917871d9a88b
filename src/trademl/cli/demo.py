"""``trademl demo``: the end-to-end job of ``make demo`` on the embedded defaults."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from trademl.cli.backtest import print_metrics
from trademl.cli.serve import dashboard_url
from trademl.cli.train import print_summary, print_tracking
from trademl.config import get_settings
from trademl.errors import TradeMLError
from trademl.features import HORIZON_NAMES, all_indicators, get_indicator, resolve_horizon

if TYPE_CHECKING:
    from trademl.demo import DemoSummary, MonitoringDemo

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def demo() -> None:
    """Ingest real candles and print their summary (later stages extend this)."""
    # The demo runs every layer (tracking, serving, monitoring): imported when it runs.
    from trademl.cli.quickstart import announce, print_quickstart
    from trademl.demo import run_demo

    settings = get_settings()
    started = time.perf_counter()
    summary = run_demo(settings, say=announce)
    candles, report = summary.candles, summary.gaps
    console.rule("[bold]trademl demo: data")
    console.print(f"source:  {summary.origin}")
    console.print(f"store:   {summary.store_url}")
    r = summary.imported.report
    console.print(
        f"written: inserted {r.inserted:,}, updated {r.updated:,}, unchanged {r.unchanged:,}"
    )
    table = Table(title="BTCUSDT 1h")
    table.add_column("measure")
    table.add_column("value", justify="right")
    close = candles["close"]
    returns = summary.daily_returns
    rows = [
        ("bars", f"{len(candles):,}"),
        ("first bar (UTC)", f"{candles.index[0]:%Y-%m-%d %H:%M}"),
        ("last bar (UTC)", f"{candles.index[-1]:%Y-%m-%d %H:%M}"),
        (
            "missing bars",
            f"{report.missing_bars:,} in {len(report.gaps)} gaps ({report.coverage:.3%} coverage)",
        ),
        (
            "largest gap",
            f"{report.largest(1)[0].missing_bars} bars from {report.largest(1)[0].start:%Y-%m-%d %H:%M}"
            if report.gaps
            else "-",
        ),
        ("close first → last", f"{close.iloc[0]:,.2f} → {close.iloc[-1]:,.2f}"),
        ("close min / max", f"{close.min():,.2f} / {close.max():,.2f}"),
        ("daily return mean ± sd", f"{returns.mean():+.3%} ± {returns.std():.3%}"),
        ("annualised volatility", f"{returns.std() * np.sqrt(365):.1%}"),
        ("total volume (BTC)", f"{candles['volume'].sum():,.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    _print_features(summary)
    if summary.training is not None:
        console.rule("[bold]trademl demo: out-of-sample validation (purged walk-forward)")
        print_summary(summary.training.summary)
        out = summary.training.output
        console.print(f"report: {out / 'summary.md'}  predictions: {out / 'predictions.parquet'}")
        console.print(f"model:  {out / 'pipeline.pkl'}  (in {summary.training.seconds:.0f}s)")
        if summary.training.run_id is not None:
            console.rule("[bold]trademl demo: MLflow tracking and model registry")
            print_tracking(summary.training)
    if summary.backtest is not None:
        console.rule("[bold]trademl demo: backtest of the out-of-sample predictions (after costs)")
        print_metrics(summary.backtest.metrics, summary.backtest.baseline_metrics)
        console.print(f"report: {summary.backtest.output / 'report.html'}")
    if summary.training is not None:
        console.rule("[bold]trademl demo: serve the model")
        if summary.parity is not None:
            console.print(str(summary.parity), markup=False)
        if summary.folder_matches_registry is not None:
            verdict = "exactly as" if summary.folder_matches_registry else "DIFFERENTLY from"
            console.print(
                f"run folder = registry: {out / 'pipeline.pkl'}, loaded without MLflow, "
                f"predicts the last bar {verdict} the registered version"
            )
        console.print(f"serve:   trademl --home {get_settings().home} serve   (docs at /docs)")
        console.print(
            "predict: curl -s -X POST http://127.0.0.1:8000/api/v1/predict "
            "-H 'Content-Type: application/json' "
            '-d \'{"symbol": "BTCUSDT", "timeframe": "1h", "horizon": "all"}\''
        )
        settings = get_settings()
        console.print(
            f"dashboard: {dashboard_url(settings.serve_host, settings.serve_port)}   "
            f"(trademl --home {settings.home} dashboard; English, Russian, Spanish)"
        )
    if summary.trading is not None:
        console.rule("[bold]trademl demo: live loop = backtest (paper broker, bar by bar)")
        console.print(str(summary.trading), markup=False)
    if summary.monitoring is not None:
        _print_monitoring(summary.monitoring)
    if summary.quickstart is not None and summary.training is not None:
        # The quickstart's own summary (`trademl quickstart` prints the same table).
        print_quickstart(summary.quickstart, time.perf_counter() - started)
    families = ", ".join(
        f"{count} {name}" + (f" ({', '.join(extra)} from packages)" if extra else "")
        for name, (count, extra) in summary.plugins.items()
    )
    console.print(f"plug-ins: {families}", markup=False)
    console.print(
        "next: trademl data list | trademl features list | "
        "trademl features build --set standard --symbol BTCUSDT --timeframe 1h --out f.parquet"
    )


def _print_features(summary: DemoSummary) -> None:
    from trademl.demo import DEMO_FEATURE_SET

    features, labels = summary.features, summary.labels
    console.rule("[bold]trademl demo: features and labels")
    families = Counter(_family(column) for column in features.columns)
    console.print(
        f"features: {DEMO_FEATURE_SET} v{features.attrs['feature_set_version']}: "
        f"{features.shape[1]} columns × {len(features):,} rows in {summary.features_seconds:.2f}s "
        f"({features.attrs['warmup_bars']} warm-up rows dropped, "
        f"{int(features.isna().to_numpy().sum()):,} NaN cells after them)"
    )
    console.print(
        "          " + ", ".join(f"{name} {count}" for name, count in families.most_common())
    )
    table = Table(title="labels per named horizon (out of the data's future, never filled)")
    for column in (
        "horizon",
        "bars",
        "complete rows",
        "up / flat / down",
        "mean log max high",
        "mean log min low",
    ):
        table.add_column(column, justify="left" if column == "horizon" else "right")
    timeframe = summary.candles.attrs.get("timeframe", "1h")
    for name in HORIZON_NAMES:
        bars = resolve_horizon(name, timeframe)
        direction = labels[f"direction_{bars}"].dropna()
        shares = [(direction == side).mean() for side in (1, 0, -1)]
        table.add_row(
            name,
            str(bars),
            f"{int(labels[f'complete_{bars}'].sum()):,}",
            " / ".join(f"{share:.1%}" for share in shares),
            f"{labels[f'max_high_{bars}'].mean():+.4f}",
            f"{labels[f'min_low_{bars}'].mean():+.4f}",
        )
    console.print(table)


def _family(column: str) -> str:
    timeframe, _, name = column.partition("_") if column.startswith("tf") else ("", "", column)
    try:
        family = get_indicator(name.split("_")[0]).family
    except TradeMLError:
        family = next((i.family for i in all_indicators() if name.startswith(i.name)), "other")
    return f"{family} ({timeframe})" if timeframe else family


def _print_monitoring(m: MonitoringDemo) -> None:
    """The monitoring stage: what was served, which trigger fired, when and why, the cycle."""
    from trademl.demo import MONITOR_CHECKS, MONITOR_MODEL

    console.rule("[bold]trademl demo: monitoring and retraining (later span served)")
    console.print(
        f"champion: {MONITOR_MODEL} version {m.version}, trained on the year before "
        f"{m.served_from:%Y-%m-%d}; {m.served_bars:,} later bars served and logged",
        markup=False,
    )
    if m.forced:
        console.print(
            f"  (promoted by hand for this stage; the gate said: {m.forced[:300]})", markup=False
        )
    for outcome in m.checks:
        at = pd.Timestamp(outcome["at"])
        action, reason = outcome["action"], str(outcome.get("reason", ""))
        if action in ("none", "waiting"):
            continue
        console.print(
            f"{at:%Y-%m-%d %H:%M} {outcome.get('trigger', '')} trigger: {action.upper()}",
            markup=False,
        )
        for alarm in (outcome.get("cycle") or {}).get("alarms", []):
            console.print(f"  why: {alarm}", markup=False)
        console.print(f"  gate: {reason[:400]}", markup=False)
    quiet = sum(o["action"] in ("none", "waiting") for o in m.checks)
    console.print(
        f"checks without a trigger: {quiet} (weekly, cron '{MONITOR_CHECKS}')", markup=False
    )
    if m.cycle is not None:
        console.print(
            f"cycle recorded: MLflow run {m.cycle['run_id']} in experiment "
            f"{get_settings().mlflow_experiment_retraining}",
            markup=False,
        )
    for line in m.report_lines:
        console.print(line, markup=False)
    if m.report_path is not None:
        console.print(f"monitoring report: {m.report_path}", markup=False)
    console.print(
        f"monitor: trademl monitor {MONITOR_MODEL}   retrain: trademl retrain {MONITOR_MODEL}   "
        f"watch: trademl watch {MONITOR_MODEL}",
        markup=False,
    )
