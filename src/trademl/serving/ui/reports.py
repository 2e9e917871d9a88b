"""What the Backtests and Monitoring pages show: recorded backtest runs (their metrics,
equity against buy-and-hold, drawdown, monthly returns, R multiples, trades) and a model
version's monitoring report, each chart with the numbers it draws."""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trademl.backtest.report import drawdown, monthly_returns
from trademl.config import Settings
from trademl.errors import NotFoundError
from trademl.tracking.client import connect
from trademl.tracking.runs import get_run, search_runs

Gettext = Callable[[str], str]

RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
LISTED_RUNS = 50
SHOWN_TRADES = 200
# Metrics of the run table and the run page, in this order, when the run logged them.
HEADLINE_METRICS = (
    "total_return",
    "cagr",
    "sharpe",
    "deflated_sharpe",
    "deflated_sharpe_grid",
    "pbo",
    "max_drawdown",
    "win_rate",
    "profit_factor",
    "n_trades",
    "total_r",
    "exposure",
)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def backtest_runs(settings: Settings) -> list[dict[str, Any]]:
    """The newest recorded backtests (run id, name, start, status, headline metrics)."""
    runs = search_runs(
        experiments=[settings.mlflow_experiment_backtests],
        max_results=LISTED_RUNS,
        settings=settings,
    )
    rows = []
    for record in runs.to_dict("records"):
        rows.append(
            {
                "run_id": record["run_id"],
                "name": record.get("run_name") or record["run_id"],
                "start": record["start_time"].to_pydatetime(),
                "status": record["status"],
                "strategy": record.get("tags.strategy"),
                "model": record.get("tags.registered_model"),
                "metrics": {k: _finite(record.get(f"metrics.{k}")) for k in HEADLINE_METRICS},
            }
        )
    return rows


@dataclass
class BacktestView:
    """One recorded backtest."""

    run: dict[str, Any]
    metrics: list[tuple[str, float | None, float | None]]  # name, strategy, buy-and-hold
    trades: list[dict[str, Any]]
    trade_count: int
    equity_rows: list[dict[str, Any]]
    monthly: list[dict[str, Any]]
    r_bins: list[dict[str, Any]]
    charts: dict[str, dict[str, Any]]


