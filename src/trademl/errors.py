"""The one exception family of trademl.

Every error a user can cause is a :class:`TradeMLError` whose message names the argument,
the value received and what was expected. The CLI prints these without a traceback and exits
non-zero; the API maps them to 4xx responses.
"""

from __future__ import annotations


class TradeMLError(Exception):
    """Base class of every error trademl raises on purpose."""

    exit_code: int = 1


class ConfigError(TradeMLError):
    """A setting, a run config or a command-line option is invalid."""

    exit_code = 2


class DataValidationError(TradeMLError):
    """Candles break the contract: missing column, bad value, unsorted or duplicate timestamp.

    Parameters
    ----------
    message:
        What rule was broken and by what value.
    source:
        The file or object the data came from, when known.
    row:
        The 1-based data row (in the source file, header excluded) where the rule broke.
    rule:
        A short machine-readable name of the rule (``ohlc_consistency``, ``not_numeric``...).
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        rule: str | None = None,
    ) -> None:
        self.source = source
        self.row = row
        self.rule = rule
        self.detail = message
        parts = []
        if source:
            parts.append(str(source))
        if row is not None:
            parts.append(f"row {row}")
        if rule:
            parts.append(f"[{rule}]")
        prefix = " ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def with_source(self, source: str) -> DataValidationError:
        """Return the same error with ``source`` filled in (when it was unknown)."""
        if self.source:
            return self
        return DataValidationError(self.detail, source=source, row=self.row, rule=self.rule)


class UnknownTimeframeError(ConfigError):
    """A timeframe string that trademl cannot parse."""


class UnknownPluginError(ConfigError):
    """A plug-in name (source, store, indicator, model...) that is not registered."""


class SourceError(TradeMLError):
    """A data source failed: network error, bad response, checksum mismatch."""

    exit_code = 4


class ChecksumError(SourceError):
    """A downloaded file does not match its published checksum."""


class StoreError(TradeMLError):
    """A market store cannot be reached or refused a write."""

    exit_code = 5


class NotFoundError(TradeMLError):
    """A requested object (symbol, timeframe, model...) does not exist."""

    exit_code = 6


class ModelNotFoundError(NotFoundError):
    """A model name or version that the registry does not hold."""


class JobNotFoundError(NotFoundError):
    """A background job id that the job store does not hold."""


class JobStateError(TradeMLError):
    """A job cannot do what was asked in its current state (retry a succeeded job...)."""

    exit_code = 9


class JobQueueError(TradeMLError):
    """The job queue cannot accept work: its broker or its job store is unreachable."""

    exit_code = 10


class LimitExceededError(TradeMLError):
    """A bound on resources was reached (queued jobs of a kind...): try again later."""

    exit_code = 11


class ModelFormatError(ConfigError):
    """A saved model cannot be used as it is: another feature contract, or not the file its run
    recorded."""


class MissingExtraError(ConfigError):
    """A feature needs an optional dependency (an extra of the package) that is not installed."""


class TrackingError(TradeMLError):
    """The MLflow tracking backend cannot be reached or refused a request."""

    exit_code = 7


class PromotionRefusedError(TradeMLError):
    """A model version failed the promotion gate; the message carries the failing numbers."""

    exit_code = 8


class TradingError(TradeMLError):
    """A venue or the live loop could not do what was asked."""


class OrderRejectedError(TradingError):
    """The venue refused an order (insufficient balance, a filter, a reverted transaction);
    nothing was placed."""


class VenueUnavailableError(TradingError):
    """The venue could not be reached or did not answer in time: an order sent may or may not
    exist, so look it up by client id before sending it again."""


class RiskLimitError(TradingError):
    """A risk limit (position, daily loss, order rate, the kill switch) stopped an order."""
