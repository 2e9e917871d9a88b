"""Request and response bodies of the API (Pydantic v2, with examples for /docs).

Request bodies are strict (``ConfigDict(strict=True)``): ``false`` is not a number and ``"1"``
is not an integer; only timestamps accept ISO 8601 strings (or Unix seconds). Unknown keys are
refused, so a typo in a field name is a 422 rather than a silently ignored option.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from trademl.jobs.info import JobError, JobInfo

MAX_CANDLES = 20_000
MAX_BATCH = 100

_EXAMPLE_CANDLE: dict[str, Any] = {
    "timestamp": "2024-01-01T00:00:00Z",
    "open": 42283.58,
    "high": 42554.57,
    "low": 42261.02,
    "close": 42475.23,
    "volume": 1271.68,
}


_GAPPED = (
    "True when bars are missing inside the warm-up window the prediction was computed on: served "
    "(training computed its features over the same gapped rows), but flagged."
)
_MISSING_BARS = "How many bars the timeframe expects in that window and the data lacks."


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    """A model config showing ``examples`` in the JSON schema (and /docs); merged by Pydantic
    with the base's config, so a :class:`_Request` stays strict."""
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class Candle(_Request):
    """One OHLCV bar; ``timestamp`` is the bar's start (ISO 8601, UTC when no zone is given)."""

    model_config = _examples(_EXAMPLE_CANDLE)

    timestamp: Annotated[datetime, Field(strict=False)]
    open: float
    high: float
    low: float
    close: float
    volume: float


Symbol = Annotated[str, Field(min_length=1, max_length=64, examples=["BTCUSDT"])]
TimeframeName = Annotated[str, Field(min_length=1, max_length=16, examples=["1h"])]


class PredictRequest(_Request):
    """What to predict: a served symbol and timeframe, from stored or supplied candles."""

    model_config = _examples({"symbol": "BTCUSDT", "timeframe": "1h", "horizon": "all"})

    symbol: Symbol
    timeframe: TimeframeName
    horizon: str = Field(
        default="all", max_length=64, description="`all` or one of the model's named horizons."
    )
    candles: list[Candle] | None = Field(
        default=None,
        max_length=MAX_CANDLES,
        description="Candles to predict from, oldest first, at least the model's warm-up + 1; "
        "the prediction is for the last one. Without candles, the latest stored bars are used.",
    )
    model: str | None = Field(
        default=None,
        max_length=256,
        description="A registered model name, when several serve this symbol and timeframe.",
    )


class PredictBatchRequest(_Request):
    """Several predictions in one call (different symbols, timeframes or candle windows)."""

    items: list[PredictRequest] = Field(min_length=1, max_length=MAX_BATCH)


class Interval(BaseModel):
    """A prediction interval (prices) at the model's ``alpha``."""

    lower: float | None
    upper: float | None


class HorizonPrediction(BaseModel):
    """One horizon's prediction from the close of the bar predicted from."""

    bars: int = Field(description="How many bars ahead the horizon looks.")
    p_up: float | None = Field(description="Calibrated probability of an up move.")
    confidence: float | None = Field(description="|2 p_up - 1|: 0 undecided, 1 certain.")
    high: float | None = Field(description="Predicted highest high over the horizon (price).")
    low: float | None = Field(description="Predicted lowest low over the horizon (price).")
    high_interval: Interval | None
    low_interval: Interval | None
    alpha: float = Field(description="Miscoverage of the intervals (0.1: 90% intervals).")
    served_by: dict[str, str] = Field(
        default_factory=dict,
        description="Per target (direction, max_high, min_low), what serves it: the learned "
        "model's name, or a naive baseline's (naive_*) where the learned model did not beat "
        "every baseline in the promotion gate's out-of-sample test.",
    )


class ModelRef(BaseModel):
    """The model version that answered."""

    name: str
    version: int
    alias: str | None = Field(description="`champion`, or null for an unpromoted version.")
    latest_unpromoted: bool = Field(
        description="True when the model has no champion yet and its latest version serves."
    )


