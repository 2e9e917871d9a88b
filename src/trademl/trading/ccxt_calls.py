"""Calling a venue through ccxt: rate limits waited out, reads retried, orders never doubled.

A 429 (or 418) means the venue did not take the request: the ``Retry-After`` it asks for is
waited out and the request sent again. A read that fails on the network is retried. An order
request that fails on the network may or may not have been taken: :meth:`VenueCalls.send`
looks it up before anything else, and sends it again only once the venue can no longer execute
the first (its recv window has passed) and still does not know it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from loguru import logger

from trademl.errors import ConfigError, OrderRejectedError, TradingError, VenueUnavailableError
from trademl.trading.ccxt_venue import venue_reason

T = TypeVar("T")


class _UnansweredError(Exception):
    """A request that may or may not have reached the venue."""


class VenueCalls:
    """The calls of one ccxt exchange object.

    Parameters
    ----------
    exchange:
        The ccxt exchange (keys set, rate limiter on).
    retries:
        Network failures a read survives, and order requests resent after no answer, before
        :class:`~trademl.errors.VenueUnavailableError`; also the 429s waited out in a row.
    retry_delay_s:
        First pause before retrying a read; it doubles on each retry.
    recv_window_s:
        How long after sending a request the venue may still execute it.
    max_rate_wait_s:
        Longest ``Retry-After`` waited out; a longer one is an error.
    """

    def __init__(
        self,
        exchange: Any,
        *,
        retries: int = 3,
        retry_delay_s: float = 0.5,
        recv_window_s: float = 5.0,
        max_rate_wait_s: float = 60.0,
    ) -> None:
        import ccxt

        self._ccxt = ccxt
        self.exchange = exchange
        self.name = f"ccxt:{exchange.id}"
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.recv_window_s = recv_window_s
        self.max_rate_wait_s = max_rate_wait_s

    def reason(self, error: Exception) -> str:
        """The venue's words in ``error``, with the keys masked."""
        exchange = self.exchange
        return venue_reason(error, exchange.apiKey, exchange.secret, exchange.password)

    def _retry_after(self, what: str, error: Exception, throttles: int) -> None:
        """Wait out a 429/418 as the venue asked (``Retry-After``), or give up."""
        headers = self.exchange.last_response_headers or {}
        asked = headers.get("Retry-After") or headers.get("retry-after")
        wait = float(asked) if asked and str(asked).isdigit() else self.retry_delay_s * throttles
        if throttles > self.retries + 1 or wait > self.max_rate_wait_s:
            raise VenueUnavailableError(
                f"{self.name}: {what}: rate limited by the venue (asked to wait {wait:g} s): "
                f"{self.reason(error)}"
            ) from error
        logger.warning("{}: {}: rate limited, waiting {:g} s as asked", self.name, what, wait)
        time.sleep(wait)

    def call(
        self,
        what: str,
        function: Callable[..., T],
        *args: Any,
        idempotent: bool = True,
        refusal: type[TradingError] = TradingError,
    ) -> T:
        """Call ccxt, waiting out rate limits, retrying network failures of idempotent calls
        (others raise :class:`_UnansweredError`) and mapping ccxt's errors to ours.

        ``OrderNotFound`` passes through for the caller to decide.
        """
        ccxt = self._ccxt
        failures = throttles = 0
        while True:
            try:
                return function(*args)
            except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as error:
                throttles += 1
                self._retry_after(what, error, throttles)
            except ccxt.NetworkError as error:
                if not idempotent:
                    raise _UnansweredError(self.reason(error)) from error
                failures += 1
                if failures > self.retries:
                    raise VenueUnavailableError(
                        f"{self.name}: {what}: no answer after {failures} attempt(s): "
                        f"{type(error).__name__}: {self.reason(error)}"
                    ) from error
                logger.debug("{}: {}: {}; retrying", self.name, what, type(error).__name__)
                time.sleep(self.retry_delay_s * 2 ** (failures - 1))
            except ccxt.OrderNotFound:
                raise
            except (ccxt.AuthenticationError, ccxt.PermissionDenied) as error:
                raise ConfigError(
                    f"{self.name}: {what}: the exchange refused the keys (exchange_api_key, "
                    f"exchange_api_secret): {self.reason(error)}"
                ) from error
            except ccxt.BadSymbol as error:
                raise ConfigError(f"{self.name}: {what}: {self.reason(error)}") from error
            except ccxt.BaseError as error:
                raise refusal(f"{self.name}: {what}: {self.reason(error)}") from error

    def send(self, what: str, send: Callable[[], T], find: Callable[[], T | None]) -> T:
        """Send a non-idempotent request; after an ambiguous failure, look before resending."""
        for attempt in range(self.retries + 1):
            sent_at = time.monotonic()
            try:
                return self.call(what, send, idempotent=False, refusal=OrderRejectedError)
            except _UnansweredError as error:
                logger.warning(
                    "{}: {}: no answer ({}); looking it up by client id", self.name, what, error
                )
            found = find()
            if found is None:
                # Still in flight? Past the recv window the venue refuses to execute it.
                time.sleep(max(0.0, sent_at + self.recv_window_s - time.monotonic()))
                found = find()
            if found is not None:
                return found
            logger.warning("{}: {}: never received; sending again ({})", self.name, what, attempt)
        raise VenueUnavailableError(
            f"{self.name}: {what}: no answer after {self.retries + 1} attempt(s); the order may "
            "still exist: look it up by its client id before sending it again"
        )
