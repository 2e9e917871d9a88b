"""LGBMModel's defaults spelled out for ``lightgbm.train``: the peer the training benches time
trademl's LightGBM kind against, with the same trees."""

from __future__ import annotations

from typing import Any


def plain_params(threads: int) -> dict[str, Any]:
    """``lightgbm.train`` parameters equal to ``LGBMModel()``'s, on ``threads`` threads."""
    return {
        "objective": "regression",
        "metric": "l2",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "max_depth": -1,
        "min_data_in_leaf": 50,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "feature_fraction": 0.8,
        "lambda_l2": 1.0,
        "seed": 0,
        "num_threads": threads,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }
