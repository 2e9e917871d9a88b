r"""Accumulation, manipulation and distribution phases (``amd_phase``, family ``phase``).

A market often ranges quietly (accumulation), then briefly pokes through one side of the range
and snaps back (manipulation: a sweep of the stops beyond it), then moves hard out of the range
(distribution, or expansion). The indicator marks each step from the bars alone, causally.

Definitions, with :math:`w` = ``window``, :math:`O_t, H_t, L_t, C_t` the bar's prices:

Prior range
    :math:`\overline{H}_t = \max(H_{t-w} .. H_{t-1})` and
    :math:`\underline{L}_t = \min(L_{t-w} .. L_{t-1})`: the :math:`w` bars *before* t, so bar
    t can break out of it.
``compression``
    :math:`(\overline{H}_t - \underline{L}_t) / m_t` with :math:`m_t` the median of that width
    over the last :math:`4w` bars (t included). Below ``compression`` the range is compressed:
    accumulation.
``false_breakout``
    +1 when :math:`L_t < \underline{L}_t` and :math:`C_t \geq \underline{L}_t` (the lows were
    swept and the bar closed back inside: bullish), -1 when :math:`H_t > \overline{H}_t` and
    :math:`C_t \leq \overline{H}_t` (the highs were swept: bearish), 0 otherwise, also for a bar
    that sweeps both sides.
``expansion``
    +1 when :math:`C_t > \overline{H}_t`, -1 when :math:`C_t < \underline{L}_t`, provided
    :math:`(H_t - L_t) / ATR_{t-1} \geq` ``expansion``, 0 otherwise. :math:`ATR_{t-1}` is the mean
    true range over the :math:`w` bars up to the previous bar (finite, so start-invariant), so that a large bar does not dilute
    the yardstick it is measured against.
``phase``
    An event at bar :math:`s` is *recent* at bar t when :math:`0 \leq t - s \leq` ``memory``.
    3 (distribution) when bar t is an expansion and a manipulation is recent; else 2
    (manipulation) when bar t is a false breakout and an accumulation is recent; else 1
    (accumulation) when the prior range is compressed now; else 0. Phases 2 and 3 are events of
    one bar; the signed ``false_breakout`` and ``expansion`` columns give their direction.
``bars_since_sweep``
    Bars since the last false breakout (0 on its bar), capped at :math:`4w`; the cap too
    when no sweep is seen in the last :math:`4w` bars.

Warm-up :math:`\max(5w - 1 + 2m, 5w)` with :math:`m` = ``memory``: the prior range needs
:math:`w` bars, its median :math:`4w` widths, the phase looks back :math:`m` bars twice, and
the sweep age :math:`4w` bars; from there on every output is start-invariant, exactly.
Every value at bar t reads bars up to t only (rolling windows end at t, the prior range is shifted
one bar into the past).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trademl.errors import ConfigError
from trademl.features.custom import MAX_WINDOW, mean_true_range, rolling_max, rolling_min
from trademl.features.indicators import Bars, Indicator, Param, register

# The median of the range width is taken over this many ranges, so that "compressed" means
# narrow compared with the last few ranges, not with all history.
MEDIAN_RANGES = 4
# bars_since_sweep stops counting here (in windows): a sweep this old says nothing more. It also
# bounds how far back the count looks, which keeps it start-invariant past the warm-up.
SWEEP_AGE_CAP = 4

PHASE_NONE, PHASE_ACCUMULATION, PHASE_MANIPULATION, PHASE_DISTRIBUTION = 0, 1, 2, 3


@dataclass(frozen=True)
class AboveParam(Param):
    """A parameter whose lower bound is excluded: the value must be strictly above ``low``."""

    def check(self, indicator: str, value: Any) -> Any:
        """Check as :class:`Param` does, then reject a value equal to ``low``."""
        value = super().check(indicator, value)
        if self.low is not None and value <= self.low:
            raise ConfigError(
                f"{indicator}: parameter {self.name}={value!r} must be above {self.low:g}"
            )
        return value


def _shift_one(values: np.ndarray) -> np.ndarray:
    # Bar t sees the value of bar t-1: a look into the past, never the future.
    out = np.full(len(values), np.nan)
    out[1:] = values[:-1]
    return out


def _rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) <= 2 * window:
        # A short tail (the server's last bar): numpy, without pandas' per-call overhead.
        out = np.full(len(values), np.nan)
        if len(values) >= window:
            windows = np.lib.stride_tricks.sliding_window_view(values, window)
            out[window - 1 :] = np.median(windows, axis=1)
        return out
    return pd.Series(values, copy=False).rolling(window).median().to_numpy()


def _recent(events: np.ndarray, memory: int) -> np.ndarray:
    # True where an event happened within the last `memory` bars (t included). Rolling max of a
    # 0/1 series; a partial window at the start still counts what it saw.
    flags = pd.Series(events.astype(np.float64), copy=False)
    return flags.rolling(memory + 1, min_periods=1).max().to_numpy(dtype=np.float64) > 0


def bars_since(events: np.ndarray, cap: int) -> np.ndarray:
    """Bars since the last event (0 on its bar), capped at ``cap``.

    With no event yet, the count is ``cap`` once ``cap`` bars have been seen (none in the last
    ``cap`` bars is known) and NaN before: the value never depends on bars older than ``cap``.
    """
    positions = np.arange(len(events))
    last = np.maximum.accumulate(np.where(events, positions, -1)) if len(events) else positions
    age = np.minimum(positions - last, cap).astype(np.float64)
    known = (last >= 0) | (positions >= cap)
    return np.where(known, np.where(last >= 0, age, float(cap)), np.nan)


def amd_phases(bars: Bars, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The ``amd_phase`` outputs for resolved ``params`` (see the module's definitions)."""
    window, memory = int(params["window"]), int(params["memory"])
    high, low, close = bars.high, bars.low, bars.close
    prior_high = _shift_one(rolling_max(high, window))
    prior_low = _shift_one(rolling_min(low, window))
    width = prior_high - prior_low
    median = _rolling_median(width, MEDIAN_RANGES * window)
    with np.errstate(divide="ignore", invalid="ignore"):
        compression = np.asarray(width / median, dtype=np.float64)
    # NaN comparisons are False: an undefined ratio is not a compression.
    compressed = compression < params["compression"]

    swept_low = (low < prior_low) & (close >= prior_low)
    swept_high = (high > prior_high) & (close <= prior_high)
    false_breakout = swept_low.astype(np.float64) - swept_high.astype(np.float64)

    atr = _shift_one(mean_true_range(bars, window))
    with np.errstate(divide="ignore", invalid="ignore"):
        wide = (high - low) / atr >= params["expansion"]
    expansion = (wide & (close > prior_high)).astype(np.float64) - (
        wide & (close < prior_low)
    ).astype(np.float64)

    manipulation = (false_breakout != 0) & _recent(compressed, memory)
    distribution = (expansion != 0) & _recent(manipulation, memory)
    phase = np.select(
        [distribution, manipulation, compressed],
        [PHASE_DISTRIBUTION, PHASE_MANIPULATION, PHASE_ACCUMULATION],
        default=PHASE_NONE,
    ).astype(np.float64)
    return {
        "compression": compression,
        "false_breakout": false_breakout,
        "expansion": expansion,
        "phase": phase,
        "bars_since_sweep": bars_since(false_breakout != 0, SWEEP_AGE_CAP * window),
    }


def amd_warmup(params: Mapping[str, Any]) -> int:
    """Bars until every output is start-invariant.

    The prior range's first width is at index ``window`` and its median needs
    ``4 * window`` of them; the phase looks back ``memory`` bars at compressions and another
    ``memory`` at manipulations; the sweep age looks back its cap from the first sweep that
    can be seen (at ``window``).
    """
    window, memory = int(params["window"]), int(params["memory"])
    compression_ready = window + (MEDIAN_RANGES * window - 1)
    return max(compression_ready + 2 * memory, window + SWEEP_AGE_CAP * window)


register(
    Indicator(
        name="amd_phase",
        family="phase",
        compute=amd_phases,
        warmup=amd_warmup,
        params=(
            Param("window", 48, low=5, high=MAX_WINDOW),
            AboveParam("compression", 0.6, low=0.0, high=1.0),
            Param("expansion", 1.5, low=1.0),
            Param("memory", 24, low=1, high=MAX_WINDOW),
        ),
        outputs=("compression", "false_breakout", "expansion", "phase", "bars_since_sweep"),
        description="accumulation / manipulation / distribution phase detector",
    )
)
