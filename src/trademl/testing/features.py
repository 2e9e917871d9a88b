"""Conformance checks of features: causality and start invariance, for any feature function,
feature set or indicator, and :func:`check_indicator` over one indicator.

>>> from trademl.testing import check_causal, check_start_invariant  # doctest: +SKIP
>>> check_causal(lambda c: build_features(c, "minimal"), candles, cut=500)  # doctest: +SKIP
>>> check_start_invariant("standard", candles, start=1_234)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from trademl.data.candles import COLUMNS, with_meta
from trademl.features.indicators import Bars, Indicator
from trademl.features.invariance import DEFAULT_TOLERANCE, start_error
from trademl.features.sets import FeatureSet
from trademl.testing.data import ConformanceError, sample_candles

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


class StartInvarianceError(AssertionError):
    """Past its declared warm-up, a feature's value depended on where the history began."""


def check_start_invariant(
    subject: Indicator | FeatureSet | str,
    candles: pd.DataFrame,
    start: int,
    *,
    params: Mapping[str, Any] | None = None,
    warmup: int | None = None,
    tolerance: float | None = None,
) -> int:
    """Assert that features built from ``candles.iloc[start:]`` equal those built from all of
    ``candles`` at every bar past the declared warm-up, within the declared tolerance.

    This is the promise that lets a server compute the last bar from a short window and get
    the number the model was validated on.

    Parameters
    ----------
    subject : Indicator, FeatureSet or str
        An indicator (with ``params``), or a feature set or preset name.
    candles : pandas.DataFrame
        The full history (a Candles frame).
    start : int
        Position of the later start.
    params : mapping, optional
        The indicator's parameters (its defaults when omitted).
    warmup : int, optional
        Bars to skip after ``start``; the subject's declared warm-up by default.
    tolerance : float, optional
        Largest :func:`~trademl.features.invariance.start_error` allowed; the indicator's
        declared tolerance (1e-9 by default).

    Returns
    -------
    int
        How many bars were compared.

    Raises
    ------
    StartInvarianceError
        Naming the first column and bar that differ, both values and the warm-up.
    """
    from trademl.features.engine import build_features, warmup_bars

    compute: Callable[[pd.DataFrame], pd.DataFrame]
    if isinstance(subject, Indicator):
        resolved = subject.resolve(params)
        declared = subject.warmup(resolved)
        tol = subject.tolerance if tolerance is None else tolerance
        name = subject.name

        def compute(frame: pd.DataFrame) -> pd.DataFrame:
            values = subject.run(Bars.from_candles(frame), resolved)
            return pd.DataFrame(values, index=frame.index)

    else:
        timeframe = candles.attrs.get("timeframe")
        if not timeframe:
            raise ValueError("candles.attrs['timeframe'] must name the candles' timeframe")
        declared = warmup_bars(subject, timeframe)
        tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
        name = subject.name if isinstance(subject, FeatureSet) else subject

        def compute(frame: pd.DataFrame) -> pd.DataFrame:
            return build_features(frame, subject)

    skip = declared if warmup is None else warmup
    if not 0 < start < len(candles):
        raise ValueError(f"start {start} is not inside the {len(candles)} candles")
    later = candles.iloc[start:]
    later.attrs.update(candles.attrs)
    full = compute(candles).iloc[start + skip :]
    part = compute(later).iloc[skip:]
    if len(full) == 0:
        raise ValueError(
            f"{name}: nothing to compare: start {start} + warm-up {skip} >= {len(candles)} bars"
        )
    for column in full.columns:
        error = start_error(full[column].to_numpy(), part[column].to_numpy())
        bad = np.flatnonzero(error > tol)
        if bad.size:
            row = int(bad[0])
            raise StartInvarianceError(
                f"{name}: column {column!r} at {full.index[row]} ({row} bars past the declared "
                f"warm-up of {skip} after a start at bar {start}) is {full[column].iloc[row]!r} "
                f"from the full history but {part[column].iloc[row]!r} from the later start "
                f"(relative error {error[row]:.3g} > tolerance {tol:g})"
            )
    return len(full)


