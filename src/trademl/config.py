"""Settings: every knob of trademl, overridable by ``TRADEML_*`` environment variables or a
``.env`` file in the working directory.

>>> Settings(home="/tmp/tm").market_store_url
'duckdb:////tmp/tm/market.duckdb'
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trademl.errors import ConfigError

DEFAULT_HOME = Path("~/.trademl")


class Settings(BaseSettings):
    """trademl settings (environment prefix ``TRADEML_``)."""

    model_config = SettingsConfigDict(
        env_prefix="TRADEML_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(default=DEFAULT_HOME, description="Where trademl keeps its state.")
    store_url: str | None = Field(
        default=None,
        description="Market store: a SQLAlchemy URL (postgresql://, mysql+pymysql://) or "
        "duckdb:///path; default DuckDB under home.",
    )
    test_data: Path = Field(
        default=Path("../shared/data"), description="Real market data for tests and demos."
    )
    log_level: str = Field(default="INFO", description="loguru level for stderr logs.")
    binance_data_url: str = Field(
        default="https://data.binance.vision",
        description="Root of the Binance public data archive.",
    )
    binance_market: str = Field(
        default="spot", description="Binance archive market: spot, futures/um, futures/cm."
    )
    polygon_url: str = Field(default="https://api.polygon.io", description="Polygon REST root.")
    polygon_api_key: SecretStr | None = Field(default=None, description="Polygon API key.")
    ccxt_api_url: str | None = Field(
        default=None, description="Override a ccxt exchange's API root (testing, proxies)."
    )
    yahoo_url: str | None = Field(
        default=None, description="Override Yahoo Finance's API root (testing)."
    )
    store_chunk_rows: int = Field(
        default=1_000_000, gt=0, description="Rows per statement inside one store transaction."
    )
    http_timeout_s: float = Field(default=30.0, gt=0)
    http_retries: int = Field(default=3, ge=0)

    @field_validator("home", "test_data", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        levels = {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}
        if value.upper() not in levels:
            raise ValueError(f"log level {value!r} is not one of {sorted(levels)}")
        return value.upper()

    @property
    def cache_dir(self) -> Path:
        """Downloaded files (source archives) are cached here."""
        return self.home / "cache"

    @property
    def market_store_url(self) -> str:
        """The store URL in effect (the DuckDB default under home when none is set)."""
        if self.store_url:
            return self.store_url
        return f"duckdb:///{(self.home / 'market.duckdb').as_posix()}"


@lru_cache(maxsize=1)
def _cached_settings() -> Settings:
    try:
        return Settings()
    except ValueError as error:  # pydantic ValidationError is a ValueError
        raise ConfigError(f"invalid TRADEML_* setting: {error}") from error


def get_settings() -> Settings:
    """The process-wide settings, read once from the environment and ``.env``."""
    return _cached_settings()


def reload_settings(**overrides: object) -> Settings:
    """Re-read settings (after the environment changed), applying ``overrides`` via env vars."""
    for key, value in overrides.items():
        os.environ[f"TRADEML_{key.upper()}"] = str(value)
    _cached_settings.cache_clear()
    return get_settings()
