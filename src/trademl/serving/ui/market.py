"""What the Market and Live pages show: stored candles, indicators of a preset, the served
model's predicted high/low bands with their intervals, and the max/min strategy's signals."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trademl.backtest.strategies import maxmin_signals
from trademl.data.stores import SeriesInfo
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, NotFoundError, TradeMLError
from trademl.features import build_features, load_feature_set, preset_names, warmup_bars
from trademl.serving.deps import ServingState
from trademl.serving.host import Served

Gettext = Callable[[str], str]

SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$")
DEFAULT_BARS = 120
MAX_BARS = 1_000
# Indicator columns charted and tabled beside the candles (the preset's first ones).
SHOWN_INDICATORS = 4


@dataclass
class MarketView:
    """The Market page of one series."""

    symbol: str
    timeframe: str
    preset: str
    horizon: str | None
    horizons: list[str]
    model: str | None  # "name vN (alias)" of the served model, None when none serves it
    model_note: str | None  # why there are no bands
    rows: list[dict[str, Any]]  # newest first: candle, bands, signal
    indicator_columns: list[str]
    indicator_rows: list[dict[str, Any]]
    signals: list[dict[str, Any]]
    chart: dict[str, Any]
    indicator_chart: dict[str, Any]
    info: SeriesInfo
    series: list[SeriesInfo] = field(default_factory=list)


def check_symbol(symbol: str) -> str:
    """``symbol`` when it looks like one (letters, digits, ``._:/-``), else a NotFoundError."""
    if not SYMBOL_PATTERN.fullmatch(symbol):
        shown = symbol[:40] + ("..." if len(symbol) > 40 else "")
        raise NotFoundError(f"symbol {shown!r} is not a symbol name")
    return symbol


def series_info(state: ServingState, symbol: str, timeframe: str) -> SeriesInfo:
    """The stored series, or a NotFoundError naming what is missing."""
    check_symbol(symbol)
    try:
        tf = Timeframe.parse(timeframe).name
    except ConfigError as error:  # a page that does not exist, as an unknown symbol
        raise NotFoundError(str(error)) from None
    info = state.store.info(symbol, tf)
    if info is None:
        raise NotFoundError(f"no {symbol} {tf} candles in the store")
    return info


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _served(state: ServingState, symbol: str, timeframe: str) -> tuple[Served | None, str | None]:
    try:
        return state.host.find(symbol, timeframe), None
    except TradeMLError as error:
        return None, str(error)


def market_view(
    state: ServingState,
    symbol: str,
    timeframe: str,
    *,
    preset: str,
    bars: int,
    horizon: str | None,
    _: Gettext,
) -> MarketView:
    """The last ``bars`` candles of a stored series with what the page draws on them."""
    info = series_info(state, symbol, timeframe)
    if preset not in preset_names():
        raise NotFoundError(f"preset {preset!r} is not one of: {', '.join(preset_names())}")
    feature_set = load_feature_set(preset)
    served, note = _served(state, symbol, info.timeframe)
    needed = bars + warmup_bars(feature_set, info.timeframe)
    if served is not None:
        needed = max(needed, bars + served.pipeline.window_bars)
    frame = state.store.tail(symbol, info.timeframe, needed, info)
    shown = frame.iloc[-bars:]
    predictions, horizons = None, []
    if served is not None:
        horizons = list(served.pipeline.horizons)
        if horizon not in horizons:
            horizon = horizons[0]
        if len(frame) > served.pipeline.window_bars:
            predictions = served.pipeline.predict(frame).reindex(shown.index)
        else:
            note = _("Too few stored candles for the model's warm-up.")
    else:
        horizon = None
    indicators = build_features(frame, feature_set).reindex(shown.index)
    columns = [str(c) for c in indicators.columns[:SHOWN_INDICATORS]]
    rows = _rows(shown, predictions, horizon)
    signals = [row for row in rows if row["side"] != "flat"]
    view = MarketView(
        symbol=symbol,
        timeframe=info.timeframe,
        preset=preset,
        horizon=horizon,
        horizons=horizons,
        model=(
            f"{served.name} v{served.version}" + (f" ({served.alias})" if served.alias else "")
            if served
            else None
        ),
        model_note=note,
        rows=rows[::-1],
        indicator_columns=columns,
        indicator_rows=[
            {"time": stamp.to_pydatetime(), "values": [_finite(v) for v in values]}
            for stamp, values in zip(
                indicators.index[::-1], indicators[columns].to_numpy()[::-1].tolist(), strict=True
            )
        ],
        signals=signals[::-1],
        chart=_price_chart(shown, rows, _),
        indicator_chart=_indicator_chart(indicators[columns], _),
        info=info,
    )
    return view


def _rows(
    candles: pd.DataFrame, predictions: pd.DataFrame | None, horizon: str | None
) -> list[dict[str, Any]]:
    n = len(candles)
    nan = np.full(n, np.nan)

    def column(name: str) -> np.ndarray:
        if predictions is None or f"{horizon}__{name}" not in predictions:
            return nan
        return predictions[f"{horizon}__{name}"].to_numpy(dtype=float)

    side, stop, target = np.zeros(n, dtype=int), nan, nan
    if predictions is not None:
        signals = maxmin_signals(candles, column("high_log"), column("low_log"), column("p_up"))
        side, stop, target = signals.side, signals.stop, signals.target
    high, low = column("high"), column("low")
    high_lo, high_hi, low_lo, low_hi = (
        column(c) for c in ("high_lo", "high_hi", "low_lo", "low_hi")
    )
    p_up = column("p_up")
    rows = []
    ohlc = candles[["open", "high", "low", "close", "volume"]].to_numpy().tolist()
    for i, (stamp, (o, h, lo, c, v)) in enumerate(zip(candles.index, ohlc, strict=True)):
        rows.append(
            {
                "time": stamp.to_pydatetime(),
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
                "volume": v,
                "pred_high": _finite(high[i]),
                "pred_low": _finite(low[i]),
                "high_interval": (_finite(high_lo[i]), _finite(high_hi[i])),
                "low_interval": (_finite(low_lo[i]), _finite(low_hi[i])),
                "p_up": _finite(p_up[i]),
                "side": {1: "long", -1: "short"}.get(int(side[i]), "flat"),
                "stop": _finite(stop[i]),
                "target": _finite(target[i]),
            }
        )
    return rows


def _stamps(rows: list[dict[str, Any]]) -> list[str]:
    return [row["time"].isoformat() for row in rows]


def _price_chart(candles: pd.DataFrame, rows: list[dict[str, Any]], _: Gettext) -> dict[str, Any]:
    """A Plotly figure (plain data): candlesticks, the bands, and the signals' entries."""
    x = _stamps(rows)
    traces: list[dict[str, Any]] = [
        {
            "type": "candlestick",
            "name": _("Candles"),
            "x": x,
            "open": [r["open"] for r in rows],
            "high": [r["high"] for r in rows],
            "low": [r["low"] for r in rows],
            "close": [r["close"] for r in rows],
        }
    ]
    bands = [
        ("high_interval", 1, _("Predicted high interval"), "rgba(46,139,87,0.15)"),
        ("low_interval", 1, _("Predicted low interval"), "rgba(178,34,34,0.15)"),
    ]
    for key, upper, name, colour in bands:
        if any(r[key][upper] is not None for r in rows):
            traces.append(_line(x, [r[key][0] for r in rows], name, colour, legend=False))
            traces.append(
                _line(x, [r[key][1] for r in rows], name, colour, fill="tonexty", legend=True)
            )
    for key, name, colour in (
        ("pred_high", _("Predicted high"), "seagreen"),
        ("pred_low", _("Predicted low"), "firebrick"),
    ):
        if any(r[key] is not None for r in rows):
            traces.append(_line(x, [r[key] for r in rows], name, colour, dash="dot"))
    # Entries under the bar (long) or over it (short), clear of the candle itself.
    sides = (
        ("long", _("Long"), "triangle-up", "low", "#1f4e9c"),
        ("short", _("Short"), "triangle-down", "high", "#7b2d8e"),
    )
    for side, name, symbol, anchor, colour in sides:
        marks = [r for r in rows if r["side"] == side]
        if marks:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": name,
                    "x": _stamps(marks),
                    "y": [r[anchor] for r in marks],
                    "marker": {"symbol": symbol, "size": 11, "color": colour},
                }
            )
    layout = {
        "xaxis": {"rangeslider": {"visible": False}},
        "yaxis": {"title": {"text": _("Price")}},
        "margin": {"l": 60, "r": 20, "t": 20, "b": 40},
        "height": 420,
        "legend": {"orientation": "h"},
    }
    return {"data": traces, "layout": layout}


def _line(
    x: list[str],
    y: list[float | None],
    name: str,
    colour: str,
    *,
    fill: str | None = None,
    legend: bool = True,
    dash: str = "solid",
) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": x,
        "y": y,
        "showlegend": legend,
        "line": {"color": colour, "dash": dash, "width": 1 if fill else 1.5},
    }
    if fill:
        trace["fill"] = fill
        trace["fillcolor"] = colour
    return trace


def _indicator_chart(indicators: pd.DataFrame, _: Gettext) -> dict[str, Any]:
    x = [stamp.isoformat() for stamp in indicators.index]
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": str(name),
            "x": x,
            "y": [_finite(v) for v in indicators[name].tolist()],
        }
        for name in indicators.columns
    ]
    layout = {
        "yaxis": {"title": {"text": _("Indicator value")}},
        "margin": {"l": 60, "r": 20, "t": 20, "b": 40},
        "height": 260,
        "legend": {"orientation": "h"},
    }
    return {"data": traces, "layout": layout}
