"""HTTP for network sources: retries with back-off, atomic downloads, progress bars."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from loguru import logger

from trademl.config import Settings
from trademl.errors import SourceError
from trademl.progress import progress_bar
from trademl.redact import redact

_RETRY_STATUS = {429, 500, 502, 503, 504}


class HttpNotFoundError(SourceError):
    """The server answered 404: the requested file or range does not exist."""


class HttpClient:
    """A small synchronous HTTP client shared by the network sources."""

    def __init__(self, settings: Settings, *, headers: dict[str, str] | None = None) -> None:
        self.retries = settings.http_retries
        self._client = httpx.Client(
            timeout=settings.http_timeout_s,
            follow_redirects=True,
            headers={"User-Agent": "trademl", **(headers or {})},
        )

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def _request(self, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                response = self._client.get(url, params=params)
            except httpx.TransportError as error:
                if attempt == self.retries:
                    raise SourceError(
                        f"GET {_redact(url)} failed: {_redact(str(error))}"
                    ) from error
            else:
                if response.status_code == 404:
                    raise HttpNotFoundError(f"GET {_redact(url)}: 404 not found")
                if response.status_code not in _RETRY_STATUS or attempt == self.retries:
                    if response.is_error:
                        raise SourceError(
                            f"GET {_redact(url)}: HTTP {response.status_code} {response.text[:200]!r}"
                        )
                    return response
                retry_after = response.headers.get("Retry-After")
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            logger.debug("retrying {} in {:.1f}s", _redact(url), delay)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``url`` and decode its JSON body."""
        response = self._request(url, params)
        try:
            return response.json()
        except ValueError as error:
            raise SourceError(f"GET {_redact(url)}: the body is not JSON") from error

    def get_text(self, url: str) -> str:
        """GET ``url`` as text."""
        return self._request(url).text

    def download(self, url: str, destination: Path, *, sha256: str | None = None) -> Path:
        """Stream ``url`` to ``destination`` atomically; verify ``sha256`` when given.

        The file appears under its final name only once complete and verified, so a crash or a
        bad checksum never leaves a partial file in the cache.
        """
        destination.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(self.retries + 1):
            try:
                return self._download_once(url, destination, sha256)
            except httpx.TransportError as error:
                if attempt == self.retries:
                    raise SourceError(
                        f"download {_redact(url)} failed: {_redact(str(error))}"
                    ) from error
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def _download_once(self, url: str, destination: Path, sha256: str | None) -> Path:
        digest = hashlib.sha256()
        handle, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=".part-")
        try:
            with os.fdopen(handle, "wb") as out, self._client.stream("GET", url) as response:
                if response.status_code == 404:
                    raise HttpNotFoundError(f"GET {_redact(url)}: 404 not found")
                if response.is_error:
                    raise SourceError(f"GET {_redact(url)}: HTTP {response.status_code}")
                total = int(response.headers.get("Content-Length", 0)) or None
                with progress_bar(destination.name, total, unit="bytes") as advance:
                    for chunk in response.iter_bytes(1 << 16):
                        out.write(chunk)
                        digest.update(chunk)
                        advance(len(chunk))
            if sha256 is not None and digest.hexdigest() != sha256.lower():
                from trademl.errors import ChecksumError

                raise ChecksumError(
                    f"{destination.name}: SHA-256 {digest.hexdigest()} does not match the "
                    f"published checksum {sha256.lower()} ({_redact(url)})"
                )
            os.replace(temp_name, destination)
            return destination
        finally:
            if os.path.exists(temp_name):
                os.unlink(temp_name)


def _redact(url: str) -> str:
    """Hide API keys and passwords in URLs (and error texts) that end up in messages."""
    return redact(url)
