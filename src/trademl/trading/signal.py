"""The one signal computation the server answers with and the live loop trades on.

``GET /api/v1/signals/{symbol}`` and :class:`~trademl.trading.loop.TradingLoop` both turn a
model's prediction for one closed bar into a :class:`BarSignal` through :func:`bar_signal`,
which applies :func:`~trademl.backtest.strategies.maxmin_signals` (the backtest's own rule) to
that one bar: what is served is what is traded, and what is traded is what was backtested.

>>> import pandas as pd
>>> values = {"intraday__high_log": 0.02, "intraday__low_log": -0.01, "intraday__p_up": 0.6}
>>> s = bar_signal(values, "intraday", pd.Timestamp("2024-01-01", tz="UTC"), 100.0)
>>> s.side_name, round(s.stop, 4), round(s.target, 4)
('long', 99.005, 102.0201)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trademl.backtest.strategies import PRESETS, maxmin_signals
from trademl.errors import ConfigError

_CLOSE = pd.Index(["close"])
DEFAULT_PARAMS: dict[str, Any] = {"reward_risk": 1.5, "min_confidence": 0.0, "allow_short": True}


def signal_params(
    preset: str | None = None,
    *,
    reward_risk: float | None = None,
    min_confidence: float | None = None,
    allow_short: bool = True,
) -> dict[str, Any]:
    """The max/min rule's parameters: the defaults, then ``preset``'s, then those given.

    Raises
    ------
    ConfigError
        An unknown preset.
    """
    params: dict[str, Any] = {"reward_risk": 1.5, "min_confidence": 0.0}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        params.update(PRESETS[preset]["maxmin"])
    if reward_risk is not None:
        params["reward_risk"] = reward_risk
    if min_confidence is not None:
        params["min_confidence"] = min_confidence
    params["allow_short"] = allow_short
    return params


@dataclass(frozen=True)
class BarSignal:
    """The signal at the close of one bar.

    Attributes
    ----------
    timestamp : pandas.Timestamp
        The (UTC) start of the signal bar; an entry is made at the next bar's open.
    close : float
        The signal bar's close.
    side : int
        +1 long, -1 short, 0 flat.
    stop, target : float
        Prices, NaN when flat.
    horizon : str
        The horizon whose prediction made it.
    params : dict
        The rule's parameters.
    """

    timestamp: pd.Timestamp
    close: float
    side: int
    stop: float
    target: float
    horizon: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def side_name(self) -> str:
        """``long``, ``short`` or ``flat``."""
        return {1: "long", -1: "short"}.get(self.side, "flat")

    @property
    def reward_risk(self) -> float | None:
        """``|target - close| / |close - stop|``, None when flat."""
        if self.side == 0 or self.stop == self.close:
            return None
        return abs(self.target - self.close) / abs(self.close - self.stop)


def _one_bar(timestamp: pd.Timestamp, close: float) -> pd.DataFrame:
    """A one-row frame of ``close`` (built from its block: a dict costs ten times more)."""
    index = pd.DatetimeIndex([timestamp], name="timestamp")
    return pd.DataFrame(np.array([[close]]), index=index, columns=_CLOSE, copy=False)


def bar_signal(
    values: Mapping[str, float],
    horizon: str,
    timestamp: pd.Timestamp,
    close: float,
    params: Mapping[str, Any] | None = None,
) -> BarSignal:
    """The max/min rule on one bar's prediction.

    Parameters
    ----------
    values : mapping
        The bar's prediction columns (:attr:`~trademl.pipeline.LastBar.values`): at least
        ``{horizon}__high_log``, ``{horizon}__low_log`` and ``{horizon}__p_up``.
    horizon : str
        The horizon traded.
    timestamp : pandas.Timestamp
        The signal bar.
    close : float
        Its close.
    params : mapping, optional
        :func:`signal_params` (the defaults when None).

    Returns
    -------
    BarSignal

    Raises
    ------
    ConfigError
        The prediction lacks a column of ``horizon``, or a parameter is out of range.
    """
    chosen = dict(params if params is not None else DEFAULT_PARAMS)
    columns = [f"{horizon}__{name}" for name in ("high_log", "low_log", "p_up")]
    missing = [column for column in columns if column not in values]
    if missing:
        raise ConfigError(f"the prediction has no {', '.join(missing)} (horizon {horizon!r})")
    bar = _one_bar(timestamp, float(close))
    signals = maxmin_signals(bar, *([float(values[column])] for column in columns), **chosen)
    side = int(signals.side[0])
    return BarSignal(
        timestamp,
        float(close),
        side,
        float(signals.stop[0]),
        float(signals.target[0]),
        horizon,
        chosen,
    )