class PredictResponse(BaseModel):
    """Per-horizon predictions for the bar at ``bar_timestamp``."""

    model_config = _examples(
        {
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "bar_timestamp": "2024-01-01T00:00:00Z",
            "close": 42475.23,
            "source": "store",
            "gapped": False,
            "missing_bars": 0,
            "model": {
                "name": "BTCUSDT_1h_btc",
                "version": 3,
                "alias": "champion",
                "latest_unpromoted": False,
            },
            "horizons": {
                "intraday": {
                    "bars": 6,
                    "p_up": 0.54,
                    "confidence": 0.08,
                    "high": 42890.1,
                    "low": 42011.7,
                    "high_interval": {"lower": 42510.3, "upper": 43650.2},
                    "low_interval": {"lower": 41320.8, "upper": 42401.5},
                    "alpha": 0.1,
                    "served_by": {
                        "direction": "naive_prior",
                        "max_high": "lgbm",
                        "min_low": "lgbm",
                    },
                }
            },
        }
    )

    symbol: str
    timeframe: str
    bar_timestamp: datetime = Field(description="The (closed) bar the prediction is made from.")
    close: float = Field(description="That bar's close.")
    source: Literal["store", "request"]
    gapped: bool = Field(description=_GAPPED)
    missing_bars: int = Field(ge=0, description=_MISSING_BARS)
    model: ModelRef
    horizons: dict[str, HorizonPrediction]


class ErrorInfo(BaseModel):
    """What went wrong."""

    type: str = Field(description="The error's kind (`ModelNotFoundError`, `ValidationError`...).")
    message: str
    request_id: str | None
    rule: str | None = Field(default=None, description="The broken candle rule, if any.")
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """The one error shape of every 4xx and 5xx answer."""

    error: ErrorInfo


class BatchResult(BaseModel):
    """One item of a batch: its prediction, or its error (with the status it would have had)."""

    index: int
    status: int
    prediction: PredictResponse | None = None
    error: ErrorInfo | None = None


class PredictBatchResponse(BaseModel):
    """The items' results, in request order."""

    results: list[BatchResult]


# -- signals ---------------------------------------------------------------------------------


class SignalResponse(BaseModel):
    """The current signal of the max/min strategy: entry at the next open (≈ the last close)."""

    symbol: str
    timeframe: str
    bar_timestamp: datetime
    gapped: bool = Field(description=_GAPPED)
    missing_bars: int = Field(ge=0, description=_MISSING_BARS)
    model: ModelRef
    horizon: str
    side: Literal["long", "short", "flat"]
    entry: float
    stop: float | None
    target: float | None
    reward_risk: float | None = Field(description="Predicted reward per unit of risk.")
    confidence: float | None
    p_up: float | None
    predicted_high: float | None
    predicted_low: float | None
    params: dict[str, Any] = Field(description="The strategy parameters applied.")


# -- indicators ------------------------------------------------------------------------------


class IndicatorRequestItem(_Request):
    """One indicator with its parameters (defaults where left out)."""

    name: str = Field(min_length=1, max_length=64, examples=["rsi"])
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"timeperiod": 14}])
    timeframe: str | None = Field(
        default=None, max_length=16, description="A higher timeframe (`4h`, `x4`), else the base."
    )


class IndicatorsRequest(_Request):
    """Named indicators, or a feature preset, computed on the supplied candles."""

    model_config = _examples(
        {
            "timeframe": "1h",
            "indicators": [{"name": "rsi", "params": {"timeperiod": 14}}],
            "candles": [_EXAMPLE_CANDLE],
        }
    )

    timeframe: TimeframeName
    candles: list[Candle] = Field(min_length=1, max_length=MAX_CANDLES)
    indicators: list[IndicatorRequestItem] | None = Field(
        default=None, min_length=1, max_length=200
    )
    preset: str | None = Field(default=None, max_length=64, examples=["minimal"])
    tail: int | None = Field(
        default=None, ge=1, le=MAX_CANDLES, description="Return only the last `tail` rows."
    )

    @model_validator(mode="after")
    def _one_source(self) -> IndicatorsRequest:
        if (self.indicators is None) == (self.preset is None):
            raise ValueError("give exactly one of 'indicators' and 'preset'")
        return self


class IndicatorsResponse(BaseModel):
    """Indicator columns on the candles' timestamps (null before an indicator's warm-up)."""

    feature_set: str
    warmup_bars: int
    timestamps: list[datetime]
    columns: dict[str, list[float | None]]


