"""A tiny training run config shared by the suites that train real models (tracking, serving)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Gate numbers for these short runs: the max-high target (against the HAR volatility and mean
# baselines), loose coverage, and level 0.5, where a one-sided test passes whenever the point
# estimate favours the candidate: a few hundred test rows cannot show significance at 0.05.
SHORT_RUN_GATE = {
    "metric": "r2",
    "target": "max_high",
    "coverage_tolerance": 0.2,
    "min_rows": 50,
    "level": 0.5,
}
# A small LightGBM whose max-high forecast beats both baselines' on the 2023 spans (seeded).
SMALL_LGBM = {
    "kind": "lgbm",
    "params": {"n_estimators": 10, "min_child_samples": 300},
    "residual": False,
}


def tiny_run_config(
    output: Path, model: dict[str, Any], *, name: str, gate: dict[str, Any], **changes: Any
) -> dict[str, Any]:
    """A few-second training run: 4 months of 1h bars, minimal features, one model, two folds,
    registered as ``name`` behind the promotion ``gate``; ``changes`` replace top-level keys."""
    config: dict[str, Any] = {
        "data": {
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "start": "2023-01-01",
            "end": "2023-05-01",
        },
        "features": "minimal",
        "labels": {"kinds": ["direction", "max_high", "min_low"], "horizons": ["intraday"]},
        "models": [model],
        "validation": {
            "kind": "walk_forward",
            "params": {"test_size": 400, "n_splits": 2, "min_train_size": 1500},
        },
        "output": str(output),
        "registry": {"name": name, "gate": gate},
    }
    config.update(changes)
    return config
