"""Conformance checks of a strategy: valid signals, one per bar, causal, NaN means no trade."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from trademl.backtest.signals import Signals
from trademl.backtest.strategy_table import Strategy
from trademl.errors import ConfigError
from trademl.testing.data import ConformanceError, sample_candles

StrategyCheck = Callable[[Strategy], None]


def sample_predictions(
    candles: pd.DataFrame, kinds: tuple[str, ...], *, seed: int = 0
) -> dict[str, pd.Series]:
    """Plausible predictions of each kind on the candles' bars: P(up) in (0, 1) for
    ``direction``, positive and negative log ratios for ``max_high`` and ``min_low``, small
    returns for ``forward_return``."""
    rng = np.random.default_rng(seed)
    n = len(candles)
    made = {
        "direction": rng.uniform(0.2, 0.8, n),
        "max_high": rng.uniform(0.001, 0.03, n),
        "min_low": -rng.uniform(0.001, 0.03, n),
        "forward_return": rng.normal(0.0, 0.01, n),
    }
    return {kind: pd.Series(made[kind], index=candles.index) for kind in kinds}


def _run(strategy: Strategy, candles: pd.DataFrame, series: dict[str, pd.Series]) -> Signals:
    signals = strategy.signals(candles, series)
    if not isinstance(signals, Signals):
        raise ConformanceError(f"{strategy.name}: gave {type(signals).__name__}, not Signals")
    return signals


def _kinds(strategy: Strategy) -> tuple[str, ...]:
    return (*strategy.needs, *strategy.optional)


def check_strategy_signals(strategy: Strategy) -> None:
    """One valid signal entry per candle, on the candles' index, and some trades on
    plausible predictions."""
    candles = sample_candles(300, seed=31)
    signals = _run(strategy, candles, sample_predictions(candles, _kinds(strategy)))
    if not signals.index.equals(candles.index):
        raise ConformanceError(f"{strategy.name}: signals are not on the candles' bars")
    if not np.isin(signals.side, (-1, 0, 1)).all():
        raise ConformanceError(f"{strategy.name}: sides must be -1, 0 or 1")
    if signals.count == 0:
        raise ConformanceError(f"{strategy.name}: no trade at all on plausible predictions")


def check_strategy_causal(strategy: Strategy) -> None:
    """The signal of bar t ignores predictions and candles after t (probed at 20 cuts, so a
    rule peeking one bar ahead is caught even where its sides happen to agree)."""
    candles = sample_candles(300, seed=32)
    series = sample_predictions(candles, _kinds(strategy), seed=1)
    reference = _run(strategy, candles, series)
    rng = np.random.default_rng(7)
    for cut in range(100, 300, 10):
        after = np.arange(len(candles)) > cut
        changed = {
            kind: values.where(~after, sample_predictions(candles, (kind,), seed=cut)[kind])
            for kind, values in series.items()
        }
        order = np.arange(len(candles))
        order[after] = rng.permutation(order[after])
        later = candles.iloc[order].set_axis(candles.index)
        for probe, (frame, predictions) in {
            "predictions": (candles, changed),
            "candles": (later, series),
        }.items():
            _compare(strategy, reference, _run(strategy, frame, predictions), cut, probe)


def _compare(strategy: Strategy, reference: Signals, other: Signals, cut: int, probe: str) -> None:
    for field in ("side", "stop", "target", "max_bars", "size"):
        before = np.asarray(getattr(reference, field)[: cut + 1], dtype=np.float64)
        after = np.asarray(getattr(other, field)[: cut + 1], dtype=np.float64)
        same = (before == after) | (np.isnan(before) & np.isnan(after))
        if not same.all():
            first = int(np.argmax(~same))
            raise ConformanceError(
                f"{strategy.name}: {field} at bar {first} (<= {cut}) changed when the "
                f"{probe} after bar {cut} changed: the strategy looks ahead"
            )


def check_strategy_nan_is_no_trade(strategy: Strategy) -> None:
    """A bar whose needed prediction is NaN gets no signal."""
    candles = sample_candles(200, seed=33)
    series = sample_predictions(candles, _kinds(strategy), seed=2)
    for kind in strategy.needs:
        series[kind] = series[kind].copy()
        series[kind].iloc[50:100] = np.nan
    signals = _run(strategy, candles, series)
    if (signals.side[50:100] != 0).any():
        raise ConformanceError(f"{strategy.name}: traded on bars without a prediction")


def check_strategy_params(strategy: Strategy) -> None:
    """Every preset gives accepted parameters; an unknown parameter is a ConfigError."""
    candles = sample_candles(200, seed=34)
    series = sample_predictions(candles, _kinds(strategy), seed=3)
    for preset, params in strategy.presets.items():
        try:
            strategy.signals(candles, series, **params)
        except ConfigError as error:
            raise ConformanceError(f"{strategy.name}: preset {preset!r} fails: {error}") from error
    try:
        strategy.signals(candles, series, no_such_parameter=1)
    except ConfigError:
        return
    raise ConformanceError(f"{strategy.name}: an unknown parameter was accepted")


def strategy_checks(strategy: Strategy) -> list[StrategyCheck]:
    """The checks of a strategy."""
    return [
        check_strategy_signals,
        check_strategy_causal,
        check_strategy_nan_is_no_trade,
        check_strategy_params,
    ]


def check_strategy(strategy: Strategy) -> None:
    """Run every strategy check.

    Raises
    ------
    ConformanceError
        Naming the strategy and the broken promise.

    Examples
    --------
    >>> from trademl.backtest.strategies import STRATEGIES
    >>> check_strategy(STRATEGIES.get("direction"))
    """
    for check in strategy_checks(strategy):
        check(strategy)
