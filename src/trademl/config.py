"""Settings: every knob of trademl, overridable by ``TRADEML_*`` environment variables or a
``.env`` file in the working directory.

>>> Settings(home="/tmp/tm").market_store_url
'duckdb:////tmp/tm/market.duckdb'
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from trademl.errors import ConfigError
from trademl.redact import register_settings

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
    optuna_storage: str | None = Field(
        default=None,
        description="Optuna storage of tuning studies: a database URL (postgresql://, "
        "sqlite:///path) shared by tuning workers; None keeps studies in memory. Give Optuna "
        "a database of its own (it keeps an alembic_version table, as MLflow does).",
    )
    http_timeout_s: float = Field(default=30.0, gt=0)
    http_retries: int = Field(default=3, ge=0)
    jobs_url: str | None = Field(
        default=None,
        description="Job store: a SQLAlchemy URL (sqlite:///path, postgresql://...) shared by "
        "the API and every worker; default SQLite under home.",
    )
    jobs_workers: int = Field(
        default=1, ge=1, description="Threads of the in-process job pool (no broker set)."
    )
    jobs_heartbeat_s: float = Field(
        default=10.0,
        gt=0,
        description="How often a running job's heartbeat is written; a job silent for 6 "
        "heartbeats on another host counts as lost.",
    )
    jobs_max_attempts: int = Field(
        default=3, ge=1, description="Starts of one job (after lost workers) before it fails."
    )
    jobs_max_queued: int = Field(
        default=100, ge=1, description="Queued jobs of one kind beyond which a submit is a 429."
    )
    jobs_max_payload_bytes: int = Field(
        default=262_144, gt=0, description="Largest job payload, as JSON (else refused)."
    )
    backtest_max_grid: int = Field(
        default=256,
        ge=1,
        description="Most parameter combinations a backtest job's grid may hold (each is a "
        "backtest with its per-bar returns kept in memory).",
    )
    celery_broker_url: str | None = Field(
        default=None,
        description="Celery broker (redis://... or amqp://...): when set, jobs run on "
        "`trademl worker` processes instead of in-process.",
    )
    celery_queue: str = Field(default="trademl", description="Celery queue of trademl jobs.")
    celery_visibility_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="Redis broker: an unacknowledged job message is redelivered after this.",
    )
    tracking: bool = Field(
        default=True,
        description="Record every train, tune and backtest as an MLflow run and register the "
        "trained pipeline models (TRADEML_TRACKING=false turns it off).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow backend store: sqlite:///path, postgresql://..., or an http(s):// "
        "tracking server; default SQLite under home/mlflow.",
    )
    mlflow_artifact_root: str | None = Field(
        default=None,
        description="Where new experiments keep their artifacts; default home/mlflow/artifacts.",
    )
    mlflow_experiment_training: str = Field(default="model_training")
    mlflow_experiment_backtests: str = Field(default="backtests")
    mlflow_experiment_retraining: str = Field(default="auto_retraining")
    mlflow_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest wait for an unreachable tracking backend."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="The API key clients send as X-API-Key; without one, the API's mutating "
        "endpoints (train, backtest, jobs, promote, rollback) are refused.",
    )
    api_auth_all: bool = Field(
        default=False, description="Require the API key on every endpoint except /health."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed by CORS (comma-separated or a JSON list); none by default.",
    )
    max_body_bytes: int = Field(
        default=1_048_576, gt=0, description="Largest request body the API reads (else 413)."
    )
    serve_host: str = Field(default="127.0.0.1", description="Address `trademl serve` binds.")
    serve_port: int = Field(default=8000, ge=1, le=65535)
    serve_workers: int = Field(default=1, ge=1, description="uvicorn worker processes.")
    serve_aliases: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["champion"],
        description="Registry aliases whose versions the server loads, first found first "
        "(comma-separated or a JSON list). Loading a version unpickles it: only versions "
        "someone promoted are loaded.",
    )
    serve_latest_unpromoted: bool = Field(
        default=False,
        description="Also serve a model's latest version when it carries none of "
        "serve_aliases (development only: then any registered version runs in the server).",
    )
    model_reload_s: float = Field(
        default=5.0,
        ge=0,
        description="How often the server checks the registry for moved aliases (0: never).",
    )
    store_poll_s: float = Field(
        default=0.5,
        gt=0,
        description="How often the server looks for a new bar in the store (WebSocket streams "
        "and the cached latest prediction).",
    )
    ws_heartbeat_s: float = Field(default=15.0, gt=0, description="WebSocket heartbeat period.")
    ws_max_connections: int = Field(
        default=256,
        ge=1,
        description="Open WebSocket streams per server process; beyond it a new one is closed "
        "with code 1013 (try again later).",
    )
    ws_max_per_client: int = Field(
        default=8,
        ge=1,
        description="Open WebSocket streams per client address; beyond it a new one is closed "
        "with code 1008 (policy violation).",
    )

    @field_validator("home", "test_data", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _register_secrets(self) -> Settings:
        # Every key and URL password these settings hold is masked in messages and logs.
        register_settings(self)
        return self

    @field_validator("cors_origins", "serve_aliases", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

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

    @property
    def jobs_store_url(self) -> str:
        """The job store URL in effect (SQLite under home when none is set)."""
        if self.jobs_url:
            return self.jobs_url
        return f"sqlite:///{(self.home / 'jobs.sqlite').as_posix()}"

    @property
    def mlflow_uri(self) -> str:
        """The MLflow tracking URI in effect (SQLite under home when none is set)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow' / 'mlflow.db').as_posix()}"

    @property
    def mlflow_artifacts(self) -> str:
        """The artifact location given to experiments this installation creates."""
        if self.mlflow_artifact_root:
            return self.mlflow_artifact_root
        return (self.home / "mlflow" / "artifacts").as_posix()


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


