"""The strategy plug-in: a named rule from prediction columns to Signals, and its table.

A :class:`Strategy` names the prediction kinds it reads (``direction``, ``max_high``,
``min_low``, ``forward_return``) and a function ``function(candles, *series, **params)``
that gets the candles, then one prediction Series per needed kind, then one per optional kind
(None when the run did not predict it), then its keyword-only parameters. The built-ins
(``maxmin``, ``direction``) live in :mod:`trademl.backtest.strategies`; third-party packages
register theirs under the ``trademl.strategies`` entry-point group.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from trademl.backtest.signals import Signals
from trademl.errors import ConfigError
from trademl.plugins import GROUPS, PluginTable

PREDICTION_KINDS = ("direction", "max_high", "min_low", "forward_return")
"""The prediction kinds a strategy may read."""

_COLUMN = re.compile(
    rf"^(?P<model>.+?)__(?P<kind>{'|'.join(PREDICTION_KINDS)})_(?P<bars>\d+)$"
)  # fmt: skip


@dataclass(frozen=True)
class Strategy:
    """A named rule turning prediction columns into :class:`Signals`.

    Parameters
    ----------
    name : str
        The name configs use (``strategy.kind``).
    function : callable
        ``function(candles, *series, **params) -> Signals``: the series of ``needs`` then of
        ``optional`` (None where absent), in order; its keyword-only parameters are the ones a
        config may set.
    needs : tuple of str
        Prediction kinds that must be in the predictions frame.
    optional : tuple of str
        Prediction kinds read when present.
    presets : mapping
        Parameter sets by preset name (``conservative``, ``aggressive``).
    """

    name: str
    function: Callable[..., Signals]
    needs: tuple[str, ...]
    optional: tuple[str, ...] = ()
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def parameters(self) -> set[str]:
        """The keyword-only parameters of ``function``: what ``params`` may set."""
        return {
            p.name
            for p in inspect.signature(self.function).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Refuse parameters ``function`` does not take, naming the accepted ones."""
        unknown = sorted(set(params) - self.parameters())
        if unknown:
            raise ConfigError(
                f"{self.name} strategy has no parameter(s) {unknown}; "
                f"accepted: {sorted(self.parameters())}"
            )

    def signals(
        self,
        candles: pd.DataFrame,
        series: Mapping[str, pd.Series | None],
        **params: Any,
    ) -> Signals:
        """Signals from the prediction ``series`` by kind; unknown parameters are refused."""
        self.check_params(params)
        missing = [kind for kind in self.needs if series.get(kind) is None]
        if missing:
            raise ConfigError(f"{self.name} strategy needs predictions of {missing}")
        ordered = [series[kind] for kind in self.needs]
        ordered += [series.get(kind) for kind in self.optional]
        return self.function(candles, *ordered, **params)


def _check_strategy(name: str, strategy: Strategy) -> None:
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy {name!r} must be a Strategy, got {strategy!r}")
    if strategy.name != name:
        raise ValueError(f"strategy {name!r} is a Strategy named {strategy.name!r}")
    kinds = (*strategy.needs, *strategy.optional)
    if not strategy.needs or not set(kinds) <= set(PREDICTION_KINDS):
        raise ValueError(
            f"strategy {name!r} reads {list(kinds)}; it needs at least one of "
            f"{', '.join(PREDICTION_KINDS)} and may read only those"
        )


STRATEGIES: PluginTable[Strategy] = PluginTable(
    "strategy",
    group=GROUPS["strategies"],
    builtins={
        "maxmin": "trademl.backtest.strategies",
        "direction": "trademl.backtest.strategies",
    },
    check=_check_strategy,
)
"""Strategies by name: the built-ins and the ``trademl.strategies`` entry points."""


def register_strategy(strategy: Strategy) -> Strategy:
    """Add ``strategy`` to :data:`STRATEGIES` under its name."""
    return STRATEGIES.register(strategy.name)(strategy)


# -- from a workflow predictions frame ---------------------------------------------------------


