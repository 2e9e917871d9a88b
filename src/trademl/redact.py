"""The one redaction helper: every message, error and log line that can hold a URL or a key
goes through :func:`redact` before it leaves the process (API bodies, job errors, logs).

Two layers, because either alone misses something: URLs found in the text lose their
password and their key-like query parameters (a URL built anywhere, by us or by a library's
error), and the secret values this installation knows of (the API key, source keys, the
passwords of every configured URL) are masked wherever they appear, URL or not.

>>> redact("cannot reach postgresql://tm:s3cr3t@db:5432/jobs: timeout")
'cannot reach postgresql://tm:***@db:5432/jobs: timeout'
>>> redact("GET https://api.polygon.io/v2/aggs?apiKey=abc&limit=5")
'GET https://api.polygon.io/v2/aggs?apiKey=***&limit=5'
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

MASK = "***"

# scheme://[userinfo@]rest, up to whitespace, a quote or a closing bracket.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s'\"<>)\]}]+)")
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[^=&#\s]*?(?:key|token|secret|password|passwd|pwd|signature|auth)"
    r"[^=&#\s]*)=)(?P<value>[^&#\s'\"]*)",
    re.IGNORECASE,
)
# The shortest value worth masking everywhere: masking "a" would garble every message.
_MIN_SECRET_CHARS = 6

_known: set[str] = set()
_known_lock = threading.Lock()


def redact_url(url: str) -> str:
    """``url`` with its password and key-like query parameters masked.

    >>> redact_url("amqp://guest:guest@localhost:5672//")
    'amqp://guest:***@localhost:5672//'
    >>> redact_url("redis://:pw@localhost:6379/0")
    'redis://:***@localhost:6379/0'
    """
    return redact(url, known=False)


def _mask_url(match: re.Match[str]) -> str:
    scheme, rest = match.group("scheme"), match.group("rest")
    authority_end = len(rest)
    for stop in "/?#":
        where = rest.find(stop)
        if where != -1:
            authority_end = min(authority_end, where)
    authority, tail = rest[:authority_end], rest[authority_end:]
    if "@" in authority:
        credentials, host = authority.rsplit("@", 1)
        if ":" in credentials:
            user = credentials.split(":", 1)[0]
            authority = f"{user}:{MASK}@{host}"
    tail = _SECRET_PARAM.sub(lambda m: m.group("name") + MASK, tail)
    return scheme + authority + tail


def redact(text: Any, *secrets: str | None, known: bool = True) -> str:
    """``text`` (made a string) with URL passwords, key-like URL parameters, ``secrets`` and
    (with ``known``) every registered secret masked as ``***``."""
    result = _URL.sub(_mask_url, str(text))
    values = [s for s in secrets if s]
    if known:
        with _known_lock:
            values.extend(_known)
    # Longest first: a secret containing another is masked whole.
    for value in sorted(set(values), key=len, reverse=True):
        if len(value) >= _MIN_SECRET_CHARS:
            result = result.replace(value, MASK)
    return result


def register_secrets(keys: Iterable[str | None] = (), urls: Iterable[str | None] = ()) -> None:
    """Mask these ``keys`` and the passwords of these ``urls`` in everything :func:`redact`
    sees from now on in this process (a URL without a password registers nothing)."""
    found = {key for key in keys if key}
    for url in urls:
        password = url_password(url) if url else None
        if password:
            found.add(password)
            found.add(unquote(password))
    with _known_lock:
        _known.update(v for v in found if len(v) >= _MIN_SECRET_CHARS)
    install_log_redaction()


def url_password(url: str) -> str | None:
    """The password in ``url``'s user information, if any."""
    match = _URL.match(url.strip())
    if match is None:
        return None
    authority = re.split(r"[/?#]", match.group("rest"), maxsplit=1)[0]
    if "@" not in authority:
        return None
    credentials = authority.rsplit("@", 1)[0]
    if ":" not in credentials:
        return None
    return credentials.split(":", 1)[1] or None


def register_settings(settings: Any) -> None:
    """Register every secret a :class:`~trademl.config.Settings` holds: the API key, source
    keys, and the passwords of the store, job store, broker, MLflow, Optuna, trade journal,
    paper account, DEX node and exchange URLs."""
    keys: list[str | None] = []
    for name in (
        "api_key",
        "polygon_api_key",
        "dex_private_key",
        "exchange_api_key",
        "exchange_api_secret",
        "exchange_api_password",
    ):
        secret = getattr(settings, name, None)
        if secret is not None:
            value = secret.get_secret_value()
            # A hex key is masked with and without its 0x prefix.
            keys.extend((value, value.removeprefix("0x"), "0x" + value.removeprefix("0x")))
    urls = [
        getattr(settings, name, None)
        for name in (
            "store_url",
            "jobs_url",
            "celery_broker_url",
            "mlflow_tracking_uri",
            "mlflow_artifact_root",
            "optuna_storage",
            "dex_rpc_url",
            "exchange_api_url",
            "trade_journal_url",
            "paper_url",
        )
    ]
    register_secrets(keys, urls)


def redact_record(record: Any) -> None:
    """A loguru patcher: the record's message redacted (for every sink, however it formats)."""
    record["message"] = redact(record["message"])


_installed = False


def install_log_redaction() -> None:
    """Redact every log message of this process (idempotent): loguru records through a
    patcher, standard ``logging`` records (uvicorn, Celery, MLflow, SQLAlchemy) through the
    record factory, so that no sink or handler, ours or a test's, sees a secret."""
    global _installed
    with _known_lock:
        if _installed:
            return
        _installed = True
    from loguru import logger

    logger.configure(patcher=redact_record)
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
