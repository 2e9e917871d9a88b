"""The monitoring report as one self-contained HTML file.

Like the backtest report, the page embeds the plotly.js bundle once in its ``<head>`` so that
it opens offline, and every chart's numbers are also written as a small table, so the page
reads without JavaScript. It holds: the summary (window, matured share, alarms, notes) and a
table of every served target; per target the rolling realised loss of the served forecast
beside the baseline's, the CUSUM statistic against its threshold with the alarm marked, and the
rolling interval coverage against nominal; the feature drift table, and for the most drifted
features the window's distribution over the training reference's (rebuilt from the profile's
quantile sketch); the forecast drift table.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trademl.html_page import write_page
from trademl.monitoring.assess import Assessment, TargetHealth
from trademl.monitoring.drift import DriftReport
from trademl.monitoring.profile import MonitoringProfile
from trademl.monitoring.reference import ColumnSketch, FloatArray

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table.data { border-collapse: collapse; margin: 0.5em 0 1em; }
table.data th, table.data td { border: 1px solid #ccc; padding: 3px 8px; }
table.data td { text-align: right; font-variant-numeric: tabular-nums; }
table.data td.text { text-align: left; }
tr.drifted td, tr.alarm td { background: #fde0dc; }
ul.alarms li { color: #b71c1c; font-weight: 600; }
p.caption, p.note, ul.notes { color: #555; font-size: 0.9em; }
"""
_SERVED, _BASELINE, _ALARM = "#1f77b4", "#ff7f0e", "#d62728"
_DRIFT_COLUMNS = (
    "column",
    "n",
    "n_effective",
    "psi",
    "ks",
    "wasserstein",
    "pvalue",
    "qvalue",
    "drifted",
)
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_SAMPLED_ROWS = 12
_BINS = 30


def _fmt(value: object) -> str:
    """A number with four significant digits (``—`` for missing), anything else as text."""
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        number = float(value)
        return "—" if math.isnan(number) else f"{number:.4g}"
    return str(value)


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table: numbers right-aligned, text left-aligned, each row with its class."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for value in row:
            text = html.escape(_fmt(value))
            number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            cells.append(f"<td>{text}</td>" if number else f'<td class="text">{text}</td>')
        kind = row_classes[i] if row_classes else ""
        body.append(f'<tr class="{kind}">' if kind else "<tr>")
        body.append(f"{''.join(cells)}</tr>")
    return f'<table class="data"><tr>{head}</tr>{"".join(body)}</table>'


def _div(fig: go.Figure, div_id: str) -> str:
    # A fixed id (Plotly draws a random UUID by default) keeps reruns' reports byte-identical.
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id))


def _summary(report: Assessment) -> str:
    share = report.mature_share
    text = (
        f"{report.model} version {report.version} serving {report.symbol} {report.timeframe}. "
        f"Window: {report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC. "
        f"{report.logged:,} predictions logged, {report.mature:,} with matured labels "
        f"(mature share {'—' if math.isnan(share) else f'{share:.1%}'}). Alarm thresholds are "
        f"calibrated to one false alarm per {report.arl0:,} bars."
    )
    alarms = report.alarms
    parts = [f"<p>{html.escape(text)}</p>", "<h3>Alarms</h3>"]
    if alarms:
        items = "".join(f"<li>{html.escape(a)}</li>" for a in alarms)
        parts.append(f'<ul class="alarms">{items}</ul>')
    else:
        parts.append("<p>No alarm fired in the window.</p>")
    if report.feature_drift is not None:
        drifted = report.drifted
        parts.append(
            f"<p>{len(drifted)} of {len(report.feature_drift)} features drifted at a false "
            f"discovery rate of {report.feature_drift.alpha:g}"
            + (f": {html.escape(', '.join(drifted))}" if drifted else "")
            + ".</p>"
        )
    if report.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
        parts.append(f'<ul class="notes">{items}</ul>')
    return "".join(parts)


