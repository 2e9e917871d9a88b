"""A third-party package's plug-ins named in YAML, end to end: the example package of
tests/example_plugin (installed by make install) trains, serves and backtests through the
public configs, with tracking off."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from tests.conftest import Outcome, cli_runner
from tests.plugins.example import require_example_plugin
from tests.support.training import tiny_run_config

from trademl.config import _cached_settings, reload_settings
from trademl.data.sources.files import read_candle_file


@pytest.fixture
def untracked_cli(
    home: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Outcome]]:
    """The in-process CLI on a home holding the real BTCUSDT 1h candles, tracking off."""
    require_example_plugin()
    monkeypatch.setenv("TRADEML_TRACKING", "false")
    reload_settings()
    cli = cli_runner(capsys)
    imported = cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv")
    assert imported.code == 0, imported.stderr
    yield cli
    _cached_settings.cache_clear()


def write_yaml(path: Path, content: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(content))
    return path


def test_a_third_party_model_and_indicator_train_serve_and_backtest(
    untracked_cli: Callable[..., Outcome], data_dir: Path, tmp_path: Path
) -> None:
    features = write_yaml(
        tmp_path / "features.yaml",
        {
            "name": "with_plugin",
            "version": 1,
            "features": [
                {"indicator": "range_mean", "params": {"window": 12}},  # third-party
                {"indicator": "rsi", "params": {"timeperiod": 14}},
            ],
        },
    )
    config = tiny_run_config(
        tmp_path / "run", {"kind": "example_ridge", "params": {"l2": 2.0}}, name="p", gate={}
    )
    config.pop("registry")
    config["features"] = str(features)
    run_dir = tmp_path / "run"
    trained = untracked_cli(
        "train", write_yaml(tmp_path / "train.yaml", config), "--output", run_dir
    )
    assert trained.code == 0, trained.stderr

    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    learned = [c for c in predictions.columns if c.startswith("example_ridge__")]
    assert {c.split("__")[1].rsplit("_", 1)[0] for c in learned} >= {"direction", "max_high"}
    assert predictions[learned].notna().any().all()

    # Served: the saved pipeline computes the third-party feature and model on new candles.
    pipeline = pickle.loads((run_dir / "pipeline.pkl").read_bytes())
    assert "range_mean_12" in pipeline.feature_columns
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv").iloc[-600:]
    served = pipeline.predict(candles)
    assert len(served) > 0 and served.iloc[-1].notna().any()

    # And the third-party strategy backtests that run.
    backtest = write_yaml(
        tmp_path / "backtest.yaml",
        {
            "run": str(run_dir),
            "strategy": {"kind": "example_threshold", "preset": "aggressive"},
            "output": str(tmp_path / "backtest"),
        },
    )
    tested = untracked_cli("backtest", backtest)
    assert tested.code == 0, tested.stderr
    assert (tmp_path / "backtest" / "metrics.json").exists()


def test_a_third_party_source_ingests_into_the_store(
    untracked_cli: Callable[..., Outcome], data_dir: Path
) -> None:
    source = f"example_folder:{data_dir / 'crypto'}"
    result = untracked_cli(
        "data", "ingest", source, "--symbol", "ETHUSDT", "--timeframe", "1h",
        "--start", "2024-01-01", "--end", "2024-01-08",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    shown = untracked_cli("data", "list")
    assert "ETHUSDT" in shown.stdout
