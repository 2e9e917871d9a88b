"""The Python API (``trademl.train``, ``load_model``, ...) on real BTCUSDT data: candles in
memory give the run the store gives, a run folder's pipeline loads without MLflow and refuses a
tampered file, the config's tuning section drives ``tune``, and bad input fails clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from tests.support.training import tiny_run_config

import trademl
from trademl.config import Settings
from trademl.errors import (
    ConfigError,
    DataValidationError,
    ModelFormatError,
    ModelNotFoundError,
    NotFoundError,
)
from trademl.pipeline import PIPELINE_FILE


def tiny_config(output: Path, **changes: Any) -> dict[str, Any]:
    model = {"kind": "lgbm", "params": {"n_estimators": 20, "n_jobs": 1}}
    return tiny_run_config(output, model, name="api_example", gate={}, **changes)


@pytest.fixture
def candles(data_dir: Path) -> pd.DataFrame:
    return trademl.read_candles(data_dir / "crypto" / "BTCUSDT_1h.csv", end="2023-05-01")


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home, tracking=False)


def test_candles_in_memory_train_what_the_store_trains(
    cli, data_dir: Path, candles: pd.DataFrame, settings: Settings, tmp_path: Path
) -> None:
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0
    end = {
        "data": {"symbol": "BTCUSDT", "timeframe": "1h", "start": "2023-01-01", "end": "2023-05-01"}
    }
    stored = trademl.train(tiny_config(tmp_path / "a", **end), settings=settings)
    given = trademl.train(tiny_config(tmp_path / "b"), candles=candles, settings=settings)
    assert given.data_hash == stored.data_hash
    pd.testing.assert_frame_equal(given.predictions, stored.predictions)
    assert given.run_id is None  # tracking off: nothing recorded, the run folder is complete
    pipeline = trademl.load_model(given.output)
    assert (
        pipeline.predict_last(candles).values
        == trademl.load_model(stored.output).predict_last(candles).values
    )


def test_load_model_refuses_a_tampered_or_missing_pipeline(
    candles: pd.DataFrame, settings: Settings, tmp_path: Path
) -> None:
    result = trademl.train(tiny_config(tmp_path / "run"), candles=candles, settings=settings)
    assert trademl.load_model(str(result.output)).timeframe == "1h"
    # An attacker swaps the pickle (unpickling runs code): refused before it is unpickled.
    (result.output / PIPELINE_FILE).write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(ModelFormatError, match="digest"):
        trademl.load_model(result.output)
    record = json.loads((result.output / "run.json").read_text())
    record.pop("pipeline_sha256")
    (result.output / "run.json").write_text(json.dumps(record))
    with pytest.raises(ModelFormatError, match="digest"):
        trademl.load_model(result.output)
    with pytest.raises(ModelNotFoundError, match="holds no trained pipeline"):
        trademl.load_model(tmp_path)


@pytest.mark.parametrize(
    "uri", ["models:/", "models:/name", "models:/name/v1", "models:/@champion"]
)
def test_load_model_names_a_bad_registry_uri(uri: str) -> None:
    with pytest.raises(ConfigError, match="NAME/VERSION or models:/NAME@ALIAS"):
        trademl.load_model(uri)


def test_candles_of_another_timeframe_fail_before_anything_is_written(
    candles: pd.DataFrame, settings: Settings, tmp_path: Path
) -> None:
    daily = candles.iloc[::24]
    with pytest.raises(DataValidationError, match="expected 1h bars") as error:
        trademl.train(tiny_config(tmp_path / "run"), candles=daily, settings=settings)
    assert error.value.rule == "timeframe"
    assert not (tmp_path / "run" / "predictions.parquet").exists()


def test_read_candles_errors(tmp_path: Path, settings: Settings, data_dir: Path) -> None:
    unnamed = tmp_path / "prices.csv"
    lines = (data_dir / "crypto" / "BTCUSDT_1h.csv").read_text().splitlines(keepends=True)
    unnamed.write_text("".join(lines[:30]))
    with pytest.raises(ConfigError, match="cannot tell the symbol and timeframe"):
        trademl.read_candles(unnamed)
    assert trademl.read_candles(unnamed, symbol="X", timeframe="1h").attrs["symbol"] == "X"
    with pytest.raises(ConfigError, match="a symbol and a timeframe"):
        trademl.read_candles(symbol="BTCUSDT")
    with pytest.raises(NotFoundError, match="no BTCUSDT 1h candles"):
        trademl.read_candles(symbol="BTCUSDT", timeframe="1h", settings=settings)


def test_build_features_drops_the_warmup_on_request(candles: pd.DataFrame) -> None:
    kept = trademl.build_features(candles, "minimal")
    dropped = trademl.build_features(candles, "minimal", drop_warmup=True)
    assert kept.index[-1] == dropped.index[-1] and len(dropped) < len(kept)
    assert not dropped.isna().any().any()


def test_the_tuning_section_drives_tune_and_a_tracked_study_is_recorded(
    cli, data_dir: Path, home: Path, tmp_path: Path
) -> None:
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0
    config = tiny_config(
        tmp_path / "run",
        labels={"kinds": ["max_high"], "horizons": [6]},
        uncertainty={"intervals": "none"},
        tuning={"trials": 2, "study_name": "from-yaml", "target": "max_high"},
    )
    settings = Settings(home=home, tracking=True)
    result = trademl.tune(config, settings=settings)
    assert result.n_trials == 2 and result.study.study_name == "from-yaml"
    # An argument overrides the section (each call here is a fresh in-memory study).
    assert trademl.tune(config, trials=1, settings=settings, track=False).n_trials == 1
    mlflow.set_tracking_uri(settings.mlflow_uri)
    runs = mlflow.search_runs(
        experiment_names=[settings.mlflow_experiment_training], output_format="list"
    )
    assert [r.data.tags.get("study") for r in runs] == ["from-yaml"]  # the untracked call is not


def test_the_tuning_section_is_checked() -> None:
    from trademl.config import RunConfig

    bad = tiny_config(Path("x"), tuning={"trials": 0})
    with pytest.raises(ValueError, match=r"tuning\.trials"):
        RunConfig.model_validate(bad)
    with pytest.raises(ValueError, match="storage"):
        RunConfig.model_validate(tiny_config(Path("x"), tuning={"storage": "postgresql://x"}))
