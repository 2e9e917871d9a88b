"""loguru set-up: logs go to stderr so that data written to stdout can be piped."""

from __future__ import annotations

import sys

from loguru import logger

_FORMAT = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}"


def configure_logging(level: str = "INFO") -> None:
    """Send trademl's logs to stderr at ``level`` (idempotent)."""
    logger.remove()
    logger.enable("trademl")
    logger.add(sys.stderr, level=level, format=_FORMAT, colorize=None)


__all__ = ["configure_logging", "logger"]