# -- indicators --------------------------------------------------------------------------------

IndicatorCheck = Callable[[Indicator], None]


def _history(indicator: Indicator, params: Mapping[str, Any], spare: int) -> pd.DataFrame:
    """Sample candles long enough for the indicator's warm-up plus ``spare`` bars."""
    warmup = indicator.warmup(indicator.resolve(params))
    return sample_candles(max(400, 2 * warmup + spare), seed=11)


def check_indicator_outputs(indicator: Indicator, params: Mapping[str, Any] | None = None) -> None:
    """``run`` gives one float64 column per declared output, named by ``columns``, as long as
    the bars, NaN before the declared warm-up and not all NaN after it."""
    resolved = indicator.resolve(params)
    candles = _history(indicator, resolved, 200)
    values = indicator.run(Bars.from_candles(candles), resolved)
    expected = indicator.columns(resolved)
    if list(values) != expected:
        raise ConformanceError(f"{indicator.name}: columns {list(values)}, declared {expected}")
    warmup = indicator.warmup(resolved)
    for column, array in values.items():
        if array.shape != (len(candles),) or array.dtype != np.float64:
            raise ConformanceError(
                f"{indicator.name}: column {column!r} is {array.dtype} {array.shape}, "
                f"expected float64 ({len(candles)},)"
            )
        if np.isfinite(array[:warmup]).any():
            raise ConformanceError(f"{indicator.name}: {column!r} has values inside its warm-up")
        if not np.isfinite(array[warmup:]).any():
            raise ConformanceError(
                f"{indicator.name}: {column!r} is never defined after its warm-up of {warmup} bars"
            )


def check_indicator_causal(indicator: Indicator, params: Mapping[str, Any] | None = None) -> None:
    """The value at bar t ignores every bar after t (:func:`check_causal` at three cuts)."""
    resolved = indicator.resolve(params)
    candles = _history(indicator, resolved, 200)

    def compute(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(indicator.run(Bars.from_candles(frame), resolved), index=frame.index)

    n = len(candles)
    for cut in (n // 3, n // 2, n - 10):
        try:
            check_causal(compute, candles, cut, rng=np.random.default_rng(cut))
        except CausalityError as error:
            raise CausalityError(f"{indicator.name}: {error}") from None


def check_indicator_start_invariant(
    indicator: Indicator, params: Mapping[str, Any] | None = None
) -> None:
    """Past its declared warm-up the value does not depend on where the history starts
    (:func:`check_start_invariant`); an indicator declared not start-invariant must say what
    to use instead."""
    if not indicator.start_invariant:
        if not indicator.refusal():
            raise ConformanceError(f"{indicator.name}: not start-invariant but gives no refusal")
        return
    resolved = indicator.resolve(params)
    candles = _history(indicator, resolved, 300)
    for start in (1, 37):
        check_start_invariant(indicator, candles, start, params=resolved)


def indicator_checks(indicator: Indicator) -> list[IndicatorCheck]:
    """The checks of an indicator (start invariance only where it is declared)."""
    return [check_indicator_outputs, check_indicator_causal, check_indicator_start_invariant]


def check_indicator(indicator: Indicator, params: Mapping[str, Any] | None = None) -> None:
    """Run every indicator check: outputs as declared, causal, start-invariant past the
    warm-up (at ``params``, the defaults when omitted).

    Raises
    ------
    ConformanceError, CausalityError or StartInvarianceError
        Naming the indicator, the column and the bar.

    Examples
    --------
    >>> from trademl.features.indicators import get_indicator
    >>> check_indicator(get_indicator("sma"), {"timeperiod": 5})
    """
    for check in (check_indicator_outputs, check_indicator_causal, check_indicator_start_invariant):
        check(indicator, params)
