"""``GET /api/v1/signals/{symbol}``: the max/min strategy's signal on the latest stored bar,
its prediction logged (source ``signal``) before it is answered."""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from trademl.serving.deps import State
from trademl.serving.errors import request_id_of
from trademl.serving.predict import logged, model_ref
from trademl.serving.routes import errors
from trademl.serving.schemas import SignalResponse
from trademl.trading.signal import bar_signal, signal_params

router = APIRouter(prefix="/api/v1", tags=["signals"])


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@router.get("/signals/{symbol}", response_model=SignalResponse, responses=errors(404, 503))
def signal(
    symbol: str,
    state: State,
    request: Request,
    timeframe: Annotated[str, Query(min_length=1, max_length=16, examples=["1h"])],
    horizon: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=256)] = None,
    preset: Literal["conservative", "aggressive"] | None = None,
    reward_risk: Annotated[float | None, Query(gt=0, le=100)] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    allow_short: bool = True,
) -> dict[str, Any]:
    """The current signal: long, short or flat, with entry (the next open, taken as the last
    close), stop and target (the predicted low and high), reward/risk and confidence.

    ``horizon`` defaults to the model's first; ``preset`` (``conservative``, ``aggressive``)
    sets ``reward_risk`` and ``min_confidence``, which may also be given one by one. The
    horizon's prediction is in the prediction log before the answer is sent (a 503 when it
    cannot be written).
    """
    served = state.host.find(symbol, timeframe, model)
    name = state.predictions.horizons(served, horizon or next(iter(served.pipeline.horizons)))[0]
    prediction = state.predictions.latest(served)
    params = signal_params(
        preset, reward_risk=reward_risk, min_confidence=min_confidence, allow_short=allow_short
    )
    values = prediction.values
    traded = bar_signal(values, name, prediction.timestamp, prediction.close, params)
    entry = prediction.close
    stop, target = _number(traded.stop), _number(traded.target)
    reward_risk_value = traded.reward_risk if stop is not None and target is not None else None
    if state.log is not None:  # a worker thread: wait for the commit holding its rows
        request_id = request_id_of(request) or uuid.uuid4().hex
        state.log.append(logged(prediction, [name], request_id, source="signal")).result()
    state.metrics.count_prediction(served.name, served.version, "signal")
    return {
        "symbol": served.pipeline.symbol,
        "timeframe": served.pipeline.timeframe,
        "bar_timestamp": prediction.timestamp.to_pydatetime(),
        "gapped": prediction.gapped,
        "missing_bars": prediction.missing_bars,
        "model": model_ref(served),
        "horizon": name,
        "side": traded.side_name,
        "entry": entry,
        "stop": stop,
        "target": target,
        "reward_risk": reward_risk_value,
        "confidence": _number(values[f"{name}__confidence"]),
        "p_up": _number(values[f"{name}__p_up"]),
        "predicted_high": _number(values[f"{name}__high"]),
        "predicted_low": _number(values[f"{name}__low"]),
        "params": params,
    }
