"""loguru set-up: logs go to stderr so that data written to stdout can be piped."""

from __future__ import annotations

import json
import sys
import traceback
from typing import TYPE_CHECKING, Any

from loguru import logger

from trademl.redact import install_log_redaction, redact

if TYPE_CHECKING:
    from loguru import Message

_FORMAT = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}"


def _to_stderr(message: object) -> None:
    # The formatted line, traceback included: an exception's text may hold a URL.
    sys.stderr.write(redact(str(message)))


def _json_to_stderr(message: Message) -> None:
    # One object a line, keys fixed (README: JSON logs); the text redacted as the lines are.
    record = message.record
    payload: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "logger": record["name"],
        "function": record["function"],
        "line": record["line"],
    }
    if record["exception"] is not None:
        error = record["exception"]
        payload["exception"] = "".join(
            traceback.format_exception(error.type, error.value, error.traceback)
        )
    sys.stderr.write(redact(json.dumps(payload, default=str)) + "\n")


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Send trademl's logs to stderr at ``level`` (idempotent).

    Parameters
    ----------
    level : str
        The lowest level written (``DEBUG``, ``INFO``...).
    log_format : str
        ``text``: a short coloured line per message; ``json``: one JSON object a line with
        the keys ``time, level, message, logger, function, line`` (and ``exception``).
    """
    logger.remove()
    logger.enable("trademl")
    install_log_redaction()
    # Resolve sys.stderr at each message: a test harness (or a notebook) may swap the stream
    # after logging was configured.
    if log_format == "json":
        logger.add(_json_to_stderr, level=level, format="{message}", diagnose=False)
        return
    logger.add(
        _to_stderr,
        level=level,
        format=_FORMAT,
        colorize=sys.stderr.isatty(),
        # Variable values in tracebacks would print settings, URLs and keys.
        diagnose=False,
    )


__all__ = ["configure_logging", "logger"]
