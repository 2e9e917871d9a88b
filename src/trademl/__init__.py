"""trademl: an ML engine for trading — honest, causal, reproducible models from OHLCV candles."""

from loguru import logger

from trademl.errors import DataValidationError, TradeMLError

# A library stays quiet until its application (the CLI, a script) turns its logs on.
logger.disable("trademl")

__version__ = "0.1.0"

__all__ = ["DataValidationError", "TradeMLError", "__version__"]
