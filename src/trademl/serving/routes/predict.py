"""``POST /api/v1/predict`` and ``POST /api/v1/predict/batch``: read-only, no API key unless
the server requires one everywhere."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from trademl.errors import TradeMLError
from trademl.serving.deps import ServingState, State
from trademl.serving.errors import request_id_of, trademl_error_body
from trademl.serving.routes import errors
from trademl.serving.schemas import (
    PredictBatchRequest,
    PredictBatchResponse,
    PredictRequest,
    PredictResponse,
)

router = APIRouter(prefix="/api/v1", tags=["predictions"])


def answer(state: ServingState, body: PredictRequest) -> dict[str, Any]:
    """The prediction a :class:`PredictRequest` asks for."""
    served = state.host.find(body.symbol, body.timeframe, body.model)
    horizons = state.predictions.horizons(served, body.horizon)
    if body.candles is not None:
        prediction = state.predictions.from_candles(served, body.candles)
    else:
        prediction = state.predictions.latest(served)
    state.metrics.predictions.labels(served.name, str(served.version), prediction.source).inc()
    return state.predictions.body(prediction, horizons)


@router.post("/predict", response_model=PredictResponse, responses=errors(404, 503))
def predict(body: PredictRequest, state: State) -> dict[str, Any]:
    """Per-horizon predicted high, low, P(up), confidence and intervals for the last bar.

    Without ``candles`` the latest stored bars are used (and the answer is cached until a new
    bar arrives); with them, the last candle is predicted from them. Either way exactly the
    model's warm-up + 1 last candles are read (fewer is a 422 that says how many are needed),
    and a window with missing bars is answered with ``gapped`` true. Nothing is stored.
    """
    return answer(state, body)


@router.post("/predict/batch", response_model=PredictBatchResponse, responses=errors(503))
def predict_batch(body: PredictBatchRequest, state: State, request: Request) -> dict[str, Any]:
    """Several predictions in one call; a failing item carries its error and status instead."""
    results: list[dict[str, Any]] = []
    for index, item in enumerate(body.items):
        try:
            results.append({"index": index, "status": 200, "prediction": answer(state, item)})
        except TradeMLError as error:
            status, problem = trademl_error_body(error, request_id_of(request))
            results.append({"index": index, "status": status, "error": problem["error"]})
    return {"results": results}
