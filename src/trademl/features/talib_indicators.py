"""TA-Lib's functions as trademl indicators, by their lower-case names (``rsi``, ``macd``...).

Every function of TA-Lib's trend (overlap studies), momentum, volatility, volume, cycle,
price-transform, statistic and candle-pattern groups is registered with its own parameters
and defaults; single-price functions also take ``price`` (which input they read). The warm-up
is TA-Lib's own lookback for the given parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import talib
import talib.abstract

from trademl.features.indicators import PRICE_INPUTS, Bars, Indicator, Param, register

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
    if isinstance(default, int) and ("period" in name or name.endswith("limit")):
        return Param(
            name, default, low=_PERIOD_BOUNDS[0] if name != "matype" else 0, high=_PERIOD_BOUNDS[1]
        )
    if name == "matype":
        return Param(name, int(default), low=0, high=8)
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
        params.insert(0, Param("price", inputs[0], choices=PRICE_INPUTS))
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

    def warmup(values: Mapping[str, Any]) -> int:
        return _lookback(function, tuple((name, values[name]) for name in talib_params))

    return Indicator(
        name=function.lower(),
        family=_GROUPS[info["group"]],
        compute=compute,
        warmup=warmup,
        params=tuple(params),
        outputs=output_names,
        description=str(info["display_name"]),
        source="TA-Lib",
    )


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
