"""Predictions as the API serves them: the last bar, from stored candles (cached per closed
bar) or from candles in the request.

Every path computes the last bar with :meth:`PipelineModel.predict_last` on exactly the
pipeline's ``warmup_bars + 1`` last candles: past the declared warm-up the features are
start-invariant, so the served numbers are those the model was validated on over the full
history (tested by replay in ``tests/serving/test_replay_parity.py``). A window with missing
bars is served flagged (``gapped``, ``missing_bars``), not refused: training computed its
features over the stored rows with the same gaps.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import numpy as np
import pandas as pd

from trademl.data.candles import make_candles, validate_candles
from trademl.data.stores import SeriesInfo
from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError, DataValidationError, NotFoundError
from trademl.monitoring.predictions import LoggedPrediction, horizon_records
from trademl.pipeline import LastBar, PipelineModel
from trademl.serving.host import ModelHost, Served
from trademl.serving.schemas import Candle, PredictResponse
from trademl.serving.store import StoreReader

CACHE_SIZE = 4096


@dataclass(frozen=True)
class Prediction:
    """Every output column of one model version for one bar."""

    served: Served
    timestamp: pd.Timestamp
    close: float
    values: dict[str, float]
    source: str
    missing_bars: int = 0

    @property
    def gapped(self) -> bool:
        """Whether bars were missing inside the warm-up window."""
        return self.missing_bars > 0


def candles_frame(candles: Sequence[Candle], symbol: str, timeframe: str) -> pd.DataFrame:
    """Request candles as a validated Candles frame (naive timestamps read as UTC).

    Raises
    ------
    DataValidationError
        A contract rule is broken; the message names the row (1-based) and the rule.
    """
    stamps = [
        c.timestamp if c.timestamp.tzinfo else c.timestamp.replace(tzinfo=UTC) for c in candles
    ]
    values = np.array([(c.open, c.high, c.low, c.close, c.volume) for c in candles], dtype=float)
    values = values.reshape(len(candles), 5)
    index = pd.DatetimeIndex([s.astimezone(UTC) for s in stamps])
    frame = make_candles(index, *values.T, symbol=symbol, timeframe=timeframe)
    validate_candles(frame, source="candles")
    return frame


def check_spacing(candles: pd.DataFrame, timeframe: str) -> None:
    """The candles' bars must be ``timeframe`` apart (gaps allowed, as in training)."""
    expected = Timeframe.parse(timeframe).delta
    spacing = pd.Series(candles.index).diff().dropna()
    if len(spacing) and (spacing.min() < expected or spacing.median() != expected):
        raise DataValidationError(
            f"candles are {spacing.median()} apart (median, smallest {spacing.min()}); the model "
            f"predicts {timeframe} bars",
            source="candles",
            rule="timeframe",
        )


