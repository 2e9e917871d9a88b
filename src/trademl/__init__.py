"""trademl: an ML engine for trading — honest, causal, reproducible models from OHLCV candles.

The Python API (:mod:`trademl.api`) is imported on first use, so ``import trademl`` stays
fast:

>>> import trademl
>>> sorted(name for name in trademl.__all__ if name[0].islower())
['backtest', 'build_features', 'load_model', 'read_candles', 'train', 'tune']
"""

from typing import TYPE_CHECKING, Any

from loguru import logger

from trademl.errors import DataValidationError, TradeMLError

if TYPE_CHECKING:
    from trademl.api import backtest, build_features, load_model, read_candles, train, tune

# A library stays quiet until its application (the CLI, a script) turns its logs on.
logger.disable("trademl")

__version__ = "0.1.0"

_API = ("backtest", "build_features", "load_model", "read_candles", "train", "tune")

__all__ = [
    "DataValidationError",
    "TradeMLError",
    "__version__",
    "backtest",
    "build_features",
    "load_model",
    "read_candles",
    "train",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from trademl import api

        return getattr(api, name)
    raise AttributeError(f"module 'trademl' has no attribute {name!r}")
