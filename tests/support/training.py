"""A tiny training run config shared by the suites that train real models (tracking, serving)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
