"""loguru set-up: logs go to stderr so that data written to stdout can be piped."""

from __future__ import annotations

import sys

from loguru import logger

from trademl.redact import install_log_redaction, redact

_FORMAT = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}"


def _to_stderr(message: object) -> None:
    # The formatted line, traceback included: an exception's text may hold a URL.
    sys.stderr.write(redact(str(message)))


def configure_logging(level: str = "INFO") -> None:
    """Send trademl's logs to stderr at ``level`` (idempotent)."""
    logger.remove()
    logger.enable("trademl")
    install_log_redaction()
    # Resolve sys.stderr at each message: a test harness (or a notebook) may swap the stream
    # after logging was configured.
    logger.add(
        _to_stderr,
        level=level,
        format=_FORMAT,
        colorize=sys.stderr.isatty(),
        # Variable values in tracebacks would print settings, URLs and keys.
        diagnose=False,
    )


__all__ = ["configure_logging", "logger"]
