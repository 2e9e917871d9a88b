"""``trademl train`` / ``workflow.run`` on real BTCUSDT data: outputs, reproducibility, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from trademl.config import load_run_config
from trademl.errors import ConfigError, DataValidationError
from trademl.pipeline import load_run_pipeline
from trademl.workflow import run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "btc_1h.yaml"


def small_config(output: Path, **changes: object) -> dict:
    config = {
        "data": {
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "start": "2023-01-01",
            "end": "2023-10-01",
        },
        "features": "minimal",
        "labels": {"kinds": ["direction", "max_high", "min_low"], "horizons": ["intraday", 24]},
        "models": [{"kind": "lgbm", "params": {"n_estimators": 60}}],
        "validation": {
            "kind": "walk_forward",
            "params": {"test_size": 800, "n_splits": 3, "min_train_size": 2000},
        },
        "output": str(output),
    }
    config.update(changes)
    return config


@pytest.fixture
def btc_store(cli, data_dir: Path) -> None:
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0


def test_run_writes_every_output_and_reproduces_exactly(btc_store, tmp_path: Path) -> None:
    first = run(small_config(tmp_path / "a"))
    second = run(small_config(tmp_path / "b"))
    predictions = pd.read_parquet(tmp_path / "a" / "predictions.parquet")
    assert str(predictions.index.tz) == "UTC" and predictions.index.name == "timestamp"
    assert predictions["fold"].tolist() == sorted(predictions["fold"].tolist())
    for column in (
        "lgbm__direction_6",
        "naive_prior__direction_6",
        "target__max_high_24",
        "lgbm__max_high_24__lo",
        "naive_volatility__min_low_6",
    ):
        assert column in predictions, column
    assert len(predictions) == 3 * 800
    pd.testing.assert_frame_equal(first.predictions, second.predictions)
    assert first.data_hash == second.data_hash
    meta = json.loads((tmp_path / "a" / "run.json").read_text())
    assert meta["data_hash"] == first.data_hash and meta["seed"] == 0
    assert (
        yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["models"][0]["kind"] == "lgbm"
    )
    folds = pd.read_csv(tmp_path / "a" / "folds.csv")
    assert set(folds["model"]) == {"lgbm", "naive_prior", "naive_mean", "naive_volatility"}
    assert folds["fold"].nunique() == 3
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "naive_volatility" in summary and "accuracy (95% CI)" in summary
    assert (tmp_path / "a" / "pipeline.pkl").exists()


def test_every_number_is_out_of_sample(btc_store, tmp_path: Path) -> None:
    result = run(small_config(tmp_path / "run"))
    folds = result.folds
    first_test = pd.Timestamp(folds["test_start"].min())
    # Predictions exist only for test blocks, after the first training span.
    assert result.predictions.index.min() == first_test
    # Interval coverage is measured, and near its nominal 90% on real data.
    coverage = result.summary.dropna(subset=["coverage"])
    assert ((coverage["coverage"] > 0.75) & (coverage["coverage"] < 0.99)).all()


def test_example_config_validates() -> None:
    config = load_run_config(EXAMPLE)
    assert config.data.symbol == "BTCUSDT" and config.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modles": []}, "modles: unknown key; valid keys here: data, features"),
        (
            {"models": [{"kind": "lgmb"}]},
            "models.0: unknown model kind 'lgmb'; did you mean 'lgbm'",
        ),
        (
            {"models": [{"kind": "lgbm", "params": {"trees": 3}}]},
            "models.0: .*unknown parameter.*trees",
        ),
        (
            {"validation": {"kind": "walk_forward", "params": {"folds": 3}}},
            "unknown parameter.*folds",
        ),
        ({"validation": {"kind": "bootstrap"}}, "validation.kind"),
        # No validation section at all: the walk-forward needs its test size, said at load.
        (
            {"validation": {}},
            r"validation: splitter 'walk_forward': missing parameter\(s\) test_size",
        ),
        ({"labels": {"kinds": ["colour"]}}, "labels.kinds"),
        ({"features": "nope"}, "neither a preset"),
        ({"validation": {"kind": "cpcv"}}, "train with walk_forward or purged_kfold"),
    ],
)
def test_bad_configs_name_the_key_and_choices(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run(small_config(tmp_path / "x", **change))


def test_too_little_data_for_the_folds_gives_the_numbers(btc_store, tmp_path: Path) -> None:
    config = small_config(
        tmp_path / "x",
        data={"symbol": "BTCUSDT", "timeframe": "1h", "start": "2023-01-01", "end": "2023-03-01"},
    )
    with pytest.raises(
        (ConfigError, DataValidationError), match=r"needs at least \d+ rows .* got \d+"
    ):
        run(config)


def test_train_command_prints_tables_beside_baselines(cli, btc_store, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(small_config(tmp_path / "out")))
    result = cli("train", path)
    assert result.code == 0, result.stderr
    assert "naive_prior" in result.stdout and "naive_volatility" in result.stdout
    assert "direction, horizon intraday (6 bars): out of sample" in result.stdout
    assert np.isfinite(pd.read_csv(tmp_path / "out" / "summary.csv")["n"]).all()


def test_saved_maxmin_predictor_gives_prices_probabilities_and_confidence(
    btc_store, data_dir: Path, tmp_path: Path
) -> None:

    from trademl.data.sources.files import read_candle_file
    from trademl.features import build_features

    run(small_config(tmp_path / "run"))
    predictor = load_run_pipeline(tmp_path / "run").predictor
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    recent = candles.loc["2023-10-01":"2023-10-10"]
    # The run writes the set its models read: the config's, plus the HAR columns of the
    # residual max-high / min-low models.
    feature_set = tmp_path / "run" / "feature_set.yaml"
    features = build_features(candles.loc[:"2023-10-10"], feature_set).loc[recent.index]
    out = predictor.predict(features, recent["close"])
    for horizon in ("intraday", "24"):
        assert out[f"{horizon}__p_up"].between(0, 1).all()
        assert out[f"{horizon}__confidence"].between(0, 1).all()
        np.testing.assert_allclose(
            out[f"{horizon}__high"], recent["close"] * np.exp(out[f"{horizon}__high_log"])
        )
        assert (out[f"{horizon}__high_hi"] >= out[f"{horizon}__high_lo"]).all()
        assert (out[f"{horizon}__low_hi"] >= out[f"{horizon}__low_lo"]).all()


def test_stacking_and_xgb_run_beside_lgbm(btc_store, tmp_path: Path) -> None:
    models = [
        {"kind": "lgbm", "params": {"n_estimators": 40}},
        {"kind": "xgb", "params": {"n_estimators": 40}},
        {
            "kind": "stacking",
            "params": {
                "n_splits": 2,
                "base_models": [
                    {"kind": "lgbm", "params": {"n_estimators": 30}},
                    {"kind": "naive", "params": {"strategy": "mean"}},
                ],
            },
        },
    ]
    config = small_config(
        tmp_path / "run", models=models, labels={"kinds": ["max_high"], "horizons": [6]}
    )
    result = run(config)
    assert set(result.summary["model"]) == {
        "lgbm",
        "xgb",
        "stacking",
        "naive_mean",
        "naive_volatility",
    }
    assert result.summary["r2"].notna().all()


def test_cqr_intervals_cover_near_nominal(btc_store, tmp_path: Path) -> None:
    config = small_config(
        tmp_path / "run",
        labels={"kinds": ["max_high", "min_low"], "horizons": [6]},
        uncertainty={"alpha": 0.2, "intervals": "cqr"},
    )
    summary = run(config).summary
    lgbm = summary[summary["model"] == "lgbm"]
    assert ((lgbm["coverage"] > 0.65) & (lgbm["coverage"] < 0.95)).all(), lgbm[
        ["target", "coverage"]
    ]


def test_progress_reports_each_stage_and_can_stop_the_run(btc_store, tmp_path: Path) -> None:
    seen: list[tuple[float, str]] = []
    run(small_config(tmp_path / "done"), progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    # data, 2 horizons x 3 targets, the final fit, the run written (or recorded)
    assert len(seen) == 1 + 6 + 1 + 1
    assert any("max_high" in m for _, m in seen)

    class StopError(Exception):
        pass

    def cancel(fraction: float, message: str) -> None:
        if fraction >= 0.5:
            raise StopError(message)

    with pytest.raises(StopError):
        run(small_config(tmp_path / "stopped"), progress=cancel)
    assert not (tmp_path / "stopped" / "predictions.parquet").exists()