def _prediction_columns(predictions: pd.DataFrame) -> dict[tuple[str, int], set[str]]:
    found: dict[tuple[str, int], set[str]] = {}
    for column in predictions.columns:
        match = _COLUMN.match(str(column))
        if match and match["model"] != "target":
            key = (match["model"], int(match["bars"]))
            found.setdefault(key, set()).add(match["kind"])
    return found


def _pick(
    predictions: pd.DataFrame, needed: set[str], model: str | None, horizon: int | None
) -> tuple[str, int]:
    found = {k: kinds for k, kinds in _prediction_columns(predictions).items() if needed <= kinds}
    candidates = [
        (m, h)
        for (m, h) in found
        if (model is None or m == model) and (horizon is None or h == horizon)
    ]
    if model is None and len(candidates) > 1:
        # Deferred: the models import scikit-learn (about a second), and configs read this
        # module's table without ever picking a model.
        from trademl.models.naive import BASELINE_PREFIX

        candidates = [(m, h) for (m, h) in candidates if not m.startswith(BASELINE_PREFIX)]
    if len(candidates) == 1:
        return candidates[0]
    wanted = ", ".join(f"{{model}}__{kind}_{{bars}}" for kind in sorted(needed))
    if not candidates:
        raise ConfigError(
            f"predictions have no columns {wanted} for model={model!r}, horizon={horizon!r}; "
            f"available (model, bars): {sorted(found) or 'none'}"
        )
    raise ConfigError(
        f"several (model, horizon) pairs fit: {sorted(candidates)}; pass model= and horizon="
    )


def strategy_signals(
    name: str,
    candles: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    preset: str | None = None,
    horizon: int | None = None,
    model: str | None = None,
    **overrides: Any,
) -> Signals:
    """A named strategy applied to a workflow predictions frame.

    The frame is the one of ``predictions.parquet`` (:func:`trademl.workflow.run`), indexed by
    timestamp with one row per bar (so not the several paths of a CPCV run). For a model column
    name ``{model}`` and a horizon of ``{bars}`` bars, the column of a prediction kind is
    ``{model}__{kind}_{bars}``: ``maxmin`` reads ``max_high`` and ``min_low`` (and
    ``direction`` for its confidence filter when present), ``direction`` reads ``direction``.
    ``fold``, ``target__...`` and interval-bound columns (``...__lo`` etc.) are ignored.

    Parameters
    ----------
    name : str
        A name in :data:`STRATEGIES` (``maxmin``, ``direction`` or a third-party one).
    candles : pandas.DataFrame
        The candles the predictions were made on; predictions on timestamps that are not candle
        bars raise, candle bars without predictions get no signal.
    predictions : pandas.DataFrame
        The workflow predictions frame.
    preset : str, optional
        A preset of the strategy (``conservative``, ``aggressive``), or None for its defaults.
    horizon : int, optional
        The horizon in bars; may be left out when the frame holds only one.
    model : str, optional
        The model column name; may be left out when only one non-baseline model fits.
    **overrides
        Keyword parameters of the strategy function, applied over the preset.

    Returns
    -------
    Signals
        One entry per candle.

    Raises
    ------
    UnknownPluginError
        Unknown strategy.
    ConfigError
        Unknown preset, missing or ambiguous prediction columns, misalignment, or invalid
        parameters.
    """
    strategy = STRATEGIES.get(name)
    params: dict[str, Any] = {}
    if preset is not None:
        if preset not in strategy.presets:
            raise ConfigError(
                f"unknown preset {preset!r} of strategy {name!r}; known: "
                f"{', '.join(strategy.presets) or 'none'}"
            )
        params.update(strategy.presets[preset])
    params.update(overrides)
    strategy.check_params(params)
    chosen, bars = _pick(predictions, set(strategy.needs), model, horizon)
    series: dict[str, pd.Series | None] = {}
    for kind in (*strategy.needs, *strategy.optional):
        column = f"{chosen}__{kind}_{bars}"
        series[kind] = predictions[column] if column in predictions.columns else None
    return strategy.signals(candles, series, **params)
