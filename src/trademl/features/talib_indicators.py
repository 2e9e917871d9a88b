"""TA-Lib's functions as trademl indicators, by their lower-case names (``rsi``, ``macd``...).

Every function of TA-Lib's trend (overlap studies), momentum, volatility, volume, cycle,
price-transform, statistic and candle-pattern groups is registered with its own parameters
and defaults; single-price functions also take ``price`` (which input they read).

Warm-up: TA-Lib's own lookback counts the bars before the first output, but for recursive
functions (EMA, Wilder's RSI/ATR/ADX, the Hilbert transform, KAMA, MAMA...) TA-Lib leaves out
the "unstable period" after which the output no longer depends on the first bar. We measure
that period per function and parameters (:mod:`trademl.features.invariance`) and add it, with
TA-Lib's own unstable-period mechanism's meaning: values before it are not returned. For the
adaptive smoothers the analytic bound of their slowest regime applies too. Running totals
(``ad``, ``obv``...) and path-dependent states (``sar``, ``supertrend``) are registered but
declared not start-invariant; feature sets refuse them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import talib
import talib.abstract

from trademl.data.candles import COLUMNS
from trademl.features.indicators import Bars, Indicator, Param, register
from trademl.features.invariance import (
    DEFAULT_TOLERANCE,
    cached_convergence,
    declared_warmup,
    geometric_bars,
)

_GROUPS = {
    "Overlap Studies": "trend",
    "Momentum Indicators": "momentum",
    "Volatility Indicators": "volatility",
    "Volume Indicators": "volume",
    "Cycle Indicators": "cycle",
    "Price Transform": "price",
    "Statistic Functions": "statistic",
    "Pattern Recognition": "pattern",
}
# MAVP needs a second series of periods; it is not a function of the bars alone.
_SKIP = {"MAVP"}
# Bounds TA-Lib enforces on period-like parameters, so that a bad value fails before any data.
_PERIOD_BOUNDS = (1, 100_000)
# Running totals from the first bar: never start-invariant. Value: the windowed alternative.
CUMULATIVE = {
    "AD": "ad_flow",
    "OBV": "obv_flow",
    "WAD": "ad_flow",
    "NVI": "obv_flow",
    "PVI": "obv_flow",
    "PVT": "obv_flow",
    "VWAP": "vwap_distance",
}
# Trend states carried from the first bar (long or short, extreme point, acceleration): two
# histories can disagree for as long as the trend lasts, with no bound a warm-up could cover.
PATH_DEPENDENT = {"SAR": "dist_low", "SAREXT": "dist_low", "SUPERTREND": "dist_low"}
# KAMA's slowest smoothing constant (2 / (30 + 1))^2 and MAMA's slow limit bound how long their
# first bar lingers; matype codes 6 and 7 select them inside the moving-average family.
_KAMA_SLOWEST = (2.0 / 31.0) ** 2
_MATYPE_KAMA, _MATYPE_MAMA = 6, 7
_MAMA_DEFAULT_SLOW = 0.05
# TA-Lib's moving-average types are numbered 0..13 (SMA ... Wilder); a larger code fails inside
# TA-Lib at call time, so the bound makes it fail when the set is read.
_MATYPE_MAX = 13
# Shorter output names where TA-Lib repeats the function's name.
_SHORT = {
    "macdsignal": "signal",
    "macdhist": "hist",
    "upperband": "upper",
    "middleband": "middle",
    "lowerband": "lower",
}


def _function(name: str) -> Any:
    # talib's abstract API is untyped; one typed door to it.
    return talib.abstract.Function(name)  # type: ignore[attr-defined]


def _param(name: str, default: Any) -> Param:
    # Every moving-average type (matype, slowk_matype, fastd_matype...) is one of TA-Lib's.
    if name.endswith("matype"):
        return Param(name, int(default), low=0, high=_MATYPE_MAX)
    if isinstance(default, int) and ("period" in name or name.endswith("limit")):
        return Param(name, default, low=_PERIOD_BOUNDS[0], high=_PERIOD_BOUNDS[1])
    if isinstance(default, float):
        return Param(name, float(default))
    return Param(name, default)


def _inputs(info: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for value in info["input_names"].values():
        names.extend([value] if isinstance(value, str) else list(value))
    return names


@lru_cache(maxsize=4096)
def _lookback(function: str, frozen: tuple[tuple[str, Any], ...]) -> int:
    handle = _function(function)
    handle.set_parameters(dict(frozen))
    return int(handle.lookback)


def _make(function: str) -> Indicator:
    info = _function(function).info
    inputs = _inputs(info)
    single_price = list(info["input_names"]) == ["price"]
    params = [_param(name, default) for name, default in info["parameters"].items()]
    if single_price:
        params.insert(0, Param("price", inputs[0], choices=COLUMNS))
    outputs = tuple(info["output_names"])
    output_names = ("",) if len(outputs) == 1 else tuple(_SHORT.get(o, o) for o in outputs)
    call = getattr(talib, function)
    talib_params = list(info["parameters"])

    def compute(bars: Bars, values: Mapping[str, Any]) -> dict[str, np.ndarray]:
        arrays = (
            [bars.column(values["price"])] if single_price else [bars.column(i) for i in inputs]
        )
        result = call(*arrays, **{name: values[name] for name in talib_params})
        results = result if isinstance(result, tuple) else (result,)
        return {
            name: np.asarray(r, dtype=np.float64)
            for name, r in zip(output_names, results, strict=True)
        }

    def raw(candles: pd.DataFrame, values: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return compute(Bars.from_candles(candles), values)

    def warmup(values: Mapping[str, Any]) -> int:
        lookback = _lookback(function, tuple((name, values[name]) for name in talib_params))
        if function in CUMULATIVE or function in PATH_DEPENDENT:
            return lookback
        measured = cached_convergence(
            function, values, lambda candles: raw(candles, values), lookback, DEFAULT_TOLERANCE
        )
        # The analytic bound is exact for the slowest regime: no safety factor on top.
        return max(
            declared_warmup(lookback, measured), lookback + _adaptive_bound(function, values)
        )

    alternative = CUMULATIVE.get(function) or PATH_DEPENDENT.get(function, "")
    return Indicator(
        name=function.lower(),
        family=_GROUPS[info["group"]],
        compute=compute,
        warmup=warmup,
        params=tuple(params),
        outputs=output_names,
        description=str(info["display_name"]),
        source="TA-Lib",
        start_invariant=function not in CUMULATIVE and function not in PATH_DEPENDENT,
        alternative=alternative,
    )


def _adaptive_bound(function: str, values: Mapping[str, Any]) -> int:
    """Bars for the slowest regime of an adaptive smoother to forget its start (0 if none)."""
    kama = geometric_bars(1.0 - _KAMA_SLOWEST, DEFAULT_TOLERANCE)
    bound = 0
    if function == "KAMA":
        bound = kama
    elif function == "MAMA":
        bound = geometric_bars(1.0 - float(values["slowlimit"]), DEFAULT_TOLERANCE)
    for name, value in values.items():
        if "matype" in name and value == _MATYPE_KAMA:
            bound = max(bound, kama)
        elif "matype" in name and value == _MATYPE_MAMA:
            bound = max(bound, geometric_bars(1.0 - _MAMA_DEFAULT_SLOW, DEFAULT_TOLERANCE))
    return bound


def _function_groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = talib.get_function_groups()  # type: ignore[no-untyped-call]
    return groups


def _register_all() -> None:
    for group, functions in _function_groups().items():
        if group not in _GROUPS:
            continue
        for function in functions:
            if function not in _SKIP:
                register(_make(function))


_register_all()
