"""Skill over many series: whether a learned model beats the baselines, out of sample, everywhere.

:func:`evaluate_skill` trains the configured model kinds on every series of a data folder
(the shared market data by default) exactly as ``trademl train`` does — purged walk-forward,
residual learning over the HAR baseline, conformal intervals — and writes one table: per
series, target and horizon, the best learned model against each naive baseline, with

- the mean loss difference (learned − baseline; squared error for the ranges, log loss for the
  direction) and its HAC interval,
- the one-sided Diebold–Mariano p-value that the learned model's loss is lower, with a
  Newey–West variance whose lag covers the overlapping labels (:mod:`trademl.validation.significance`),
- both R² (log loss and accuracy for the direction) and the learned model's interval coverage.

Intraday series are judged at 6 and 24 bars, daily ones at 5 and 20 (a week and four weeks of
sessions). Long series keep their last ``max_bars`` bars, so every series weighs alike and the
whole table fits in minutes; the table says how many rows each comparison used.

When several learned kinds are configured, the best of them on the pooled out-of-sample rows is
the one compared; choosing it on those rows flatters it slightly, which the table states.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from trademl.atomic import atomic_path
from trademl.config import Settings
from trademl.data.ingest import import_path, open_default_store, read_series
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError
from trademl.models.naive import BASELINE_PREFIX
from trademl.progress import progress_bar
from trademl.validation.metrics import classification_metrics, regression_metrics
from trademl.validation.significance import diebold_mariano, loss_for, row_losses
from trademl.workflow import run

INTRADAY_HORIZONS = (6, 24)
DAILY_HORIZONS = (5, 20)
DEFAULT_MAX_BARS = 8_000
LEVEL = 0.05
NOMINAL = 0.9
TOLERANCE = 0.02
DEFAULT_MODELS: tuple[dict[str, Any], ...] = (
    {
        "kind": "lgbm",
        "params": {"n_estimators": 300, "learning_rate": 0.03, "n_jobs": 2},
    },
)
_FILE_NAME = re.compile(r"^(?P<symbol>[A-Za-z0-9.\-]+)_(?P<timeframe>\d+[a-zA-Z]+)\.csv(\.gz)?$")


@dataclass(frozen=True)
class Series:
    """One candle file of the evaluated data: ``SYMBOL_TIMEFRAME.csv[.gz]``."""

    path: Path
    symbol: str
    timeframe: str

    @property
    def name(self) -> str:
        """``SYMBOL_TIMEFRAME``, as the table names it."""
        return f"{self.symbol}_{self.timeframe}"


@dataclass(frozen=True)
class SkillReport:
    """What :func:`evaluate_skill` wrote.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per series, target, horizon and baseline.
    counts : pandas.DataFrame
        Per target and baseline: comparisons, learned wins (p < level), significant losses,
        and intervals within the tolerance of nominal coverage.
    csv, html, markdown : pathlib.Path
        The table as CSV, the page, and the summary as Markdown.
    seconds : float
        Wall time.
    """

    table: pd.DataFrame
    counts: pd.DataFrame
    csv: Path
    html: Path
    markdown: Path
    seconds: float


def find_series(folder: Path, names: Sequence[str] | None = None) -> list[Series]:
    """Every ``SYMBOL_TIMEFRAME.csv[.gz]`` under ``folder``, in name order.

    Parameters
    ----------
    folder : pathlib.Path
        The data folder (searched recursively).
    names : sequence of str or None
        Keep only these ``SYMBOL_TIMEFRAME`` names; an unknown one is an error.

    Returns
    -------
    list of Series
        The series found.

    Raises
    ------
    ConfigError
        No such folder, no candle file in it, or a requested name it does not hold.
    """
    if not folder.is_dir():
        raise ConfigError(f"evaluate: data folder {folder} does not exist")
    found = []
    for path in sorted(folder.rglob("*.csv*")):
        match = _FILE_NAME.match(path.name)
        if match:
            found.append(Series(path, match["symbol"], Timeframe.parse(match["timeframe"]).name))
    if not found:
        raise ConfigError(f"evaluate: no SYMBOL_TIMEFRAME.csv file under {folder}")
    if names:
        known = {s.name: s for s in found}
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ConfigError(
                f"evaluate: no series {', '.join(unknown)} under {folder}; "
                f"known: {', '.join(sorted(known))}"
            )
        found = [known[n] for n in names]
    return found


def horizons_for(timeframe: str) -> tuple[int, int]:
    """The two horizons (bars) a series of ``timeframe`` is judged at."""
    return DAILY_HORIZONS if Timeframe.parse(timeframe).seconds >= 86_400 else INTRADAY_HORIZONS


def series_config(
    series: Series,
    index: pd.DatetimeIndex,
    output: Path,
    models: Sequence[dict[str, Any]],
    max_bars: int,
) -> dict[str, Any]:
    """The run config of one series: its last ``max_bars`` bars on a 5-fold walk-forward.

    Parameters
    ----------
    series : Series
        The series.
    index : pandas.DatetimeIndex
        Its stored bar times.
    output : pathlib.Path
        The run's output folder.
    models : sequence of dict
        The model entries (``kind``, ``params``...).
    max_bars : int
        Bars kept from the end.

    Returns
    -------
    dict
        A config for :func:`trademl.workflow.run`.
    """
    kept = index[-max_bars:]
    horizons = horizons_for(series.timeframe)
    # Five test blocks over the last half of the usable rows; the standard preset's warm-up
    # (625 bars) and the longest horizon come off the front and the end.
    usable = len(kept) - 625 - max(horizons)
    test_size = max(50, usable // 10)
    return {
        "data": {"symbol": series.symbol, "timeframe": series.timeframe, "start": str(kept[0])},
        "features": "standard",
        "labels": {"kinds": ["direction", "max_high", "min_low"], "horizons": list(horizons)},
        "models": [dict(m) for m in models],
        "validation": {
            "kind": "walk_forward",
            "params": {
                "test_size": test_size,
                "n_splits": 5,
                "min_train_size": max(200, usable - 5 * test_size - 2 * max(horizons)),
            },
        },
        "uncertainty": {"alpha": round(1 - NOMINAL, 6)},
        "registry": {"enabled": False},
        "output": str(output),
    }


def compare_target(
    wide: pd.DataFrame, kind: str, bars: int, learned: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows of the table for one target: the best learned model against each baseline.

    Parameters
    ----------
    wide : pandas.DataFrame
        A run's out-of-sample predictions (``predictions.parquet``).
    kind : str
        ``direction``, ``max_high`` or ``min_low``.
    bars : int
        The horizon.
    learned : sequence of str
        The learned models' column names.

    Returns
    -------
    list of dict
        One row per baseline of the target.
    """
    suffix = f"{kind}_{bars}"
    y = wide[f"target__{suffix}"]
    task = "classification" if kind == "direction" else "regression"
    loss = loss_for(task)
    best = min(learned, key=lambda m: _mean_loss(y, wide[f"{m}__{suffix}"], loss))
    ours = wide[f"{best}__{suffix}"]
    rows = []
    for column in sorted(
        c
        for c in map(str, wide.columns)
        if c.startswith(BASELINE_PREFIX) and c.endswith(f"__{suffix}")
    ):
        baseline = column.removesuffix(f"__{suffix}")
        theirs = wide[column]
        common = (y.notna() & ours.notna() & theirs.notna()).to_numpy()
        truth, a, b = y.to_numpy()[common], ours.to_numpy()[common], theirs.to_numpy()[common]
        test = diebold_mariano(row_losses(truth, a, loss), row_losses(truth, b, loss), bars)
        row: dict[str, Any] = {
            "target": kind,
            "horizon_bars": bars,
            "model": best,
            "baseline": baseline,
            "rows": test.rows,
            "loss": loss,
            "loss_difference": test.mean_difference,
            "difference_low": test.low,
            "difference_high": test.high,
            "p_value": test.p_value,
            "p_value_two_sided": test.p_value_two_sided,
        }
        if task == "regression":
            # R² with a block-bootstrap interval: overlapping labels make neighbouring rows
            # dependent, so an iid interval would be too narrow.
            ours_r2 = regression_metrics(truth, a, horizon=bars)
            row["model_r2"] = ours_r2["r2"]
            row["model_r2_low"], row["model_r2_high"] = ours_r2["r2_lo"], ours_r2["r2_hi"]
            row["baseline_r2"] = regression_metrics(truth, b)["r2"]
            lo, hi = f"{best}__{suffix}__lo", f"{best}__{suffix}__hi"
            if lo in wide and hi in wide:
                inside = (truth >= wide[lo].to_numpy()[common]) & (
                    truth <= wide[hi].to_numpy()[common]
                )
                row["coverage"] = float(inside.mean())
        else:
            ours_metrics = classification_metrics(truth, a, horizon=bars)
            row["model_log_loss"] = ours_metrics["log_loss"]
            row["baseline_log_loss"] = classification_metrics(truth, b)["log_loss"]
            row["model_accuracy"] = ours_metrics["accuracy"]
            row["accuracy_low"] = ours_metrics["accuracy_lo"]
            row["accuracy_high"] = ours_metrics["accuracy_hi"]
        row["verdict"] = verdict(test.mean_difference, test.p_value, test.p_value_two_sided)
        rows.append(row)
    return rows


