"""Conformance checks for plug-in authors, the same ones trademl runs on its own plug-ins.

>>> from trademl.testing import check_causal  # doctest: +SKIP
>>> check_causal(lambda c: build_features(c, "minimal"), candles, cut=500)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from trademl.data.candles import COLUMNS, with_meta

FeatureFunction = Callable[[pd.DataFrame], pd.DataFrame]


class CausalityError(AssertionError):
    """A feature's value at or before bar t changed when bars after t changed."""


def perturb_after(
    candles: pd.DataFrame, cut: int, rng: np.random.Generator, scale: float = 0.02
) -> pd.DataFrame:
    """A copy of ``candles`` whose bars after position ``cut`` are randomly changed.

    Open, close, high, low and volume get independent random factors; high and low are then
    widened so the bars still honour the Candles contract.
    """
    values = {c: candles[c].to_numpy(dtype=np.float64, copy=True) for c in COLUMNS}
    after = slice(cut + 1, None)
    n = len(candles) - cut - 1
    if n <= 0:
        raise ValueError(f"cut {cut} leaves no bar after it in {len(candles)} bars")
    factors = np.exp(rng.normal(0.0, scale, size=(5, n)))
    open_, close = values["open"][after] * factors[0], values["close"][after] * factors[1]
    values["open"][after], values["close"][after] = open_, close
    values["high"][after] = np.maximum(values["high"][after] * factors[2], np.maximum(open_, close))
    values["low"][after] = np.minimum(values["low"][after] / factors[3], np.minimum(open_, close))
    values["volume"][after] = values["volume"][after] * factors[4]
    changed = pd.DataFrame(values, index=candles.index)
    return with_meta(
        changed, symbol=candles.attrs.get("symbol"), timeframe=candles.attrs.get("timeframe")
    )


def check_causal(
    compute: FeatureFunction,
    candles: pd.DataFrame,
    cut: int,
    *,
    rng: np.random.Generator | None = None,
    truncate: bool = True,
    rtol: float = 1e-9,
) -> None:
    """Assert that every column of ``compute(candles)`` at rows ``<= cut`` ignores later bars.

    Two probes: the bars after ``cut`` are randomly perturbed, and (with ``truncate``) they are
    removed. Values at rows up to ``cut`` must be unchanged (NaN equal to NaN).

    Raises
    ------
    CausalityError
        Naming the first column and row that moved.
    """
    rng = rng or np.random.default_rng(0)
    reference = compute(candles)
    probes = {"perturbed": perturb_after(candles, cut, rng)}
    if truncate:
        probes["truncated"] = candles.iloc[: cut + 1]
    for probe, changed in probes.items():
        result = compute(changed)
        if list(result.columns) != list(reference.columns):
            raise CausalityError(f"{probe} bars changed the columns themselves")
        upto = reference.index <= candles.index[cut]
        before = reference.loc[upto]
        after = result.loc[result.index <= candles.index[cut]].reindex(before.index)
        a, b = before.to_numpy(dtype=np.float64), after.to_numpy(dtype=np.float64)
        same = np.isclose(a, b, rtol=rtol, atol=1e-12) | (np.isnan(a) & np.isnan(b))
        if not same.all():
            row, col = np.argwhere(~same)[0]
            raise CausalityError(
                f"column {reference.columns[col]!r} at {before.index[row]} (bar {row} <= cut {cut}) "
                f"changed from {a[row, col]!r} to {b[row, col]!r} when bars after the cut were {probe}"
            )
