"""``POST /api/v1/predict`` and ``POST /api/v1/predict/batch``: read-only, no API key unless
the server requires one everywhere."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from trademl.errors import TradeMLError
from trademl.monitoring.journal import Journal
from trademl.monitoring.predictions import PreparedRows
from trademl.monitoring.writer import LogWriter
from trademl.serving.deps import ServingState, State
from trademl.serving.errors import request_id_of, trademl_error_body
from trademl.serving.predict import Prediction, logged
from trademl.serving.routes import errors
from trademl.serving.schemas import (
    PredictBatchRequest,
    PredictBatchResponse,
    PredictRequest,
    PredictResponse,
)

router = APIRouter(prefix="/api/v1", tags=["predictions"])


def answer(state: ServingState, body: PredictRequest, request_id: str) -> dict[str, Any]:
    """The prediction a :class:`PredictRequest` asks for, logged before it is returned."""
    served = state.host.find(body.symbol, body.timeframe, body.model)
    horizons = state.predictions.horizons(served, body.horizon)
    if body.candles is not None:
        prediction = state.predictions.from_candles(served, body.candles)
    else:
        prediction = state.predictions.latest(served)
    if state.log is not None:  # a worker thread: wait for the commit holding its rows
        state.log.append(logged(prediction, horizons, request_id)).result()
    state.metrics.count_prediction(served.name, served.version, prediction.source)
    return state.predictions.body(prediction, horizons)


# Prepared log rows of the answers polled most recently: the same bar is answered (and logged)
# many times, its rows are checked and serialised once.
_PREPARED: OrderedDict[tuple[int, str], tuple[Prediction, PreparedRows]] = OrderedDict()
_PREPARED_SIZE = 256


def _prepared(
    state: ServingState, log: LogWriter | Journal, prediction: Prediction, horizon: str
) -> PreparedRows:
    key = (id(prediction), horizon)
    hit = _PREPARED.get(key)
    if hit is not None and hit[0] is prediction:  # the very object, not a reused id
        return hit[1]
    horizons = state.predictions.horizons(prediction.served, horizon)
    rows = log.log.prepare(logged(prediction, horizons, "prepared"))
    _PREPARED[key] = (prediction, rows)
    while len(_PREPARED) > _PREPARED_SIZE:
        _PREPARED.popitem(last=False)
    return rows


@router.post("/predict", response_model=PredictResponse, responses=errors(404, 503))
async def predict(body: PredictRequest, state: State, request: Request) -> Response:
    """Per-horizon predicted high, low, P(up), confidence and intervals for the last bar.

    Without ``candles`` the latest stored bars are used (and the answer is cached until a new
    bar arrives); with them, the last candle is predicted from them. Either way exactly the
    model's warm-up + 1 last candles are read (fewer is a 422 that says how many are needed),
    and a window with missing bars is answered with ``gapped`` true. The candles are not
    stored; the prediction is logged (the prediction log) before the answer is sent.
    """
    request_id = request_id_of(request) or uuid.uuid4().hex
    if body.candles is None:
        # The polling path: a known bar's answer is bytes in memory, sent from the event loop.
        served = state.host.find(body.symbol, body.timeframe, body.model)
        rendered = state.predictions.rendered_nowait(served, body.horizon)
        if rendered is None:
            rendered = await run_in_threadpool(
                state.predictions.latest_rendered, served, body.horizon
            )
        content, prediction = rendered
        if state.log is not None:  # awaited, not blocking the loop: requests share commits
            rows = _prepared(state, state.log, prediction, body.horizon)
            await state.log.append_prepared_async(request_id, rows)
        state.metrics.count_prediction(served.name, served.version, "store")
        return Response(content, media_type="application/json")
    # Candles in the body: features and models, off the event loop.
    answered = await run_in_threadpool(answer, state, body, request_id)
    return Response(
        PredictResponse.model_validate(answered).model_dump_json(), media_type="application/json"
    )


@router.post("/predict/batch", response_model=PredictBatchResponse, responses=errors(503))
def predict_batch(body: PredictBatchRequest, state: State, request: Request) -> dict[str, Any]:
    """Several predictions in one call; a failing item carries its error and status instead."""
    request_id = request_id_of(request) or uuid.uuid4().hex
    results: list[dict[str, Any]] = []
    for index, item in enumerate(body.items):
        try:
            prediction = answer(state, item, f"{request_id}-{index}")
            results.append({"index": index, "status": 200, "prediction": prediction})
        except TradeMLError as error:
            status, problem = trademl_error_body(error, request_id_of(request))
            results.append({"index": index, "status": status, "error": problem["error"]})
    return {"results": results}
