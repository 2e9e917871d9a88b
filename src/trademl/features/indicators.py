"""The indicator protocol and the table of registered indicators.

An indicator is a pure, causal function of the bars: its value at bar t uses bars up to and
including t. It declares its parameters (with defaults and bounds), its outputs, and its warm-up: the number of leading
bars after which its value no longer depends on where the history starts — exactly for
finite windows, within its declared relative tolerance for recursive smoothing (see
:mod:`trademl.features.invariance`). Values before the warm-up are NaN. Running totals from
the first bar are declared not start-invariant, and feature sets refuse them, naming the
windowed alternative. Column names say the indicator and its parameters: ``rsi_14``,
``macd_12_26_9_signal``, ``rv_parkinson_20``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trademl.data.candles import COLUMNS, candle_index
from trademl.errors import ConfigError
from trademl.features.invariance import DEFAULT_TOLERANCE
from trademl.plugins import GROUPS, PluginTable

FAMILIES = (
    "trend", "momentum", "volatility", "volume", "pattern", "cycle", "price", "statistic",
    "returns", "geometry", "time", "phase", "alpha158",
)  # fmt: skip


@dataclass(frozen=True)
class Bars:
    """The arrays an indicator reads: float64 OHLCV and the bar start times."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    index: pd.DatetimeIndex

    @classmethod
    def from_candles(cls, candles: pd.DataFrame) -> Bars:
        """Bars of a Candles frame (arrays are copies: indicators may not alter the frame)."""
        arrays = {c: candles[c].to_numpy(dtype=np.float64, copy=True) for c in COLUMNS}
        return cls(index=candle_index(candles), **arrays)

    def column(self, name: str) -> np.ndarray:
        """One input series by name (``open``... ``volume``)."""
        if name not in COLUMNS:
            raise ConfigError(f"input {name!r} is not one of {', '.join(COLUMNS)}")
        array: np.ndarray = getattr(self, name)
        return array

    def __len__(self) -> int:
        return len(self.close)

    def tail(self, n: int) -> Bars:
        """The last ``n`` bars (views, no copy)."""
        n = min(n, len(self))
        return Bars(
            open=self.open[-n:],
            high=self.high[-n:],
            low=self.low[-n:],
            close=self.close[-n:],
            volume=self.volume[-n:],
            index=self.index[-n:],
        )


@dataclass(frozen=True)
class Param:
    """One declared parameter: default, type and bounds (inclusive) or allowed values."""

    name: str
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def check(self, indicator: str, value: Any) -> Any:
        """Coerce ``value`` to the default's type and check it, naming what is wrong."""
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(
                    f"{indicator}: parameter {self.name}={value!r} must be true or false"
                )
        elif kind is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(
                    f"{indicator}: parameter {self.name}={value!r} must be an integer"
                )
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{indicator}: parameter {self.name}={value!r} must be a number")
            value = float(value)
        elif not isinstance(value, kind):
            raise ConfigError(
                f"{indicator}: parameter {self.name}={value!r} must be a {kind.__name__}"
            )
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{indicator}: parameter {self.name}={value!r} is not one of "
                f"{', '.join(map(str, self.choices))}"
            )
        if self.low is not None and value < self.low:
            raise ConfigError(
                f"{indicator}: parameter {self.name}={value!r} is below its minimum {self.low:g}"
            )
        if self.high is not None and value > self.high:
            raise ConfigError(
                f"{indicator}: parameter {self.name}={value!r} is above its maximum {self.high:g}"
            )
        return value


Compute = Callable[[Bars, Mapping[str, Any]], Mapping[str, np.ndarray]]
Warmup = Callable[[Mapping[str, Any]], int]


