"""``GET /api/v1/signals/{symbol}``: the max/min strategy's signal on the latest stored bar,
its prediction logged (source ``signal``) before it is answered."""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Query, Request

from trademl.backtest.strategies import PRESETS, maxmin_signals
from trademl.serving.deps import State
from trademl.serving.errors import request_id_of
from trademl.serving.predict import logged, model_ref
from trademl.serving.routes import errors
from trademl.serving.schemas import SignalResponse

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
    params: dict[str, Any] = {"reward_risk": 1.5, "min_confidence": 0.0}
    if preset is not None:
        params.update(PRESETS[preset]["maxmin"])
    if reward_risk is not None:
        params["reward_risk"] = reward_risk
    if min_confidence is not None:
        params["min_confidence"] = min_confidence
    params["allow_short"] = allow_short
    values = prediction.values
    index = pd.DatetimeIndex([prediction.timestamp], name="timestamp")
    bar = pd.DataFrame({"close": [prediction.close]}, index=index)
    signals = maxmin_signals(
        bar,
        [values[f"{name}__high_log"]],
        [values[f"{name}__low_log"]],
        [values[f"{name}__p_up"]],
        **params,
    )
    side = {1: "long", -1: "short"}.get(int(signals.side[0]), "flat")
    entry = prediction.close
    stop, target = _number(signals.stop[0]), _number(signals.target[0])
    reward_risk_value = None
    if stop is not None and target is not None and stop != entry:
        reward_risk_value = abs(target - entry) / abs(entry - stop)
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
        "side": side,
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