def verdict(difference: float, p_value: float, p_two_sided: float, level: float = LEVEL) -> str:
    """``wins`` (lower loss, one-sided p < level), ``loses`` (higher, two-sided p < level) or
    ``tie``."""
    if p_value < level and difference < 0:
        return "wins"
    if p_two_sided < level and difference > 0:
        return "loses"
    return "tie"


def _mean_loss(y: pd.Series, prediction: pd.Series, loss: str) -> float:
    common = (y.notna() & prediction.notna()).to_numpy()
    return float(np.mean(row_losses(y.to_numpy()[common], prediction.to_numpy()[common], loss)))


def skill_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per target kind and baseline: comparisons, wins, significant losses, coverage held.

    Parameters
    ----------
    table : pandas.DataFrame
        The rows of :func:`compare_target` over every series.

    Returns
    -------
    pandas.DataFrame
        One row per (target, baseline).
    """
    records = []
    for (target, baseline), part in table.groupby(["target", "baseline"], sort=True):
        record: dict[str, Any] = {
            "target": target,
            "baseline": baseline,
            "comparisons": len(part),
            "wins": int((part["verdict"] == "wins").sum()),
            "ties": int((part["verdict"] == "tie").sum()),
            "losses": int((part["verdict"] == "loses").sum()),
        }
        if "coverage" in part and part["coverage"].notna().any():
            held = (part["coverage"] - NOMINAL).abs() <= TOLERANCE
            record["coverage_within_2pt"] = int(held[part["coverage"].notna()].sum())
            record["coverage_min"] = float(part["coverage"].min())
            record["coverage_max"] = float(part["coverage"].max())
        records.append(record)
    return pd.DataFrame.from_records(records)


def evaluate_skill(
    data: Path,
    output: Path,
    *,
    names: Sequence[str] | None = None,
    models: Sequence[dict[str, Any]] = DEFAULT_MODELS,
    max_bars: int = DEFAULT_MAX_BARS,
    progress: Callable[[str], None] | None = None,
) -> SkillReport:
    """Train and compare on every series of ``data``; write the table under ``output``.

    Parameters
    ----------
    data : pathlib.Path
        Folder of ``SYMBOL_TIMEFRAME.csv[.gz]`` files (the shared data).
    output : pathlib.Path
        Where the scratch store, the runs and the table go.
    names : sequence of str or None
        Only these series (``SYMBOL_TIMEFRAME``).
    models : sequence of dict
        Model entries as in a run config; default residual LightGBM.
    max_bars : int
        Bars kept from the end of each series.
    progress : callable or None
        Called with each series' name as it starts.

    Returns
    -------
    SkillReport
        The table, the counts and the files written.
    """
    if max_bars < 1500:
        raise ConfigError(f"evaluate: max_bars {max_bars} is too few; give at least 1500")
    started = time.perf_counter()
    chosen = find_series(Path(data), names)
    output.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=output / "home", tracking=False)
    rows: list[dict[str, Any]] = []
    with progress_bar("series", len(chosen), unit="series") as advance:
        for series in chosen:
            if progress is not None:
                progress(series.name)
            rows.extend(_evaluate_series(series, settings, output, models, max_bars))
            advance()
    table = pd.DataFrame.from_records(rows)
    counts = skill_counts(table)
    seconds = time.perf_counter() - started
    paths = _write(table, counts, output, seconds, models, max_bars)
    return SkillReport(table, counts, *paths, seconds=seconds)


def _evaluate_series(
    series: Series,
    settings: Settings,
    output: Path,
    models: Sequence[dict[str, Any]],
    max_bars: int,
) -> list[dict[str, Any]]:
    with open_default_store(settings) as store:
        import_path(series.path, store, symbol=series.symbol, timeframe=series.timeframe)
        index = pd.DatetimeIndex(read_series(store, series.symbol, series.timeframe).index)
    cfg = series_config(series, index, output / "runs" / series.name, models, max_bars)
    result = run(cfg, settings=settings)
    learned = [str(m.get("name") or m["kind"]) for m in models]
    rows = []
    for kind in cfg["labels"]["kinds"]:
        for bars in cfg["labels"]["horizons"]:
            for row in compare_target(result.predictions, kind, int(bars), learned):
                rows.append({"series": series.name, "timeframe": series.timeframe, **row})
    logger.info("{}: {} comparisons in {:.0f}s", series.name, len(rows), result.seconds)
    return rows


def summary_markdown(counts: pd.DataFrame, table: pd.DataFrame) -> str:
    """The counts as a Markdown table, with the per-series ranges below it."""
    lines = [
        f"| target | baseline | comparisons | learned wins (p < {LEVEL}) | ties | learned loses "
        "| 90 % coverage within 2 pt |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for _, c in counts.iterrows():
        held = (
            f"{int(c['coverage_within_2pt'])} of {c['comparisons']} "
            f"({c['coverage_min']:.3f}–{c['coverage_max']:.3f})"
            if "coverage_within_2pt" in c and pd.notna(c.get("coverage_within_2pt"))
            else "–"
        )
        lines.append(
            f"| {c['target']} | {c['baseline']} | {c['comparisons']} | {c['wins']} | "
            f"{c['ties']} | {c['losses']} | {held} |"
        )
    series = table["series"].nunique()
    lines.append("")
    lines.append(
        f"{series} series; Diebold–Mariano tests with Newey–West variance (lag ≥ horizon) on "
        "the out-of-sample rows of a purged 5-fold walk-forward."
    )
    return "\n".join(lines) + "\n"


def skill_html(table: pd.DataFrame, counts: pd.DataFrame, note: str) -> str:
    """A self-contained page: the counts, then every comparison coloured by its verdict."""
    colours = {"wins": "#d9f2d9", "loses": "#f8d7d7", "tie": "#ffffff"}
    columns = [c for c in table.columns if c != "verdict"] + ["verdict"]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "–" if np.isnan(value) else f"{value:.4g}"
        return html.escape(str(value))

    def rows(frame: pd.DataFrame, coloured: bool) -> str:
        out = []
        for _, row in frame.iterrows():
            style = (
                f' style="background:{colours.get(str(row.get("verdict")), "#fff")}"'
                if coloured
                else ""
            )
            out.append(
                f"<tr{style}>"
                + "".join(f"<td>{cell(row[c])}</td>" for c in frame.columns)
                + "</tr>"
            )
        return "\n".join(out)

    def head(frame: pd.DataFrame) -> str:
        return "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns) + "</tr>"

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>trademl skill</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#eee}}</style>
</head><body>
<h1>Learned models against the baselines, out of sample</h1>
<p>{html.escape(note)}</p>
<h2>Counts</h2>
<table>{head(counts)}{rows(counts, False)}</table>
<h2>Every comparison</h2>
<p>Loss difference = learned − baseline (negative: the learned model is better); p-value:
one-sided Diebold–Mariano, HAC (Newey–West) variance. Green: wins at p &lt; {LEVEL}; red:
significantly worse.</p>
<table>{head(table[columns])}{rows(table[columns], True)}</table>
</body></html>
"""


def _write(
    table: pd.DataFrame,
    counts: pd.DataFrame,
    output: Path,
    seconds: float,
    models: Sequence[dict[str, Any]],
    max_bars: int,
) -> tuple[Path, Path, Path]:
    csv, page, markdown = output / "skill.csv", output / "skill.html", output / "skill.md"
    kinds = ", ".join(str(m["kind"]) for m in models)
    note = (
        f"{kinds} (residual over the HAR baseline for the ranges) on the last {max_bars:,} bars "
        f"of {table['series'].nunique()} series; {seconds / 60:.1f} min."
    )
    with atomic_path(csv) as temp:
        table.to_csv(temp, index=False)
    with atomic_path(page) as temp:
        Path(temp).write_text(skill_html(table, counts, note), encoding="utf-8")
    with atomic_path(markdown) as temp:
        Path(temp).write_text(summary_markdown(counts, table), encoding="utf-8")
    return csv, page, markdown


__all__ = [
    "Series",
    "SkillReport",
    "compare_target",
    "evaluate_skill",
    "find_series",
    "horizons_for",
    "series_config",
    "skill_counts",
    "verdict",
]
