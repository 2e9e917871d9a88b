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
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="stderr logs as text lines, or one JSON object a line (time, level, "
        "message, logger, function, line, exception) for log collectors.",
    )
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
    http_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request.")
    http_retries: int = Field(default=3, ge=0, description="Retries of a failed network request.")
    jobs_url: str | None = Field(
        default=None,
        description="Job store: a SQLAlchemy URL (sqlite:///path, postgresql://...) shared by "
        "the API and every worker; default SQLite under home.",
    )
    jobs_workers: int = Field(
        default=1, ge=1, description="Threads of the in-process job pool (no broker set)."
    )
    prediction_log: bool = Field(
        default=True,
        description="Log every served prediction before it is answered (the monitoring input).",
    )
    prediction_log_url: str | None = Field(
        default=None,
        description="Prediction log database (a SQLAlchemy URL); default the job store's.",
    )
    prediction_log_mode: Literal["journal", "commit"] = Field(
        default="journal",
        description="journal: each answer is appended to a local file before it is sent and "
        "moved into the tables within a second (a few microseconds a request); "
        "commit: each answer waits for the database commit holding it (group commits).",
    )
    monitoring_cache_s: float = Field(
        default=60.0,
        ge=0,
        description="Seconds the server answers GET /api/v1/models/{name}/monitoring from the "
        "report it computed last for the same query (a report reads a whole window; 0 "
        "computes every request).",
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
    mlflow_experiment_training: str = Field(
        default="model_training", description="MLflow experiment of training runs."
    )
    mlflow_experiment_backtests: str = Field(
        default="backtests", description="MLflow experiment of backtest runs."
    )
    mlflow_experiment_retraining: str = Field(
        default="auto_retraining", description="MLflow experiment of retraining cycles."
    )
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
    serve_port: int = Field(default=8000, ge=1, le=65535, description="Port `trademl serve` binds.")
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
    trade_journal_url: str | None = Field(
        default=None,
        description="Trade journal database (a SQLAlchemy URL, postgresql://... at scale); "
        "default SQLite under home/trading/journal.sqlite.",
    )
    trade_fee_bps: float = Field(
        default=10.0, ge=0, lt=10_000, description="Fee per fill (paper fills, loop sizing)."
    )
    trade_slippage_bps: float = Field(
        default=5.0,
        ge=0,
        lt=10_000,
        description="Adverse slippage of every fill (paper fills, the loop's expected entry).",
    )
    trade_risk_per_trade: float = Field(
        default=0.01, gt=0, le=1, description="Equity fraction lost at a trade's stop."
    )
    trade_target_first: bool = Field(
        default=False, description="A bar touching stop and target fills the target first."
    )
    trade_max_position: float | None = Field(
        default=None, gt=0, description="Largest entry notional (quote asset); none by default."
    )
    trade_max_daily_loss: float | None = Field(
        default=None,
        gt=0,
        description="Realised loss (quote asset) in one UTC day beyond which no entry is made.",
    )
    trade_max_orders_per_minute: int | None = Field(
        default=30, ge=1, description="Orders one loop may send in a minute (entries refused)."
    )
    trade_poll_s: float = Field(
        default=5.0, gt=0, description="How often the live loop looks for a new closed bar."
    )
    paper_url: str | None = Field(
        default=None,
        description="The paper broker's database; default SQLite under home/trading/paper.sqlite.",
    )
    paper_initial_cash: float = Field(
        default=100_000.0, gt=0, description="Quote-asset cash of a new paper account."
    )
    paper_quote_asset: str = Field(default="USDT", description="The paper account's cash asset.")
    dex_rpc_url: str | None = Field(
        default=None, description="The DEX broker's EVM JSON-RPC endpoint (http(s)://)."
    )
    dex_private_key: SecretStr | None = Field(
        default=None,
        description="The DEX broker's account key (hex); never logged or returned.",
    )
    dex_router: str | None = Field(
        default=None, description="Address of the Uniswap-v2-style router the DEX broker uses."
    )
    dex_markets: dict[str, tuple[str, str]] = Field(
        default_factory=dict,
        description='Symbol to (base token, quote token) addresses, as JSON: {"BTCUSDT": '
        '["0x...", "0x..."]}.',
    )
    dex_slippage_bps: float = Field(
        default=50.0,
        ge=0,
        lt=10_000,
        description="Worst fill a DEX swap accepts, in bps off its quote (else it reverts).",
    )
    dex_deadline_s: int = Field(
        default=120, gt=0, description="A DEX swap not mined this long after its quote reverts."
    )
    dex_receipt_timeout_s: float = Field(
        default=120.0,
        ge=0,
        description="How long a DEX submit waits for its receipt before answering 'new'.",
    )
    dex_orders_path: Path | None = Field(
        default=None,
        description="SQLite file of the DEX broker's client id -> transaction map; default "
        "home/trading/dex_orders.sqlite.",
    )
    dex_allow_mainnet: bool = Field(
        default=False,
        description="Let the DEX broker trade on a known mainnet chain id (refused otherwise).",
    )
    exchange_api_key: SecretStr | None = Field(
        default=None, description="API key of the ccxt:<exchange> broker; never logged or returned."
    )
    exchange_api_secret: SecretStr | None = Field(
        default=None, description="API secret of the ccxt:<exchange> broker (signs requests)."
    )
    exchange_api_password: SecretStr | None = Field(
        default=None, description="API passphrase, for exchanges that have one (OKX, KuCoin)."
    )
    exchange_api_url: str | None = Field(
        default=None,
        description="Point the ccxt:<exchange> broker at another API root (a local server, a "
        "testnet proxy), keeping ccxt's paths; live hosts still need exchange_allow_live.",
    )
    exchange_sandbox: bool = Field(
        default=True,
        description="Trade on the exchange's sandbox/testnet (ccxt's sandbox URLs); an exchange "
        "without one is refused unless exchange_api_url names an endpoint.",
    )
    exchange_allow_live: bool = Field(
        default=False,
        description="Let the ccxt:<exchange> broker send orders to live endpoints (real money).",
    )
    exchange_recv_window_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Oldest a signed order request the exchange still executes (Binance's "
        "recvWindow); after a timeout the broker waits this long before it treats an order it "
        "cannot find as never received and sends it again.",
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
    """Which stored candles to use: one symbol, or a panel of symbols at one timeframe.

    Give exactly one of ``symbol``, ``symbols`` (a list; an entry may be a mapping with its own
    ``timeframe``, which must be the section's) or ``universe`` (a text file of symbols, one a
    line, ``#`` comments; or a YAML list), read when the run starts under the same path policy
    as the other config paths. A panel trains one model over every symbol's rows.
    """

    symbol: str | None = None
    symbols: tuple[str, ...] | None = None
    universe: str | None = None
    timeframe: str
    start: str | None = None
    end: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _panel_members(cls, data: Any) -> Any:
        # Mapping entries name their timeframe: a panel serves one timeframe, so each must be
        # the section's (a mixed panel is refused here, naming the symbol).
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list | tuple):
            return data
        from trademl.data.timeframes import Timeframe

        timeframe = data.get("timeframe")
        names: list[Any] = []
        for position, entry in enumerate(data["symbols"]):
            if not isinstance(entry, dict):
                names.append(entry)
                continue
            unknown = sorted(set(entry) - {"symbol", "timeframe"})
            if unknown or "symbol" not in entry:
                raise ValueError(
                    f"symbols.{position}: an entry is a symbol or a mapping with 'symbol' and "
                    f"'timeframe', got {entry!r}"
                )
            own = entry.get("timeframe")
            if (
                own is not None
                and isinstance(timeframe, str)
                and Timeframe.parse(str(own)).name != Timeframe.parse(timeframe).name
            ):
                raise ValueError(
                    f"symbols.{position}: {entry['symbol']} is at timeframe {own}, the panel "
                    f"at {timeframe}; one model serves one timeframe, so a panel's symbols "
                    "must share it"
                )
            names.append(entry["symbol"])
        return {**data, "symbols": names}

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        given = [k for k in ("symbol", "symbols", "universe") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of symbol, symbols or universe, got "
                + (", ".join(given) if given else "none")
            )
        if self.symbols is not None:
            if not self.symbols:
                raise ValueError("symbols: a panel needs at least one symbol")
            seen: set[str] = set()
            for position, name in enumerate(self.symbols):
                if not name.strip():
                    raise ValueError(f"symbols.{position}: an empty symbol")
                if name in seen:
                    raise ValueError(f"symbols.{position}: {name} is listed twice")
                seen.add(name)
        return self

    @property
    def panel(self) -> bool:
        """Whether the run trains one model over several symbols (``symbols`` or ``universe``)."""
        return self.symbol is None

    @property
    def members(self) -> tuple[str, ...]:
        """The symbols trained on, in config order (empty for an unread universe file)."""
        if self.symbol is not None:
            return (self.symbol,)
        return self.symbols or ()

    @property
    def label(self) -> str:
        """How names and titles call the data: the symbol, or ``panel{n}`` for a panel."""
        if self.symbol is not None:
            return self.symbol
        return f"panel{len(self.members)}" if self.members else "universe"


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
    """Intervals and calibration, fitted inside each training fold.

    ``intervals``: ``normalized`` (the default) is split conformal on residuals divided by
    trailing realised volatility (the HAR columns of the horizon), wherever a model reads those
    columns (residual models and the baselines of max-high/min-low); elsewhere it falls back to
    ``conformal`` (plain absolute residuals). ``cqr`` conformalises quantile boosters; ``none``
    gives no intervals. ``adaptive`` moves each model's quantile level along the out-of-sample
    rows with adaptive conformal inference (step ``adaptive_rate``), using only labels that had
    matured; the served model starts from the level its path ended at. ``coverage_window``:
    rows of the rolling coverage written beside the predictions.
    """

    alpha: float = Field(default=0.1, gt=0.0, lt=1.0)
    intervals: Literal["normalized", "conformal", "cqr", "none"] = "normalized"
    calibration: Literal["isotonic", "sigmoid", "none"] = "sigmoid"
    calibration_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    adaptive: bool = True
    adaptive_rate: float = Field(default=0.005, gt=0.0, lt=1.0)
    coverage_window: int = Field(default=500, ge=10)


class GateSection(_Strict):
    """The promotion gate: a statistical test, per served target, on out-of-sample rows.

    Every target the pipeline serves (direction, max high, min low at each horizon) is served
    by the primary model (the first of ``models``) only where its loss is lower than every
    naive baseline's in a one-sided Diebold–Mariano test (Newey–West variance, lag at least
    the horizon) at ``level``; elsewhere by the best baseline. A version passes the gate when,
    on every gated target, what it serves is not significantly worse than any baseline, at
    least one gated target is served by a learned model, the intervals of the served max-high /
    min-low forecasts cover within ``coverage_tolerance`` of nominal, and, against a champion,
    no gated target is significantly worse and at least one is significantly better (on their
    common rows, at least ``min_rows`` of them).

    ``targets``: the gated targets as ``kind@horizon`` (``min_low@intraday``, ``direction@6``)
    or ``kind`` (every horizon); None gates every served target. The losses are log loss for
    direction and squared error for ranges; ``metric`` only chooses the score reported beside
    them. ``margin``: a loss improvement the test must show beyond zero. The older ``target`` /
    ``horizon`` keys, when given without ``targets``, name the one gated target.
    """

    level: float = Field(default=0.05, gt=0.0, lt=1.0)
    targets: tuple[str, ...] | None = None
    metric: str = "log_loss"
    target: Literal["direction", "max_high", "min_low", "forward_return"] | None = None
    horizon: str | int | None = None
    margin: float = Field(default=0.0, ge=0.0)
    coverage_tolerance: float = Field(default=0.05, ge=0.0, le=1.0)
    min_rows: int = Field(default=100, ge=1)

    @field_validator("targets")
    @classmethod
    def _target_entries(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        served = ("direction", "max_high", "min_low")
        bad = [
            entry
            for entry in value
            if entry.partition("@")[0] not in served
            or ("@" in entry and not entry.partition("@")[2].strip())
        ]
        if bad:
            raise ValueError(
                f"targets {', '.join(repr(b) for b in bad)}: expected 'kind@horizon' or 'kind' "
                f"with kind one of {', '.join(served)} (the targets the pipeline serves)"
            )
        if not value:
            raise ValueError("targets: give at least one, or leave it out to gate every target")
        return value

    @property
    def requested(self) -> tuple[str, ...] | None:
        """The gated targets as written, or as the older ``target``/``horizon`` keys say."""
        if self.targets is not None:
            return self.targets
        if self.target is None:
            return None
        return (self.target if self.horizon is None else f"{self.target}@{self.horizon}",)


class RegistrySection(_Strict):
    """Registration of the trained pipeline model in the MLflow model registry."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    enabled: bool = Field(default=True, description="Register the pipeline model.")
    gate: GateSection = Field(default_factory=GateSection)


class TuningSection(_Strict):
    """How ``trademl tune`` searches this config, so a tuning run is reproducible from its YAML.

    Command-line options and :func:`trademl.tuning.tune` arguments override these. Where the
    study is stored is not part of it (a deployment choice: ``--storage`` or
    ``TRADEML_OPTUNA_STORAGE``), so a config never names a database.
    """

    trials: int | None = Field(default=None, ge=1, description="Trials a tuning call runs.")
    time_limit: float | None = Field(
        default=None, ge=0, description="Wall-time budget of a tuning call, in seconds."
    )
    target: str | None = Field(
        default=None, description="Label kind to tune, or kind:horizon (default the first)."
    )
    automl: bool = Field(default=False, description="Search model kinds too, then stack.")
    kinds: tuple[str, ...] | None = Field(
        default=None, description="The kinds AutoML searches (default every tunable kind)."
    )
    n_jobs: int = Field(default=1, ge=1, description="Trials at once (threads).")
    study_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]+$")


class RetrainingSection(_Strict):
    """When a served model is retrained: on a schedule, on a performance alarm, on drift.

    Each trigger starts one cycle: a challenger is trained with the champion's config on the
    data before the recent window, scored beside the champion on that window's mature labels,
    and promoted only through the statistical gate. Drift alone never promotes anything.
    """

    schedule: str | None = Field(
        default=None, description="Cron string (UTC) of scheduled retrains; None: none."
    )
    on_alarm: bool = Field(default=True, description="Retrain when a performance alarm fires.")
    on_drift: bool = Field(default=False, description="Retrain when features drift.")
    train_bars: int | None = Field(
        default=None,
        ge=200,
        description="Bars the challenger trains on (the latest before the window); None: all.",
    )
    rollback_bars: int | None = Field(
        default=None,
        ge=1,
        description="Roll back a promotion when an alarm fires within this many bars of it.",
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from trademl.monitoring.schedule import parse_cron  # Celery loads only when used

            try:
                parse_cron(value, setting="schedule")
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return value


class MonitoringSection(_Strict):
    """How the served model is watched (see :mod:`trademl.monitoring`)."""

    enabled: bool = Field(default=True, description="Save monitoring reference statistics.")
    arl0: int = Field(
        default=2000, ge=50, description="Bars between false alarms the CUSUM is calibrated to."
    )
    window: int = Field(default=500, ge=20, description="Recent bars a report looks at.")
    min_mature: int = Field(
        default=100, ge=10, description="Fewest mature labels a report or a retrain needs."
    )
    coverage_window: int = Field(default=250, ge=20, description="Labels of rolling coverage.")
    coverage_level: float = Field(
        default=0.001, gt=0.0, lt=0.5, description="Per-check level of the coverage alarm."
    )
    drift_alpha: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="False discovery rate of the drift table."
    )
    retraining: RetrainingSection = Field(default_factory=RetrainingSection)


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
    tuning: TuningSection = Field(default_factory=TuningSection)
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)

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
