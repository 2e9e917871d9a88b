"""Conformance checks for plug-in authors, the same ones trademl runs on its own plug-ins.

As scikit-learn ships ``check_estimator``, trademl ships one check per plug-in family, each
raising an ``AssertionError`` (:class:`ConformanceError`, :class:`CausalityError`,
:class:`StartInvarianceError`) that names the plug-in and the broken promise:

* :func:`check_model`: a model kind (an unfitted, configured instance);
* :func:`check_indicator`: outputs as declared, causal, start-invariant past the warm-up;
* :func:`check_source`: a :class:`SourceCase` (a source and a range it serves);
* :func:`check_store`: a :class:`StoreCase` (a way to open a fresh store);
* :func:`check_strategy`: a :class:`~trademl.backtest.strategy_table.Strategy`.

:func:`parametrize_with_checks` turns plug-ins into a pytest parametrisation over
(plug-in, check) pairs, choosing each plug-in's checks by its declared capabilities. This
package does not import pytest; only that function does, when called.

>>> from trademl.testing import check_model
>>> from trademl.models.naive import NaiveModel
>>> check_model(NaiveModel(strategy="mean"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from trademl.backtest.strategy_table import Strategy
from trademl.features.indicators import Indicator
from trademl.models.base import BaseModel
from trademl.testing.data import ConformanceError, sample_candles, sample_features
from trademl.testing.features import (
    CausalityError,
    StartInvarianceError,
    check_causal,
    check_indicator,
    check_start_invariant,
    indicator_checks,
    perturb_after,
)
from trademl.testing.models import check_model, model_checks, model_instances
from trademl.testing.sources import SourceCase, check_source, source_checks
from trademl.testing.stores import StoreCase, check_store, store_checks
from trademl.testing.strategies import check_strategy, sample_predictions, strategy_checks

Plugin = BaseModel | Indicator | Strategy | SourceCase | StoreCase


def checks_for(plugin: Plugin) -> list[Callable[[Any], None]]:
    """The checks that apply to ``plugin``, by its family and declared capabilities.

    Raises
    ------
    TypeError
        ``plugin`` is not a model, indicator, strategy, source case or store case.
    """
    if isinstance(plugin, BaseModel):
        return list(model_checks(plugin))
    if isinstance(plugin, Indicator):
        return list(indicator_checks(plugin))
    if isinstance(plugin, Strategy):
        return list(strategy_checks(plugin))
    if isinstance(plugin, SourceCase):
        return list(source_checks(plugin))
    if isinstance(plugin, StoreCase):
        return list(store_checks(plugin))
    raise TypeError(
        f"{plugin!r} is not a plug-in trademl can check (a model, an Indicator, a Strategy, "
        "a SourceCase or a StoreCase)"
    )


def plugin_id(plugin: Plugin) -> str:
    """A short test id: ``lgbm[regression]``, ``rsi``, ``maxmin``, the case's name."""
    if isinstance(plugin, BaseModel):
        return f"{plugin.kind}[{plugin.task}]"
    if isinstance(plugin, Indicator | Strategy):
        return plugin.name
    if isinstance(plugin, SourceCase):
        return str(getattr(plugin.source, "name", type(plugin.source).__name__))
    return str(plugin)


def parametrize_with_checks(plugins: Iterable[Plugin]) -> Any:
    """A ``pytest.mark.parametrize("plugin, check", ...)`` over every (plug-in, check) pair.

    Parameters
    ----------
    plugins : iterable
        Models (unfitted, configured), indicators, strategies, source cases and store cases.

    Returns
    -------
    pytest.MarkDecorator
        Decorate a test ``def test_conformance(plugin, check): check(plugin)``.

    Examples
    --------
    >>> from trademl.models.naive import NaiveModel
    >>> @parametrize_with_checks([NaiveModel(strategy="mean")])  # doctest: +SKIP
    ... def test_conformance(plugin, check):
    ...     check(plugin)
    """
    import pytest  # only here: the checks themselves run without pytest

    params = [
        pytest.param(plugin, check, id=f"{plugin_id(plugin)}-{check.__name__}")
        for plugin in plugins
        for check in checks_for(plugin)
    ]
    return pytest.mark.parametrize(("plugin", "check"), params)


__all__ = [
    "CausalityError",
    "ConformanceError",
    "SourceCase",
    "StartInvarianceError",
    "StoreCase",
    "check_causal",
    "check_indicator",
    "check_model",
    "check_source",
    "check_start_invariant",
    "check_store",
    "check_strategy",
    "checks_for",
    "model_instances",
    "parametrize_with_checks",
    "perturb_after",
    "plugin_id",
    "sample_candles",
    "sample_features",
    "sample_predictions",
]
