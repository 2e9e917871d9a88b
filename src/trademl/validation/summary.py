r"""One renderer of a run's out-of-sample summary: the tables that ``trademl train`` prints,
``summary.md`` holds and the model card shows.

The summary (``summary.csv``) has one row per target, horizon and model, with the pooled
out-of-sample metrics of :mod:`trademl.validation.metrics` (and their ``_lo`` / ``_hi``
block-bootstrap bounds). :func:`summary_tables` turns it into one :class:`SummaryTable` per
target and horizon, cells already formatted; :func:`markdown_tables` writes those as Markdown.
A missing value (a model without intervals, a metric a run did not compute) is ``-``.

>>> summary = pd.DataFrame({
...     "target": ["max_high"], "horizon": ["intraday"], "horizon_bars": [6],
...     "model": ["lgbm"], "r2": [0.1234], "r2_lo": [0.1], "r2_hi": [0.15], "mae": [0.00321],
...     "ic": [0.4], "coverage": [0.9012], "n": [1234.0],
... })
>>> print("\n".join(markdown_tables(summary, brief=True)))
## max_high, horizon intraday (6 bars)
<BLANKLINE>
| model | R² (95% CI) | MAE | IC (95% CI) | coverage (95% CI) | MC-dropout coverage | n |
|---|---|---|---|---|---|---|
| lgbm | +0.1234 [+0.1000, +0.1500] | 0.00321 | +0.4000 | 0.901 | - | 1,234 |
<BLANKLINE>
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["SummaryTable", "markdown_tables", "summary_tables"]


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def _number(spec: str) -> Callable[[pd.Series, str], str]:
    """A cell: the row's ``metric`` formatted by ``spec``."""

    def cell(row: pd.Series, metric: str) -> str:
        value = row.get(metric)
        return "-" if _missing(value) else format(value, spec)

    return cell


def _interval(spec: str) -> Callable[[pd.Series, str], str]:
    """A cell: the metric and, when the row has them, its 95% bounds ``[lo, hi]``."""

    def cell(row: pd.Series, metric: str) -> str:
        value, low, high = (row.get(key) for key in (metric, f"{metric}_lo", f"{metric}_hi"))
        if _missing(value):
            return "-"
        if _missing(low) or _missing(high):
            return format(value, spec)
        return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"

    return cell


def _count(row: pd.Series, metric: str) -> str:
    value = row.get(metric)
    return "-" if value is None or _missing(value) else f"{int(value):,}"


@dataclass(frozen=True)
class _Column:
    header: str
    cell: Callable[[pd.Series, str], str]
    brief: bool  # shown in the terminal's narrower table too


_COLUMNS = {
    "accuracy": _Column("accuracy (95% CI)", _interval(".4f"), True),
    "balanced_accuracy": _Column("balanced acc.", _number(".4f"), False),
    "log_loss": _Column("log loss", _number(".4f"), True),
    "roc_auc": _Column("AUC", _number(".4f"), True),
    "brier": _Column("Brier", _number(".4f"), True),
    "r2": _Column("R² (95% CI)", _interval("+.4f"), True),
    "mae": _Column("MAE", _number(".5f"), True),
    "rmse": _Column("RMSE", _number(".5f"), False),
    "ic": _Column("IC (95% CI)", _interval("+.4f"), True),
    "rank_ic": _Column("rank IC", _number("+.4f"), False),
    "coverage": _Column("coverage (95% CI)", _interval(".3f"), True),
    "coverage_worst_window": _Column("worst window", _number(".3f"), False),
    "interval_width": _Column("interval width", _number(".5f"), False),
    "coverage_mc_dropout": _Column("MC-dropout coverage", _number(".3f"), True),
    "n": _Column("n", _count, True),
}
_DIRECTION = ("accuracy", "balanced_accuracy", "log_loss", "roc_auc", "brier", "n")
_REGRESSION = (
    "r2", "mae", "rmse", "ic", "rank_ic", "coverage", "coverage_worst_window",
    "interval_width", "coverage_mc_dropout", "n",
)  # fmt: skip


@dataclass(frozen=True)
class SummaryTable:
    """One target at one horizon: its title, column headers and formatted rows.

    Attributes
    ----------
    title : str
        ``"{target}, horizon {horizon} ({bars} bars)"``.
    headers : tuple of str
        ``"model"`` then the metrics' headers.
    rows : tuple of tuple of str
        One per model, baselines included, in the summary's order.
    """

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def summary_tables(summary: pd.DataFrame, *, brief: bool = False) -> list[SummaryTable]:
    """The summary as one table per target and horizon, in the summary's order.

    Parameters
    ----------
    summary : pandas.DataFrame
        The run's out-of-sample summary: columns ``target``, ``horizon``, ``horizon_bars``,
        ``model`` and the metrics.
    brief : bool
        Only the headline metrics (for a terminal); every metric otherwise.

    Returns
    -------
    list of SummaryTable
        Direction tables show classification metrics, the others regression metrics and
        interval coverage.
    """
    tables = []
    for (target, horizon), part in summary.groupby(["target", "horizon"], sort=False):
        metrics = _DIRECTION if target == "direction" else _REGRESSION
        shown = [m for m in metrics if _COLUMNS[m].brief or not brief]
        rows = tuple(
            (str(row["model"]), *(_COLUMNS[m].cell(row, m) for m in shown))
            for _, row in part.iterrows()
        )
        bars = int(part["horizon_bars"].iloc[0])
        tables.append(
            SummaryTable(
                title=f"{target}, horizon {horizon} ({bars} bars)",
                headers=("model", *(_COLUMNS[m].header for m in shown)),
                rows=rows,
            )
        )
    return tables


def markdown_tables(
    summary: pd.DataFrame, *, heading: str = "##", brief: bool = False
) -> list[str]:
    """The tables of :func:`summary_tables` as Markdown lines, each under a ``heading`` title
    and followed by a blank line."""
    lines: list[str] = []
    for table in summary_tables(summary, brief=brief):
        lines += [
            f"{heading} {table.title}",
            "",
            "| " + " | ".join(table.headers) + " |",
            "|" + "---|" * len(table.headers),
            *("| " + " | ".join(row) + " |" for row in table.rows),
            "",
        ]
    return lines
