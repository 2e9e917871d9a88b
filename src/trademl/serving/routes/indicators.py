"""``GET /api/v1/indicators`` (the catalogue) and ``POST /api/v1/indicators`` (compute)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter
from pydantic import ValidationError

from trademl.data.timeframes import Timeframe
from trademl.errors import ConfigError
from trademl.features import FeatureSet, build_features, load_feature_set, preset_names
from trademl.features.indicators import all_indicators
from trademl.serving.deps import State
from trademl.serving.predict import candles_frame, check_spacing
from trademl.serving.routes import errors
from trademl.serving.schemas import IndicatorCatalog, IndicatorsRequest, IndicatorsResponse

router = APIRouter(prefix="/api/v1", tags=["indicators"])


@router.get("/indicators", response_model=IndicatorCatalog, responses=errors())
def catalog(state: State) -> dict[str, Any]:
    """Every registered indicator (parameters at their defaults) and every feature preset."""
    indicators = []
    for indicator in all_indicators():
        params = indicator.resolve()
        indicators.append(
            {
                "name": indicator.name,
                "family": indicator.family,
                "params": params,
                "columns": indicator.columns(params),
                "description": indicator.description,
            }
        )
    presets = []
    for name in preset_names():
        fs = load_feature_set(name)
        presets.append(
            {
                "name": name,
                "version": fs.version,
                "columns": len(fs.columns("1h")),
                "description": " ".join(fs.description.split()),
            }
        )
    return {"indicators": indicators, "presets": presets}


def _feature_set(body: IndicatorsRequest) -> FeatureSet:
    if body.preset is not None:
        # Presets only: a path would let a client make the server read its files.
        if body.preset not in preset_names():
            raise ConfigError(f"preset {body.preset!r} is not one of: {', '.join(preset_names())}")
        return load_feature_set(body.preset)
    specs = [
        {"indicator": item.name, "params": item.params, "timeframe": item.timeframe}
        for item in body.indicators or []
    ]
    try:
        return FeatureSet(name="request", version=1, features=specs)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(
            f"indicators.{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
            for e in error.errors()
        )
        raise ConfigError(problems) from None


@router.post("/indicators", response_model=IndicatorsResponse, responses=errors())
def compute(body: IndicatorsRequest, state: State) -> dict[str, Any]:
    """Named indicators (or a preset) on the supplied candles; null before each warm-up."""
    timeframe = Timeframe.parse(body.timeframe).name
    fs = _feature_set(body)
    frame = candles_frame(body.candles, "candles", timeframe)
    check_spacing(frame, timeframe)
    features = build_features(frame, fs)
    if body.tail is not None:
        features = features.iloc[-body.tail :]
    block = features.to_numpy()
    finite = np.isfinite(block)
    columns = {
        str(name): [
            float(v) if ok else None
            for v, ok in zip(block[:, i].tolist(), finite[:, i].tolist(), strict=True)
        ]
        for i, name in enumerate(features.columns)
    }
    return {
        "feature_set": fs.name,
        "warmup_bars": int(features.attrs.get("warmup_bars", 0)),
        "timestamps": [t.to_pydatetime() for t in features.index],
        "columns": columns,
    }
