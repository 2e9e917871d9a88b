"""Backtest reports: one self-contained HTML file and a metrics JSON file.

The HTML report embeds the plotly.js bundle once in its ``<head>`` so that it opens offline,
and holds six sections: a description of the run, the metrics table (strategy beside the
buy-and-hold baseline), a candlestick chart with the trades, the equity and drawdown curves,
a monthly returns heatmap and the R-multiple histogram. Both files are written atomically.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trademl.atomic import atomic_path
from trademl.html_page import write_page

EXIT_COLOURS: dict[str, str] = {
    "target": "#2ca02c",
    "stop": "#d62728",
    "time": "#ff7f0e",
    "signal": "#1f77b4",
    "end": "#7f7f7f",
}
_FALLBACK_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table.metrics { border-collapse: collapse; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 4px 10px; }
table.metrics td { text-align: right; font-variant-numeric: tabular-nums; }
table.metrics th[scope=row] { text-align: left; font-weight: normal; }
p.caption, p.note { color: #555; font-size: 0.9em; }
"""


def _finite(value: Any) -> Any:
    """Return ``value`` with NaN and infinite floats (also nested) replaced by ``None``."""
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def format_value(value: float | None) -> str:
    """Format one metric for the HTML table.

    Parameters
    ----------
    value:
        The metric; ``None``, NaN and infinities are shown as ``—`` or ``±inf``.

    Returns
    -------
    str
        Integers without decimals, other numbers with four decimals.

    Examples
    --------
    >>> format_value(12.0), format_value(0.123456), format_value(float("nan"))
    ('12', '0.1235', '—')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, pd.Timedelta | str):
        return str(value)
    number = float(value)
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number)}"
    return f"{number:.4f}"


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Compound an equity curve into calendar-month returns.

    Parameters
    ----------
    equity:
        Account value indexed by a ``DatetimeIndex`` (UTC).

    Returns
    -------
    pandas.DataFrame
        One row per year (index ``year``), columns ``1..12`` (``month``); each value is the
        month's return as a fraction: the last value of the month over the last value of the
        previous month, minus one (the first month is measured from the first value). Months
        without data are NaN.

    Examples
    --------
    >>> idx = pd.to_datetime(["2024-01-01", "2024-01-31", "2024-02-29"], utc=True)
    >>> monthly_returns(pd.Series([100.0, 110.0, 121.0], index=idx)).loc[2024, [1, 2]].round(4)
    month
    1    0.1
    2    0.1
    Name: 2024, dtype: float64
    """
    columns = pd.Index(range(1, 13), name="month")
    clean = equity.dropna()
    if clean.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="year"), dtype=float)
    index = pd.DatetimeIndex(clean.index)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    values = pd.Series(clean.to_numpy(dtype=float), index=index)
    ends = values.groupby(index.to_period("M")).last()
    previous = ends.shift(1)
    previous.iloc[0] = float(values.iloc[0])
    returns = ends / previous - 1.0
    periods = pd.PeriodIndex(returns.index)
    table = pd.DataFrame({"year": periods.year, "month": periods.month, "r": returns.to_numpy()})
    frame = table.pivot(index="year", columns="month", values="r").reindex(columns=columns)
    frame.index.name = "year"
    return frame.astype(float)


def drawdown(equity: pd.Series) -> pd.Series:
    """Return the fractional drawdown of ``equity`` from its running peak (zero or negative)."""
    return equity / equity.cummax() - 1.0


def _metrics_table(metrics: Mapping[str, float], baseline: Mapping[str, float] | None) -> str:
    names = list(metrics) + [k for k in (baseline or {}) if k not in metrics]
    head = "<tr><th>metric</th><th>strategy</th>"
    head += "<th>buy &amp; hold</th></tr>" if baseline is not None else "</tr>"
    rows = []
    for name in names:
        cells = f"<td>{format_value(metrics.get(name))}</td>"
        if baseline is not None:
            cells += f"<td>{format_value(baseline.get(name))}</td>"
        rows.append(f'<tr><th scope="row">{html.escape(name)}</th>{cells}</tr>')
    return f'<table class="metrics">{head}{"".join(rows)}</table>'


