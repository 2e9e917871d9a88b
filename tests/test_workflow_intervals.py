"""Intervals through ``workflow.run`` on real BTCUSDT data: normalised and adaptive by default,
rolling coverage written, and the served model starting from the validated end of the path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.config import load_run_config
from trademl.har import har_columns, interval_scale
from trademl.models.uncertainty import SplitConformalRegressor, conformal_quantile
from trademl.pipeline import load_run_pipeline
from trademl.preparation import prepare
from trademl.workflow import run


@pytest.fixture
def btc_store(cli, data_dir: Path) -> None:
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0


def config(output: Path) -> dict:
    return {
        "data": {
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "start": "2023-01-01",
            "end": "2023-08-01",
        },
        "features": "minimal",
        "labels": {"kinds": ["max_high", "min_low"], "horizons": [6]},
        "models": [{"kind": "lgbm", "params": {"n_estimators": 20, "n_jobs": 1}}],
        "validation": {
            "kind": "walk_forward",
            "params": {"test_size": 700, "n_splits": 3, "min_train_size": 1500},
        },
        "uncertainty": {"adaptive_rate": 0.02, "coverage_window": 300},
        "output": str(output),
    }


def test_served_intervals_start_where_the_validated_path_ended(btc_store, tmp_path: Path) -> None:
    cfg = config(tmp_path / "run")
    result = run(cfg)
    predictions = result.predictions
    final = load_run_pipeline(tmp_path / "run").predictor
    X = prepare(load_run_config(cfg)).X.iloc[-20:]
    close = pd.Series(np.full(len(X), 100.0), index=X.index)
    served_rows = final.predict(X, close)
    for kind, short in (("max_high", "high"), ("min_low", "low")):
        # The learned model, or the baseline the gate chose for this target.
        source = final.served_by("6")[kind]
        prefix = f"{'lgbm' if source == 'lgbm' else source}__{kind}_6"
        y = predictions[f"target__{kind}_6"].to_numpy()
        lower, upper = predictions[f"{prefix}__lo"], predictions[f"{prefix}__hi"]
        missed = ~((lower <= y) & (y <= upper)).to_numpy()
        # Replay the end of the path: the level at the last row has absorbed every miss but
        # those of the last 6 rows (not matured then); all labels are known once data end.
        level = predictions[f"{prefix}__alpha"].to_numpy()[-1]
        for miss in missed[-6:]:
            level = min(0.3, max(0.01, level + 0.02 * (0.1 - miss)))
        served = final.served_alpha("6", kind)
        assert served == pytest.approx(level) and served != 0.1
        # The served interval: the final model's normalised interval at that level.
        model = getattr(final.horizons["6"], kind)
        assert isinstance(model, SplitConformalRegressor)
        assert model.scale_features == interval_scale(pd.DataFrame(columns=har_columns(6)), 6)
        q = conformal_quantile(model.scores_, served)
        half = np.log(served_rows[f"6__{short}_hi"] / 100.0) - np.log(
            served_rows[f"6__{short}"] / 100.0
        )
        np.testing.assert_allclose(half.to_numpy(), q * model.scale(X), rtol=1e-9)

    summary = result.summary
    rows = summary[summary["target"].isin(["max_high", "min_low"]) & (summary["model"] == "lgbm")]
    for _, row in rows.iterrows():
        assert row["coverage_lo"] <= row["coverage"] <= row["coverage_hi"]
        assert row["r2_lo"] <= row["r2"] <= row["r2_hi"]
    rolling = pd.read_parquet(tmp_path / "run" / "coverage.parquet")
    lgbm = rolling[(rolling["model"] == "lgbm") & (rolling["target"] == "max_high_6")]
    assert len(lgbm) == 3 * 700 - 300 + 1
    assert lgbm["alpha"].notna().all()
    worst = rows.set_index("target").loc["max_high", "coverage_worst_window"]
    assert np.isclose(np.abs(lgbm["coverage"] - 0.9).max(), abs(worst - 0.9))
    assert "worst window" in (tmp_path / "run" / "summary.md").read_text()