def predict_last(pipeline: PipelineModel, candles: pd.DataFrame) -> LastBar:
    """The pipeline's prediction for the last candle: :meth:`PipelineModel.predict_last`, the
    one computation every serving path (REST, WebSocket, signals) goes through."""
    return pipeline.predict_last(candles)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class PredictionService:
    """Predictions for the routes and the WebSocket stream."""

    def __init__(self, host: ModelHost, store: StoreReader) -> None:
        self.host = host
        self.store = store
        self._cache: OrderedDict[tuple[str, int, str, str, int], Prediction] = OrderedDict()
        self._lock = threading.Lock()
        # JSON answers of store predictions, by (model ref, bar, rows, horizon): a known bar is
        # answered with bytes, no model, store or pydantic work.
        self._rendered: OrderedDict[tuple[Any, ...], tuple[bytes, Prediction]] = OrderedDict()

    def rendered_nowait(self, served: Served, horizon: str) -> tuple[bytes, Prediction] | None:
        """The JSON answer for the latest stored bar, and the prediction it renders, when it is
        known without any I/O (the store unchanged since it was rendered), else None; cheap
        enough for the event loop."""
        pipeline = served.pipeline
        current, info = self.store.info_nowait(pipeline.symbol, pipeline.timeframe)
        if not current or info is None:
            return None
        return self._rendered.get(_rendered_key(served, info, horizon))

    def latest_rendered(self, served: Served, horizon: str) -> tuple[bytes, Prediction]:
        """The :class:`~trademl.serving.schemas.PredictResponse` JSON for the latest stored
        bar, rendered once per model version, bar and horizon, and the prediction it renders."""
        horizons = self.horizons(served, horizon)
        info = self._latest_info(served)
        key = _rendered_key(served, info, horizon)
        hit = self._rendered.get(key)
        if hit is not None:
            return hit
        prediction = self.latest_at(served, info)
        rendered = PredictResponse.model_validate(self.body(prediction, horizons))
        answer = (rendered.model_dump_json().encode(), prediction)
        with self._lock:
            # Keyed by the info the prediction was computed from, never a later look's.
            self._rendered[key] = answer
            while len(self._rendered) > CACHE_SIZE:
                self._rendered.popitem(last=False)
        return answer

    def horizons(self, served: Served, horizon: str) -> list[str]:
        """The horizons asked for: ``all`` or one the model knows (else a 422)."""
        names = list(served.pipeline.horizons)
        if horizon == "all":
            return names
        if horizon not in names:
            raise ConfigError(
                f"horizon {horizon!r} is not predicted by model {served.name} version "
                f"{served.version}; expected 'all' or one of: {', '.join(names)}"
            )
        return [horizon]

    def from_candles(self, served: Served, candles: Sequence[Candle]) -> Prediction:
        """Predict from request candles (nothing is stored or cached)."""
        pipeline = served.pipeline
        frame = candles_frame(candles, pipeline.symbol, pipeline.timeframe)
        return _prediction(served, predict_last(pipeline, frame), "request")

    def latest(self, served: Served) -> Prediction:
        """Predict from the latest stored bar; one computation per model version and bar."""
        return self.latest_at(served, self._latest_info(served))

    def _latest_info(self, served: Served) -> SeriesInfo:
        pipeline = served.pipeline
        info = self.store.info(pipeline.symbol, pipeline.timeframe)
        if info is None:
            raise NotFoundError(
                f"no {pipeline.symbol} {pipeline.timeframe} candles in the store to predict from; "
                "import some (trademl data import) or send candles in the request"
            )
        return info

    def latest_at(self, served: Served, info: SeriesInfo) -> Prediction:
        """Predict the last bar of the stored series as ``info`` describes it (cached)."""
        pipeline = served.pipeline
        # The row count too: a bar filled in (or removed) behind the last one changes the window;
        # the symbol, for a panel model serving several.
        key = (served.name, served.version, pipeline.symbol, info.last.isoformat(), info.rows)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit if hit.served is served else dataclasses.replace(hit, served=served)
        frame = self.store.tail(pipeline.symbol, pipeline.timeframe, pipeline.window_bars, info)
        prediction = _prediction(served, predict_last(pipeline, frame), "store")
        with self._lock:
            self._cache[key] = prediction
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return prediction

    def body(self, prediction: Prediction, horizons: list[str]) -> dict[str, Any]:
        """The :class:`~trademl.serving.schemas.PredictResponse` fields of a prediction."""
        served, values = prediction.served, prediction.values
        pipeline = served.pipeline
        alpha = float(getattr(pipeline.predictor, "alpha", 0.1))

        def interval(name: str, target: str) -> dict[str, float | None] | None:
            lower = values.get(f"{name}__{target}_lo")
            upper = values.get(f"{name}__{target}_hi")
            if lower is None and upper is None:
                return None
            return {"lower": _finite(lower), "upper": _finite(upper)}

        return {
            "symbol": pipeline.symbol,
            "timeframe": pipeline.timeframe,
            "bar_timestamp": prediction.timestamp.to_pydatetime(),
            "close": prediction.close,
            "source": prediction.source,
            "gapped": prediction.gapped,
            "missing_bars": prediction.missing_bars,
            "model": model_ref(served),
            "horizons": {
                name: {
                    "bars": int(pipeline.horizons[name]),
                    "p_up": _finite(values.get(f"{name}__p_up")),
                    "confidence": _finite(values.get(f"{name}__confidence")),
                    "high": _finite(values.get(f"{name}__high")),
                    "low": _finite(values.get(f"{name}__low")),
                    "high_interval": interval(name, "high"),
                    "low_interval": interval(name, "low"),
                    "alpha": alpha,
                    "served_by": served_by(pipeline, name),
                }
                for name in horizons
            },
        }


def served_by(pipeline: PipelineModel, horizon: str) -> dict[str, str]:
    """Per target of ``horizon``, the forecast serving it (a learned model or a baseline)."""
    predictor = pipeline.predictor
    if not hasattr(predictor, "served_by"):
        return {}
    return dict(predictor.served_by(horizon))


def _rendered_key(served: Served, info: SeriesInfo, horizon: str) -> tuple[Any, ...]:
    # The alias too: a reload that promotes the same version changes the answer's model ref.
    ref = (served.name, served.version, served.alias, served.latest_unpromoted)
    return (*ref, served.pipeline.symbol, info.last, info.rows, horizon)


def _prediction(served: Served, last: LastBar, source: str) -> Prediction:
    return Prediction(served, last.timestamp, last.close, last.values, source, last.missing_bars)


def model_ref(served: Served) -> dict[str, Any]:
    """The :class:`~trademl.serving.schemas.ModelRef` of a served version."""
    return {
        "name": served.name,
        "version": served.version,
        "alias": served.alias,
        "latest_unpromoted": served.latest_unpromoted,
    }


def logged(
    prediction: Prediction, horizons: list[str], request_id: str, *, source: str | None = None
) -> list[LoggedPrediction]:
    """The prediction log's rows of an answer: one per horizon answered; ``source``, when
    given, names the path that served it (``stream``, ``signal``) instead of the candles'."""
    served = prediction.served
    pipeline = served.pipeline
    return horizon_records(
        prediction.values,
        {name: pipeline.horizons[name] for name in horizons},
        request_id=request_id,
        model_name=served.name,
        model_version=served.version,
        symbol=pipeline.symbol,
        timeframe=pipeline.timeframe,
        bar_timestamp=prediction.timestamp,
        source=source or prediction.source,
    )
