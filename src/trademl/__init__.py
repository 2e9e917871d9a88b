"""trademl: an ML engine for trading — honest, causal, reproducible models from OHLCV candles."""

from trademl.errors import DataValidationError, TradeMLError

__version__ = "0.1.0"

__all__ = ["DataValidationError", "TradeMLError", "__version__"]