class IndicatorInfo(BaseModel):
    """A registered indicator."""

    name: str
    family: str
    params: dict[str, Any]
    columns: list[str]
    description: str


class PresetInfo(BaseModel):
    """A shipped feature set."""

    name: str
    version: int
    columns: int
    description: str


class IndicatorCatalog(BaseModel):
    """What ``POST /api/v1/indicators`` can compute."""

    indicators: list[IndicatorInfo]
    presets: list[PresetInfo]


# -- jobs ------------------------------------------------------------------------------------


class ConfigJobRequest(_Request):
    """A run config (as in `trademl train` / `trademl backtest` YAML files), as a mapping."""

    config: dict[str, Any]


class JobRequest(_Request):
    """Any registered job kind with its payload (`echo`, `sleep`, `fail`, `train`, `backtest`)."""

    kind: str = Field(min_length=1, max_length=64, examples=["sleep"])
    payload: dict[str, Any] = Field(default_factory=dict, examples=[{"seconds": 2}])


def _from_job_layer(
    source: type[Any],
    name: str,
    doc: str,
    *,
    replace: dict[str, Any] | None = None,
    leave_out: frozenset[str] = frozenset(),
) -> type[BaseModel]:
    """A response model with the fields of the job layer's dataclass ``source``, in its order
    and with its types (``replace`` swaps a field's type), so a job's shape is written once."""
    hints, replace = get_type_hints(source), replace or {}
    fields: dict[str, Any] = {
        field.name: (replace.get(field.name, hints[field.name]), ...)
        for field in dataclasses.fields(source)
        if field.name not in leave_out
    }
    return create_model(name, __doc__=doc, **fields)


# The API's job bodies are the job layer's JobInfo and JobError, states included (JobState).
JobErrorInfo = _from_job_layer(JobError, "JobErrorInfo", "Why a job failed.")
JobResponse = _from_job_layer(
    JobInfo,
    "JobResponse",
    "A job's state, progress, and result or error.",
    replace={"error": JobErrorInfo | None},
)
JobSummary = _from_job_layer(
    JobInfo,
    "JobSummary",
    "A job in a listing: its state and progress; payload, result and error only through "
    "``GET /api/v1/jobs/{id}``.",
    leave_out=frozenset({"payload", "result", "error"}),
)


class JobList(BaseModel):
    """The newest jobs (without payloads or results) and how many are in each state."""

    jobs: list[JobSummary]  # type: ignore[valid-type]
    counts: dict[str, int]


# -- models ----------------------------------------------------------------------------------


class ServedModel(BaseModel):
    """The version this server loaded for a registered model."""

    name: str
    version: int
    alias: str | None
    latest_unpromoted: bool
    symbol: str
    timeframe: str
    horizons: dict[str, int]
    feature_set: str
    warmup_bars: int
    loaded_at: datetime


class ModelSummary(BaseModel):
    """A registered model: its versions and aliases, and what this server serves of it."""

    name: str
    versions: int
    latest: int | None
    champion: int | None
    challenger: int | None
    description: str
    served: ServedModel | None


class ModelList(BaseModel):
    """Every registered model."""

    models: list[ModelSummary]


class PromoteRequest(_Request):
    """Which version to promote (the challenger by default); ``force`` overrides the gate,
    ``level`` replaces the significance level of its Diebold–Mariano tests."""

    version: int | None = Field(default=None, ge=1)
    force: bool = False
    level: float | None = Field(default=None, gt=0.0, lt=1.0)


class RollbackRequest(_Request):
    """Why the champion is rolled back (recorded in the registry's history)."""

    reason: str = Field(default="", max_length=2000)


class DecisionResponse(BaseModel):
    """What a promotion or rollback did, and the version served after it."""

    name: str
    version: int
    alias: str | None
    previous: int | None
    reason: str
    served: ServedModel | None


# -- health ----------------------------------------------------------------------------------


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Dependency(BaseModel):
    """Whether a backend answers."""

    reachable: bool
    detail: str


class Readiness(BaseModel):
    """Ready when at least one model is loaded; each dependency is reported."""

    ready: bool
    models: list[ServedModel]
    load_errors: dict[str, str]
    store: Dependency
    tracking: Dependency