def _exit_colour(reason: str, seen: dict[str, str]) -> str:
    if reason not in seen:
        fallback = _FALLBACK_COLOURS[len(seen) % len(_FALLBACK_COLOURS)]
        seen[reason] = EXIT_COLOURS.get(reason, fallback)
    return seen[reason]


def _price_figure(candles: pd.DataFrame, trades: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(
        go.Candlestick(
            x=candles.index,
            open=candles["open"],
            high=candles["high"],
            low=candles["low"],
            close=candles["close"],
            name="price",
        )
    )
    if len(candles) and len(trades):
        start, end = candles.index[0], candles.index[-1]
        shown = trades[(trades["entry_time"] >= start) & (trades["entry_time"] <= end)]
        for side, symbol, colour in (
            ("long", "triangle-up", "green"),
            ("short", "triangle-down", "red"),
        ):
            part = shown[shown["side"] == side]
            if len(part):
                fig.add_trace(
                    go.Scatter(
                        x=part["entry_time"],
                        y=part["entry_price"],
                        mode="markers",
                        name=f"{side} entry",
                        marker={"symbol": symbol, "size": 11, "color": colour},
                    )
                )
        exits = trades[(trades["exit_time"] >= start) & (trades["exit_time"] <= end)]
        seen: dict[str, str] = {}
        for reason, part in exits.groupby("exit_reason", sort=True):
            fig.add_trace(
                go.Scatter(
                    x=part["exit_time"],
                    y=part["exit_price"],
                    mode="markers",
                    name=f"exit: {reason}",
                    marker={"symbol": "x", "size": 9, "color": _exit_colour(str(reason), seen)},
                )
            )
    fig.update_layout(height=550, xaxis_rangeslider_visible=False, margin={"t": 30})
    return fig


def _equity_figure(equity: pd.Series, baseline: pd.Series | None) -> go.Figure:
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04
    )
    fig.add_trace(go.Scatter(x=equity.index, y=equity, name="strategy"), row=1, col=1)
    dd = [(equity, "strategy drawdown")]
    if baseline is not None:
        fig.add_trace(go.Scatter(x=baseline.index, y=baseline, name="buy & hold"), row=1, col=1)
        dd.append((baseline, "buy & hold drawdown"))
    for series, name in dd:
        fig.add_trace(
            go.Scatter(x=series.index, y=drawdown(series) * 100.0, name=name, fill="tozeroy"),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    fig.update_layout(height=600, margin={"t": 30})
    return fig


def _monthly_figure(equity: pd.Series) -> go.Figure:
    table = monthly_returns(equity) * 100.0
    values = table.to_numpy()
    text = [["" if np.isnan(v) else f"{v:.1f}" for v in row] for row in values]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=list(_MONTHS),
            y=[str(y) for y in table.index],
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0.0,
            colorbar={"title": "%"},
        )
    )
    fig.update_layout(height=120 + 40 * max(len(table), 1), margin={"t": 30})
    return fig


def _r_figure(trades: pd.DataFrame) -> go.Figure:
    r = trades["r_multiple"].dropna() if "r_multiple" in trades else pd.Series(dtype=float)
    fig = go.Figure(go.Histogram(x=r, nbinsx=40, name="R"))
    fig.add_vline(x=0.0, line_dash="dash", line_color="#555")
    fig.update_layout(height=350, xaxis_title="R multiple", yaxis_title="trades", margin={"t": 30})
    return fig


def _div(fig: go.Figure, div_id: str) -> str:
    # A fixed id (Plotly draws a random UUID by default) keeps reruns' reports byte-identical.
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id))