def backtest_view(settings: Settings, run_id: str, _: Gettext) -> BacktestView:
    """One backtest run's page; NotFoundError for an id that is not a recorded backtest."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise NotFoundError(f"backtest run {run_id[:40]!r} is not a run id")
    run = get_run(run_id, settings)
    if run["experiment"] != settings.mlflow_experiment_backtests:
        raise NotFoundError(f"run {run_id!r} is not a backtest")
    metrics = run["metrics"]
    rows = [
        (name, _finite(metrics.get(name)), _finite(metrics.get(f"buy_and_hold.{name}")))
        for name in HEADLINE_METRICS
        if name in metrics
    ]
    with tempfile.TemporaryDirectory() as folder:
        files = _artifacts(settings, run_id, run["artifacts"], Path(folder))
        trades = pd.read_csv(files["trades.csv"]) if "trades.csv" in files else pd.DataFrame()
        curves = (
            pd.read_csv(files["equity.csv"], index_col="timestamp", parse_dates=["timestamp"])
            if "equity.csv" in files
            else None
        )
    return _view(run, rows, trades, curves, _)


def _artifacts(settings: Settings, run_id: str, listed: list[str], folder: Path) -> dict[str, Path]:
    client = connect(settings)
    wanted = [name for name in ("trades.csv", "equity.csv") if name in listed]
    return {name: Path(client.download_artifacts(run_id, name, str(folder))) for name in wanted}


def _view(
    run: dict[str, Any],
    metrics: list[tuple[str, float | None, float | None]],
    trades: pd.DataFrame,
    curves: pd.DataFrame | None,
    _: Gettext,
) -> BacktestView:
    charts: dict[str, dict[str, Any]] = {}
    equity_rows: list[dict[str, Any]] = []
    monthly: list[dict[str, Any]] = []
    if curves is not None and not curves.empty:
        strategy = curves["strategy"]
        falls = drawdown(strategy)
        # One point a day is plenty for a chart and its table.
        daily = curves.assign(drawdown=falls).resample("1D").last().dropna(how="all")
        x = [stamp.isoformat() for stamp in daily.index]
        equity_rows = [
            {
                "time": stamp.to_pydatetime(),
                "strategy": _finite(row["strategy"]),
                "buy_and_hold": _finite(row["buy_and_hold"]),
                "drawdown": _finite(row["drawdown"]),
            }
            for stamp, row in zip(daily.index, daily.to_dict("records"), strict=True)
        ]
        charts["equity"] = _chart(
            [
                _series(x, daily["strategy"], _("Strategy")),
                _series(x, daily["buy_and_hold"], _("Buy and hold")),
            ],
            _("Equity"),
        )
        charts["drawdown"] = _chart(
            [_series(x, daily["drawdown"], _("Drawdown"), fill="tozeroy")], _("Drawdown")
        )
        table = monthly_returns(strategy)
        monthly = [
            {"year": int(year), "months": [_finite(v) for v in values]}
            for year, values in zip(table.index, table.to_numpy().tolist(), strict=True)
        ]
        charts["monthly"] = {
            "data": [
                {
                    "type": "heatmap",
                    "x": [str(m) for m in table.columns],
                    "y": [str(y) for y in table.index],
                    "z": [[_finite(v) for v in row] for row in table.to_numpy().tolist()],
                    "colorscale": "RdYlGn",
                    "zmid": 0,
                }
            ],
            "layout": {
                "height": 80 + 40 * len(table),
                "margin": {"l": 60, "r": 20, "t": 10, "b": 40},
            },
        }
    r_bins: list[dict[str, Any]] = []
    if "r_multiple" in trades and len(trades):
        values = trades["r_multiple"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if len(values):
            counts, edges = np.histogram(values, bins=min(20, max(5, len(values) // 5)))
            r_bins = [
                {"from": float(lo), "to": float(hi), "count": int(n)}
                for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True)
            ]
            charts["r"] = {
                "data": [
                    {
                        "type": "bar",
                        "name": _("Trades"),
                        "x": [(b["from"] + b["to"]) / 2 for b in r_bins],
                        "y": [b["count"] for b in r_bins],
                    }
                ],
                "layout": {
                    "height": 260,
                    "xaxis": {"title": {"text": _("R multiple")}},
                    "margin": {"l": 60, "r": 20, "t": 10, "b": 40},
                },
            }
    shown = trades.tail(SHOWN_TRADES).iloc[::-1]
    trade_rows = json.loads(shown.to_json(orient="records")) if len(shown) else []
    for row in trade_rows:
        for key in ("entry_time", "exit_time"):
            if row.get(key) is not None:
                row[key] = pd.Timestamp(row[key], tz="UTC").to_pydatetime()
    return BacktestView(
        run=run,
        metrics=metrics,
        trades=trade_rows,
        trade_count=len(trades),
        equity_rows=equity_rows,
        monthly=monthly,
        r_bins=r_bins,
        charts=charts,
    )


def _series(x: list[str], values: pd.Series, name: str, fill: str | None = None) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": x,
        "y": [_finite(v) for v in values.tolist()],
    }
    if fill:
        trace["fill"] = fill
    return trace


def _chart(traces: list[dict[str, Any]], title: str) -> dict[str, Any]:
    return {
        "data": traces,
        "layout": {
            "height": 300,
            "yaxis": {"title": {"text": title}},
            "margin": {"l": 60, "r": 20, "t": 10, "b": 40},
            "legend": {"orientation": "h"},
        },
    }


def monitoring_charts(report: dict[str, Any], _: Gettext) -> dict[str, dict[str, Any]]:
    """Bar charts of a monitoring report: loss against the baseline per target, and coverage
    against its nominal level."""
    targets = report["targets"]
    names = [t["target"] for t in targets]
    charts = {
        "loss": {
            "data": [
                {
                    "type": "bar",
                    "name": _("Model loss"),
                    "x": names,
                    "y": [t["model_loss"] for t in targets],
                },
                {
                    "type": "bar",
                    "name": _("Baseline loss"),
                    "x": names,
                    "y": [t["baseline_loss"] for t in targets],
                },
            ],
            "layout": {
                "height": 280,
                "barmode": "group",
                "margin": {"l": 60, "r": 20, "t": 10, "b": 60},
            },
        },
    }
    covered = [t for t in targets if t["coverage"] is not None]
    if covered:
        charts["coverage"] = {
            "data": [
                {
                    "type": "bar",
                    "name": _("Coverage"),
                    "x": [t["target"] for t in covered],
                    "y": [t["coverage"] for t in covered],
                },
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": _("Nominal coverage"),
                    "x": [t["target"] for t in covered],
                    "y": [t["nominal_coverage"] for t in covered],
                    "marker": {"size": 12, "symbol": "line-ew-open"},
                },
            ],
            "layout": {
                "height": 260,
                "yaxis": {"range": [0, 1]},
                "margin": {"l": 60, "r": 20, "t": 10, "b": 60},
            },
        }
    return charts
