"""Values as JSON types: what the CLI's ``--json`` output and the job results are made of.

>>> import math, pandas as pd
>>> jsonable({"nan": math.nan, "at": pd.Timestamp("2024-01-01", tz="UTC"), "n": [1, 2.5]})
{'nan': None, 'at': '2024-01-01 00:00:00+00:00', 'n': [1, 2.5]}
>>> jsonable(pd.DataFrame({"model": ["lgbm"], "r2": [0.1]}))
[{'model': 'lgbm', 'r2': 0.1}]
"""

from __future__ import annotations

import math
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trademl.backtest.outcome import BacktestRun

__all__ = ["backtest_payload", "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with JSON types only: paths and timestamps as strings, NaN and ±inf as None,
    numpy scalars as Python numbers, a DataFrame as its list of row records.

    Parameters
    ----------
    value : Any
        Nested dicts, lists, tuples, scalars, paths, timestamps or DataFrames.

    Returns
    -------
    Any
        The same structure, serialisable by :func:`json.dumps` with ``allow_nan=False``.
    """
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    # A DataFrame exists only once pandas is imported; job workers need not import it.
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame):
        return jsonable(value.to_dict(orient="records"))
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path | datetime):
        return str(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return jsonable(item())
    return str(value)


def backtest_payload(result: BacktestRun) -> dict[str, Any]:
    """A backtest as JSON: its folder, trade count and scalar metrics beside buy and hold.

    Parameters
    ----------
    result : BacktestRun
        What :func:`trademl.api.backtest` returned.

    Returns
    -------
    dict
        ``output``, ``n_trades``, ``metrics`` and ``baseline_metrics`` (scalars only).
    """

    def scalars(metrics: dict[str, Any]) -> dict[str, Any]:
        return {key: jsonable(value) for key, value in metrics.items() if _is_scalar(value)}

    return {
        "output": str(result.output),
        "n_trades": len(result.trades),
        "metrics": scalars(result.metrics),
        "baseline_metrics": scalars(result.baseline_metrics),
    }


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str) or hasattr(value, "item")