def _targets_table(report: Assessment) -> str:
    header = (
        "target",
        "served",
        "baseline",
        "bars",
        "served loss",
        "baseline loss",
        "difference",
        "95% low",
        "95% high",
        "one-sided p",
        "CUSUM now",
        "CUSUM max",
        "threshold",
        "alarm at",
        "coverage",
        "nominal",
        "coverage alarm at",
        "note",
    )
    rows = []
    for t in report.targets.values():
        coverage = (
            float(t.coverage.iloc[-1]) if t.coverage is not None and len(t.coverage) else None
        )
        rows.append(
            (
                t.name,
                t.served,
                t.baseline,
                t.rows,
                t.model_loss,
                t.baseline_loss,
                t.difference,
                t.low,
                t.high,
                t.p_value,
                t.last_statistic,
                float(t.statistic.max()) if len(t.statistic) else None,
                t.threshold,
                t.alarm_at,
                coverage,
                None if math.isnan(t.nominal_coverage) else t.nominal_coverage,
                t.coverage_alarm_at,
                t.note,
            )
        )
    return _table(header, rows)


def _rolling(values: pd.Series, bars: int) -> pd.Series:
    window = max(1, min(bars, len(values)))
    return values.rolling(window, min_periods=max(1, window // 2)).mean()


def _target_series(target: TargetHealth, rolling_bars: int) -> pd.DataFrame:
    """The charted series of one target on one index (NaN where a series has no bar)."""
    columns: dict[str, pd.Series] = {
        f"served loss ({target.served})": _rolling(target.losses["served"], rolling_bars),
        f"baseline loss ({target.baseline})": _rolling(target.losses["baseline"], rolling_bars),
    }
    if len(target.statistic):
        columns["CUSUM"] = target.statistic
    if target.coverage is not None and len(target.coverage):
        columns["coverage"] = target.coverage
    return pd.DataFrame(columns).sort_index()


def _target_figure(target: TargetHealth, series: pd.DataFrame, rolling_bars: int) -> go.Figure:
    with_coverage = "coverage" in series
    rows = 3 if with_coverage else 2
    titles = [f"realised loss, rolling mean of {rolling_bars} bars", "CUSUM of the differential"]
    titles += ["rolling interval coverage"] if with_coverage else []
    fig = make_subplots(
        rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08, subplot_titles=titles
    )
    for column, colour in zip(series.columns[:2], (_SERVED, _BASELINE), strict=True):
        line = series[column].dropna()
        fig.add_trace(
            go.Scatter(x=line.index, y=line, name=column, line={"color": colour}), row=1, col=1
        )
    if "CUSUM" in series:
        cusum = series["CUSUM"].dropna()
        fig.add_trace(
            go.Scatter(x=cusum.index, y=cusum, name="CUSUM", line={"color": "#2ca02c"}),
            row=2,
            col=1,
        )
    if target.threshold is not None:
        fig.add_hline(
            y=target.threshold,
            line_dash="dash",
            line_color=_ALARM,
            annotation_text=f"threshold {target.threshold:.3g}",
            row=2,
            col=1,
        )
    if target.alarm_at is not None:
        fig.add_trace(
            go.Scatter(
                x=[target.alarm_at],
                y=[float(target.statistic.loc[target.alarm_at])],
                mode="markers",
                name=f"alarm {target.alarm_at:%Y-%m-%d %H:%M}",
                marker={"symbol": "x", "size": 12, "color": _ALARM},
            ),
            row=2,
            col=1,
        )
    if with_coverage:
        coverage = series["coverage"].dropna()
        fig.add_trace(
            go.Scatter(x=coverage.index, y=coverage, name="coverage", line={"color": "#9467bd"}),
            row=3,
            col=1,
        )
        fig.add_hline(
            y=target.nominal_coverage,
            line_dash="dash",
            line_color="#555",
            annotation_text=f"nominal {target.nominal_coverage:.2f}",
            row=3,
            col=1,
        )
        if target.coverage_alarm_at is not None:
            fig.add_trace(
                go.Scatter(
                    x=[target.coverage_alarm_at],
                    y=[float(coverage.loc[target.coverage_alarm_at])],
                    mode="markers",
                    name=f"coverage alarm {target.coverage_alarm_at:%Y-%m-%d %H:%M}",
                    marker={"symbol": "x", "size": 12, "color": _ALARM},
                ),
                row=3,
                col=1,
            )
    fig.update_layout(height=260 * rows, margin={"t": 40})
    return fig


def _sampled(series: pd.DataFrame, marks: Sequence[pd.Timestamp | None]) -> pd.DataFrame:
    """About a dozen evenly spaced rows of ``series``, its last row and the alarm bars."""
    if series.empty:
        return series
    positions = set(np.linspace(0, len(series) - 1, min(len(series), _SAMPLED_ROWS)).round())
    keep = series.index[sorted(int(p) for p in positions)]
    extra = [m for m in marks if m is not None and m in series.index]
    return series.loc[keep.union(pd.Index(extra)) if extra else keep]


def _target_section(target: TargetHealth, index: int, rolling_bars: int) -> str:
    series = _target_series(target, rolling_bars)
    parts = [f"<h2>{html.escape(target.name)}</h2>"]
    if target.note:
        parts.append(f'<p class="note">{html.escape(target.note)}</p>')
    if series.empty:
        parts.append('<p class="note">No mature bar to chart for this target.</p>')
        return "".join(parts)
    parts.append(_div(_target_figure(target, series, rolling_bars), f"chart-target-{index}"))
    shown = _sampled(series, (target.alarm_at, target.coverage_alarm_at))
    caption = (
        f"{len(shown)} of the {len(series):,} charted bars (evenly spaced, the last and the "
        "alarm bars). Losses are rolling means; "
        + (
            "this target's loss is not watched (no CUSUM threshold)."
            if target.threshold is None
            else f"the CUSUM alarms when it exceeds the threshold {target.threshold:.4g}."
        )
    )
    rows = [(stamp, *row) for stamp, row in zip(shown.index, shown.to_numpy(), strict=True)]
    alarms = {target.alarm_at, target.coverage_alarm_at} - {None}
    parts.append(
        _table(["bar", *shown.columns], rows, ["alarm" if t in alarms else "" for t in shown.index])
    )
    parts.append(f'<p class="caption">{html.escape(caption)}</p>')
    return "".join(parts)


def _drift_table(report: DriftReport) -> str:
    frame = report.to_frame()
    header = [c for c in _DRIFT_COLUMNS if c in frame]
    records = frame[header].to_dict("records")
    rows = [[record[c] for c in header] for record in records]
    return _table(header, rows, ["drifted" if r.get("drifted") else "" for r in records])


def _reference_cdf(sketch: ColumnSketch, edges: FloatArray) -> FloatArray:
    cdf = sketch.cdf_bounds(edges)[1]
    cdf[0], cdf[-1] = 0.0, 1.0  # the tails fall in the end bins, as the window's values do
    return np.asarray(cdf)


def _distribution(
    sketch: ColumnSketch, window: FloatArray | None
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """Bin centres, the reference's share and the window's share (tails in the end bins)."""
    lows = [float(sketch.quantile(np.array([0.01]))[0])]
    highs = [float(sketch.quantile(np.array([0.99]))[0])]
    if window is not None and len(window):
        lows.append(float(np.percentile(window, 1)))
        highs.append(float(np.percentile(window, 99)))
    low, high = min(lows), max(highs)
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, _BINS + 1)
    reference = np.diff(_reference_cdf(sketch, edges))
    shares = None
    if window is not None and len(window):
        counts, _ = np.histogram(np.clip(window, low, high), bins=edges)
        shares = counts / len(window)
    return (edges[:-1] + edges[1:]) / 2, reference, shares


def _window_values(features: pd.DataFrame | None, column: str) -> FloatArray | None:
    if features is None or column not in features:
        return None
    values = pd.to_numeric(features[column], errors="coerce").to_numpy(np.float64)
    finite: FloatArray = values[np.isfinite(values)]
    return finite


def _distributions_section(
    drift: DriftReport, profile: MonitoringProfile, features: pd.DataFrame | None, top: int
) -> str:
    frame = drift.to_frame()
    names = [str(c) for c in frame["column"] if str(c) in profile.features.columns][:top]
    if not names:
        return ""
    cols = 2 if len(names) > 1 else 1
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, vertical_spacing=0.12)
    quantile_rows = []
    pvalues = dict(zip(frame["column"].astype(str), frame["pvalue"], strict=True))
    for i, name in enumerate(names):
        sketch = profile.features.columns[name]
        window = _window_values(features, name)
        centres, reference, shares = _distribution(sketch, window)
        where = {"row": i // cols + 1, "col": i % cols + 1}
        fig.add_trace(
            go.Bar(
                x=centres,
                y=reference,
                name="training reference",
                marker_color=_BASELINE,
                opacity=0.55,
                legendgroup="reference",
                showlegend=i == 0,
            ),
            **where,
        )
        if shares is not None:
            fig.add_trace(
                go.Bar(
                    x=centres,
                    y=shares,
                    name="window",
                    marker_color=_SERVED,
                    opacity=0.55,
                    legendgroup="window",
                    showlegend=i == 0,
                ),
                **where,
            )
        ref_q = sketch.quantile(np.asarray(_QUANTILES))
        win_q = (
            np.quantile(window, _QUANTILES)
            if window is not None and len(window)
            else [math.nan] * len(_QUANTILES)
        )
        quantile_rows.append((name, "reference", sketch.mean, *ref_q, pvalues[name]))
        win_mean = float(np.mean(window)) if window is not None and len(window) else math.nan
        quantile_rows.append((name, "window", win_mean, *win_q, None))
    fig.update_layout(barmode="overlay", bargap=0.0, height=300 * rows, margin={"t": 40})
    header = ["feature", "sample", "mean", *(f"q{round(q * 100):02d}" for q in _QUANTILES)]
    parts = [
        "<h3>Distributions of the most drifted features</h3>",
        _div(fig, "chart-distributions"),
        _table([*header, "p-value"], quantile_rows),
        '<p class="caption">Share of the values in each bin: the training reference (from the '
        "profile's quantile sketch) and the window; values beyond the shown range fall in the "
        "end bins. Features ordered by drift p-value.</p>",
    ]
    if features is None:
        parts.insert(
            1, '<p class="note">The window\'s features were not given: the reference only.</p>'
        )
    return "".join(parts)


def write_report(
    report: Assessment,
    profile: MonitoringProfile,
    features: pd.DataFrame | None,
    path: Path,
    *,
    rolling_bars: int = 50,
    top_features: int = 4,
) -> Path:
    """Write a monitoring report as one self-contained HTML file (plotly.js embedded).

    Parameters
    ----------
    report : Assessment
        What :func:`trademl.monitoring.assess.assess` (or ``trademl.tracking.watch.monitor``)
        returned.
    profile : MonitoringProfile
        The assessed pipeline's profile (``pipeline.monitoring``): its feature sketches are the
        reference distributions.
    features : pandas.DataFrame or None
        The window's features (``pipeline.features`` of the window's candles), overlaid on the
        reference; None draws the reference alone.
    path : pathlib.Path
        The HTML file to write (replaced atomically).
    rolling_bars : int
        Bars of the rolling mean of the realised losses.
    top_features : int
        How many of the most drifted features get a distribution chart.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        ``rolling_bars`` or ``top_features`` below 1.
    """
    if rolling_bars < 1:
        raise ValueError(f"rolling_bars must be at least 1, got {rolling_bars}")
    if top_features < 1:
        raise ValueError(f"top_features must be at least 1, got {top_features}")
    title = f"Monitoring report: {report.model} version {report.version}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2>",
        _summary(report),
        "<h3>Served targets</h3>",
        _targets_table(report),
    ]
    for index, target in enumerate(report.targets.values()):
        sections.append(_target_section(target, index, rolling_bars))
    sections.append("<h2>Feature drift</h2>")
    if report.feature_drift is None:
        sections.append('<p class="note">Too few rows in the window for a drift table.</p>')
    else:
        sections += [
            _drift_table(report.feature_drift),
            '<p class="caption">Each feature of the window against its training reference, '
            "most drifted first; a feature is drifted when its Benjamini–Hochberg q-value is at "
            f"most {report.feature_drift.alpha:g}.</p>",
            _distributions_section(report.feature_drift, profile, features, top_features),
        ]
    if report.forecast_drift is not None:
        sections += ["<h2>Forecast drift</h2>", _drift_table(report.forecast_drift)]
    return write_page(path, title, _STYLE, sections)