# -- run configs (YAML) ------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(_Strict):
    """Which stored candles to use."""

    symbol: str
    timeframe: str
    start: str | None = None
    end: str | None = None


class LabelsSection(_Strict):
    """Which targets to predict, at which horizons (names or bar counts)."""

    kinds: tuple[Literal["direction", "max_high", "min_low", "forward_return"], ...] = (
        "direction",
        "max_high",
        "min_low",
    )
    horizons: tuple[str | int, ...] = ("intraday",)
    dead_zone: float = Field(default=0.0, ge=0.0)


class ModelSection(_Strict):
    """One model kind with its hyperparameters.

    ``residual`` fits the model on what the HAR volatility baseline leaves of the max-high and
    min-low targets (on by default for those; ``false`` learns them from zero).
    """

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None
    residual: bool = True


class ValidationSection(_Strict):
    """The splitter and its parameters."""

    kind: Literal["walk_forward", "purged_kfold", "cpcv"] = "walk_forward"
    params: dict[str, Any] = Field(default_factory=dict)

    def check(self) -> None:
        """Build the splitter once: unknown or missing parameters raise ConfigError."""
        from trademl.validation.splitters import make_splitter

        make_splitter(self.kind, dict(self.params), 1)


class UncertaintySection(_Strict):
    """Intervals and calibration, fitted inside each training fold."""

    alpha: float = Field(default=0.1, gt=0.0, lt=1.0)
    intervals: Literal["conformal", "cqr", "none"] = "conformal"
    calibration: Literal["isotonic", "sigmoid", "none"] = "sigmoid"
    calibration_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)


class GateSection(_Strict):
    """The promotion gate: what a model version must beat, out of sample, to become champion.

    The primary model (the first of ``models``) must beat every naive baseline of the run and
    the current champion, on their common out-of-sample rows, by ``margin`` in ``metric``
    (``log_loss``, ``brier``, ``accuracy``, ``balanced_accuracy``, ``roc_auc`` for
    ``direction``; ``r2``, ``mae``, ``rmse``, ``ic``, ``rank_ic`` for the other targets); and
    its max-high / min-low interval coverage must lie within ``coverage_tolerance`` of nominal.
    """

    metric: str = "log_loss"
    target: Literal["direction", "max_high", "min_low", "forward_return"] = "direction"
    horizon: str | int | None = None
    margin: float = Field(default=0.0, ge=0.0)
    coverage_tolerance: float = Field(default=0.05, ge=0.0, le=1.0)
    min_rows: int = Field(default=100, ge=1)


class RegistrySection(_Strict):
    """Registration of the trained pipeline model in the MLflow model registry."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    enabled: bool = Field(default=True, description="Register the pipeline model.")
    gate: GateSection = Field(default_factory=GateSection)


class RunConfig(_Strict):
    """A whole training run, as written in ``trademl train CONFIG.yaml``."""

    data: DataSection
    features: str = "standard"
    labels: LabelsSection = Field(default_factory=LabelsSection)
    models: tuple[ModelSection, ...] = Field(min_length=1)
    validation: ValidationSection = Field(default_factory=ValidationSection)
    uncertainty: UncertaintySection = Field(default_factory=UncertaintySection)
    output: str
    seed: int = 0
    registry: RegistrySection = Field(default_factory=RegistrySection)

    @model_validator(mode="after")
    def _splitter_parameters(self) -> RunConfig:
        # Unknown or missing splitter parameters fail when the config is read (an API submit
        # answers 422), not when a worker builds the splitter.
        try:
            self.validation.check()
        except ConfigError as error:
            raise ValueError(f"validation: {error}") from None
        return self


ConfigModel = TypeVar("ConfigModel", bound=BaseModel)


def load_config_file(
    source: str | Path | dict[str, Any], model: type[ConfigModel], description: str
) -> ConfigModel:
    """Read a YAML config (or take a mapping) and validate it as ``model``.

    Errors name the offending key's path and, for unknown keys, the valid keys there;
    ``description`` completes "a run config is a mapping with ...".
    """
    if isinstance(source, dict):
        data: Any = source
        where = "config"
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {description}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            location = ".".join(str(part) for part in item["loc"]) or "config"
            message = item["msg"].removeprefix("Value error, ")
            if not item["loc"] and ": " in message:
                # A whole-config check names its own section ("validation: ...").
                location, message = message.split(": ", 1)
            if item["type"] == "extra_forbidden":
                valid = ", ".join(_valid_keys(model, item["loc"]))
                message = f"unknown key; valid keys here: {valid}"
            problems.append(f"{location}: {message}")
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None


def load_run_config(source: str | Path | dict[str, Any]) -> RunConfig:
    """Read and validate a run config; errors name the offending key's path and the choices."""
    return load_config_file(
        source,
        RunConfig,
        "a run config is a mapping with data, features, labels, models, validation, output",
    )


def _valid_keys(root: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = root
    for part in location[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            break
        annotation = field.annotation
        candidates = [
            a
            for a in getattr(annotation, "__args__", (annotation,))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            break
        model = candidates[0]
    return list(model.model_fields)
