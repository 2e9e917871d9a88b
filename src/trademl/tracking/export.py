"""ONNX export of a registered pipeline model: one graph per horizon and target, and a
manifest saying how to feed them and how to rebuild the intervals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trademl.atomic import atomic_path
from trademl.config import Settings
from trademl.errors import ConfigError
from trademl.models.naive import BASELINE_PREFIX
from trademl.models.onnx_export import export_onnx
from trademl.models.uncertainty import SplitConformalRegressor, conformal_quantile
from trademl.tracking.pipeline import load_pipeline

MANIFEST = "manifest.json"


def export_version(
    name: str,
    version: str | int,
    output: str | Path,
    *,
    settings: Settings | None = None,
) -> Path:
    """Write a registered version's models as ONNX graphs under ``output``.

    Each horizon's ``direction``, ``max_high`` and ``min_low`` model becomes
    ``{horizon}__{target}.onnx`` where its kind can be exported (see
    :func:`trademl.models.onnx_export.export_onnx`); ``manifest.json`` lists the files, the
    input feature columns in order, the feature set that computes them, the warm-up, the
    split-conformal half-width ``q`` of each regression interval (``prediction ± q``, log
    ratio; for normalised intervals ``prediction ± q · s``, ``s`` the row's mean of
    ``interval_scale.columns``, unknown or non-positive values replaced by ``fill``, then at
    least ``floor``), at the miscoverage the pipeline serves (the end of its validated adaptive
    path) and, for every model left out, why.

    Returns
    -------
    pathlib.Path
        The manifest.

    Raises
    ------
    ConfigError
        No model of the version could be exported.
    ModelNotFoundError
        No such model, version or alias.
    """
    pipeline, info = load_pipeline(name, version, settings)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    exported: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    alpha = pipeline.predictor.alpha
    for horizon, models in pipeline.predictor.horizons.items():
        served_by = pipeline.predictor.served_by(horizon)
        for target in ("direction", "max_high", "min_low"):
            model = getattr(models, target)
            key = f"{horizon}__{target}"
            try:
                path = export_onnx(model, folder / f"{key}.onnx")
            except ConfigError as error:
                source = served_by[target]
                # A baseline serves this target (the learned model lost to it out of sample).
                skipped[key] = (
                    str(error)
                    if source == "model" or not source.startswith(BASELINE_PREFIX)
                    else f"served by the baseline {source}, which has no ONNX form: {error}"
                )
                continue
            entry: dict[str, Any] = {"file": path.name, "kind": model.kind}
            if isinstance(model, SplitConformalRegressor):
                served = pipeline.predictor.served_alpha(horizon, target)
                entry["interval_alpha"] = served
                entry["interval_half_width"] = conformal_quantile(model.scores_, served)
                if model.scale_features:
                    entry["interval_scale"] = {
                        "columns": list(model.scale_features),
                        "fill": model.scale_fill_,
                        "floor": model.scale_floor_,
                    }
            exported[key] = entry
    if not exported:
        raise ConfigError(
            f"model {name!r} version {info.version}: no model could be exported to ONNX: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    manifest = {
        "name": name,
        "version": info.version,
        "symbol": pipeline.symbol,
        "timeframe": pipeline.timeframe,
        "horizons": pipeline.horizons,
        "alpha": alpha,
        "warmup_bars": pipeline.warmup_bars,
        "feature_columns": pipeline.feature_columns,
        "feature_set": pipeline.feature_set.model_dump(mode="json"),
        "models": exported,
        "skipped": skipped,
    }
    target_path = folder / MANIFEST
    with atomic_path(target_path) as temp:
        Path(temp).write_text(json.dumps(manifest, indent=2))
    return target_path