def _description(
    candles: pd.DataFrame, trades: pd.DataFrame, meta: Mapping[str, Any] | None
) -> str:
    symbol = candles.attrs.get("symbol") or (meta or {}).get("symbol") or "unknown symbol"
    timeframe = candles.attrs.get("timeframe") or (meta or {}).get("timeframe")
    text = f"Backtest of {symbol}"
    text += f" on {timeframe} bars" if timeframe else ""
    if len(candles):
        first, last = candles.index[0], candles.index[-1]
        text += f" from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC ({len(candles):,} bars)"
    text += f", {len(trades)} trade{'s' if len(trades) != 1 else ''}."
    extra = {k: v for k, v in (meta or {}).items() if k not in ("symbol", "timeframe")}
    if extra:
        text += " Settings: " + ", ".join(f"{k} = {v}" for k, v in extra.items()) + "."
    return html.escape(text, quote=False)


def write_report(
    path: str | Path,
    *,
    candles: pd.DataFrame,
    trades: pd.DataFrame,
    equity: pd.Series,
    metrics: Mapping[str, float],
    baseline_equity: pd.Series | None = None,
    baseline_metrics: Mapping[str, float] | None = None,
    title: str = "Backtest report",
    max_candles: int = 5_000,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-contained HTML report of one backtest.

    Parameters
    ----------
    path:
        The HTML file to write (replaced atomically).
    candles:
        The Candles the backtest ran on.
    trades:
        One row per trade, as the engine returns them (``entry_time``, ``exit_time``, ``side``,
        ``entry_price``, ``exit_price``, ``exit_reason``, ``r_multiple``...); may be empty.
    equity:
        The strategy's equity curve, indexed by the candles' timestamps.
    metrics:
        The strategy's metrics (flat name → number).
    baseline_equity, baseline_metrics:
        The buy-and-hold baseline's curve and metrics, shown beside the strategy.
    title:
        The page title and heading.
    max_candles:
        Only the last ``max_candles`` bars go into the candlestick chart (file size).
    meta:
        Run settings (symbol, costs...) for the description paragraph.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if max_candles < 1:
        raise ValueError(f"max_candles must be at least 1, got {max_candles}")
    shown = candles.iloc[-max_candles:]
    caption = f"All {len(candles):,} bars."
    if len(shown) < len(candles):
        caption = (
            f"The last {len(shown):,} of {len(candles):,} bars (limited to keep the file small); "
            "trades outside that window are not marked."
        )
    caption += " Entries: triangles up (long) and down (short); exits: crosses by exit reason."
    no_trades = "" if len(trades) else '<p class="note">No trades were taken in this run.</p>'
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Run</h2>",
        f"<p>{_description(candles, trades, meta)}</p>{no_trades}",
        "<h2>Metrics</h2>",
        _metrics_table(metrics, baseline_metrics),
        "<h2>Price and trades</h2>",
        _div(_price_figure(shown, trades), "chart-price"),
        f'<p class="caption">{caption}</p>',
        "<h2>Equity and drawdown</h2>",
        _div(_equity_figure(equity, baseline_equity), "chart-equity"),
        "<h2>Monthly returns</h2>",
        _div(_monthly_figure(equity), "chart-monthly"),
        '<p class="caption">Strategy returns per calendar month, in percent.</p>',
        "<h2>R-multiple distribution</h2>",
        _div(_r_figure(trades), "chart-r-multiples"),
        no_trades,
    ]
    return write_page(path, title, _STYLE, sections)


def write_metrics_json(
    path: str | Path,
    metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the metrics as JSON, NaN and infinities as ``null``.

    Parameters
    ----------
    path:
        The JSON file to write (replaced atomically).
    metrics, baseline_metrics:
        The strategy's and the baseline's metrics.
    meta:
        Run settings, stored under ``"meta"``.

    Returns
    -------
    pathlib.Path
        ``path``; the file holds ``{"metrics": ..., "baseline_metrics": ..., "meta": ...}``.
    """
    payload = {
        "metrics": _finite(dict(metrics)),
        "baseline_metrics": None if baseline_metrics is None else _finite(dict(baseline_metrics)),
        "meta": _finite(dict(meta or {})),
    }
    final = Path(path)
    with atomic_path(final) as temp:
        Path(temp).write_text(
            json.dumps(payload, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n",
            encoding="utf-8",
        )
    return final
