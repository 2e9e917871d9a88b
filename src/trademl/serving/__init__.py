"""The HTTP and WebSocket API: predictions, signals, indicators, backtests and training jobs,
and the model registry, over FastAPI.

>>> from trademl.serving import create_app
>>> app = create_app()  # doctest: +SKIP
"""

from trademl.serving.app import create_app
from trademl.serving.host import ModelHost, Served

__all__ = ["ModelHost", "Served", "create_app"]
