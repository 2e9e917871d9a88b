"""trademl: an ML engine for trading — honest, causal, reproducible models from OHLCV candles.

The Python API (:mod:`trademl.api`) is imported on first use, so ``import trademl`` stays
fast:

>>> import trademl
>>> sorted(name for name in trademl.__all__ if name[0].islower())
['build_features', 'load_model', 'read_candles', 'run_backtest', 'train', 'tune']

``trademl.backtest`` is the backtesting package, so the API's backtest is ``run_backtest``
here (``trademl.api.backtest`` is the same function).
"""

from typing import TYPE_CHECKING, Any

from loguru import logger

from trademl.errors import DataValidationError, TradeMLError

if TYPE_CHECKING:
    from trademl.api import backtest as run_backtest
    from trademl.api import build_features, load_model, read_candles, train, tune

# A library stays quiet until its application (the CLI, a script) turns its logs on.
logger.disable("trademl")

__version__ = "0.1.0"

# Name here → name in trademl.api.
_API = {
    "build_features": "build_features",
    "load_model": "load_model",
    "read_candles": "read_candles",
    "run_backtest": "backtest",
    "train": "train",
    "tune": "tune",
}

__all__ = [
    "DataValidationError",
    "TradeMLError",
    "__version__",
    "build_features",
    "load_model",
    "read_candles",
    "run_backtest",
    "train",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from trademl import api

        return getattr(api, _API[name])
    raise AttributeError(f"module 'trademl' has no attribute {name!r}")