@dataclass(frozen=True)
class Indicator:
    """A registered indicator.

    ``compute(bars, params)`` returns one array per output (keys = ``outputs``), each as long
    as the bars, NaN where undefined. ``warmup(params)`` is the number of leading bars after
    which the values no longer depend on where the history starts (within ``tolerance``,
    relative; see :func:`trademl.features.invariance.start_error`): the first value kept is at
    index ``warmup``. ``start_invariant`` is False for running totals and path-dependent
    states, which no warm-up makes start-invariant; ``alternative`` then names the indicator
    to use instead.
    """

    name: str
    family: str
    compute: Compute
    warmup: Warmup
    params: tuple[Param, ...] = ()
    outputs: tuple[str, ...] = ("",)
    description: str = ""
    source: str = "trademl"
    name_params: tuple[str, ...] | None = field(default=None)
    start_invariant: bool = True
    alternative: str = ""
    tolerance: float = DEFAULT_TOLERANCE

    def refusal(self) -> str:
        """Why a feature set may not use this indicator ('' when it may)."""
        if self.start_invariant:
            return ""
        hint = f"; use {self.alternative} instead" if self.alternative else ""
        return (
            f"{self.name} is not start-invariant (its value depends on the first bar of the "
            f"history, so a server computing the last bar from a window would not reproduce "
            f"the value the model was validated on){hint}"
        )

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``given``, each checked; unknown names list the valid ones."""
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise ConfigError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; valid: {valid}"
            )
        return {name: p.check(self.name, given.get(name, p.default)) for name, p in known.items()}

    def columns(self, params: Mapping[str, Any]) -> list[str]:
        """Column names of the outputs for resolved ``params``."""
        base = self.base_name(params)
        return [base if not output else f"{base}_{output}" for output in self.outputs]

    def base_name(self, params: Mapping[str, Any]) -> str:
        """``rsi_14``: the name, then the parameters that shape the values, in order."""
        parts = []
        shown = (
            self.name_params if self.name_params is not None else tuple(p.name for p in self.params)
        )
        prefix = ""
        for name in shown:
            value = params[name]
            if name == "price":
                # Non-default inputs lead the name: volume_sma_20.
                if value != "close":
                    prefix = f"{value}_"
                continue
            parts.append(_format(value))
        return prefix + "_".join([self.name, *parts])

    def run(self, bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Compute the outputs as float64 columns, NaN before the warm-up and for infinities."""
        out = np.empty((len(bars), len(self.outputs)), order="F")
        self.run_into(bars, params, out)
        return {column: out[:, i] for i, column in enumerate(self.columns(params))}

    def run_into(self, bars: Bars, params: Mapping[str, Any], out: np.ndarray) -> None:
        """Like :meth:`run`, writing the outputs into the columns of ``out`` (n × outputs).

        The feature engine hands in slices of one preallocated block, so each value is copied
        once, from the function's result into the frame.
        """
        produced = self.compute(bars, params)
        # Before its warm-up an output is undefined, whatever the function put there (TA-Lib's
        # candle patterns write 0): NaN says so.
        warmup = min(self.warmup(params), len(bars))
        for position, output in enumerate(self.outputs):
            values = np.asarray(produced[output])
            if values.shape != (len(bars),):
                raise AssertionError(
                    f"{self.name}: output {output!r} has shape {values.shape}, expected ({len(bars)},)"
                )
            column = out[:, position]
            column[:] = values
            column[np.isinf(column)] = np.nan
            column[:warmup] = np.nan


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}".replace(".", "p").replace("-", "m")
    return str(value)


def _check_indicator(name: str, indicator: Indicator) -> None:
    if not isinstance(indicator, Indicator):
        raise TypeError(f"indicator {name!r} must be an Indicator, got {indicator!r}")
    if indicator.name != name:
        raise ValueError(f"indicator {name!r} is an Indicator named {indicator.name!r}")
    if indicator.family not in FAMILIES:
        raise ValueError(
            f"{indicator.name}: unknown family {indicator.family!r} (one of {', '.join(FAMILIES)})"
        )


INDICATORS: PluginTable[Indicator] = PluginTable(
    "indicator",
    group=GROUPS["indicators"],
    # Each module registers many indicators: they are imported together, on first need.
    builtin_modules=(
        "trademl.features.talib_indicators",
        "trademl.features.custom",
        "trademl.features.phases",
        "trademl.features.alpha158",
    ),
    check=_check_indicator,
)
"""Indicators by name: the built-ins and the ``trademl.indicators`` entry points."""


def register(indicator: Indicator) -> Indicator:
    """Add ``indicator`` to the table (its name must be new, its family one of FAMILIES)."""
    return INDICATORS.register(indicator.name)(indicator)


def get_indicator(name: str) -> Indicator:
    """The indicator registered as ``name``; the error lists close and valid names."""
    return INDICATORS.get(name.lower())


def all_indicators() -> list[Indicator]:
    """Every registered indicator (built-in and third-party), sorted by family then name."""
    return sorted(
        load_all().values(),
        key=lambda i: (FAMILIES.index(i.family), i.name),
    )


def load_all() -> dict[str, Indicator]:
    """Import every indicator, built-in and third-party; return them by name."""
    return INDICATORS.load_all()
