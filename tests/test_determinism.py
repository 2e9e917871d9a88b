"""Deterministic reruns: the same config, data and seed give byte-identical outputs.

Each test runs ``trademl train`` and ``trademl backtest`` (in process, through the CLI's own
entry point) twice on the real BTCUSDT 1h candles, into two output folders of one home, and
compares the files byte for byte. The second run reads its features from the cache the first
one wrote, so a cache that changed a value or its dtype would show here too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from tests.conftest import Outcome, cli_runner
from tests.support.training import tiny_run_config

from trademl.config import _cached_settings, reload_settings

# The files item 5 of issue 13 promises, and the others a rerun writes that hold no clock.
TRAINING_FILES = ("predictions.parquet", "folds.csv", "summary.csv", "pipeline.pkl")
BACKTEST_FILES = ("trades.csv", "metrics.json", "report.html")


@pytest.fixture
def untracked_cli(
    home: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., Outcome]]:
    """The in-process CLI on a home holding the real BTCUSDT 1h candles, tracking off."""
    monkeypatch.setenv("TRADEML_TRACKING", "false")
    reload_settings()
    cli = cli_runner(capsys)
    imported = cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv")
    assert imported.code == 0, imported.stderr
    yield cli
    _cached_settings.cache_clear()


def run_config(model: dict[str, Any]) -> dict[str, Any]:
    """Four months of 1h bars, two walk-forward folds, every label kind, seed 7."""
    # Each run gets --output; nothing is registered (tracking is off).
    config = tiny_run_config(Path("unused"), model, name="determinism", gate={}, seed=7)
    config.pop("registry")
    return config


def train_and_backtest(
    cli: Callable[..., Outcome], folder: Path, model: dict[str, Any], label: str
) -> tuple[Path, Path]:
    """``trademl train`` then ``trademl backtest`` of that run; the two output folders."""
    folder.mkdir(exist_ok=True)
    config = folder / "train.yaml"
    config.write_text(yaml.safe_dump(run_config(model)))
    run_dir, backtest_dir = folder / f"run_{label}", folder / f"backtest_{label}"
    trained = cli("train", config, "--output", run_dir)
    assert trained.code == 0, trained.stderr
    backtest_config = folder / f"backtest_{label}.yaml"
    backtest_config.write_text(
        yaml.safe_dump(
            {
                "run": str(run_dir),
                "strategy": {"kind": "maxmin", "params": {"reward_risk": 1.2, "max_bars": 6}},
                "costs": {"fee_bps": 10, "slippage_bps": 5},
                "output": str(backtest_dir),
            }
        )
    )
    tested = cli("backtest", backtest_config)
    assert tested.code == 0, tested.stderr
    return run_dir, backtest_dir


def digests(folder: Path, names: tuple[str, ...]) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}


def assert_identical_reruns(
    cli: Callable[..., Outcome], folder: Path, model: dict[str, Any]
) -> pd.DataFrame:
    """Two runs of ``model`` write the same bytes; returns the trades for sanity checks."""
    first_run, first_backtest = train_and_backtest(cli, folder, model, "a")
    second_run, second_backtest = train_and_backtest(cli, folder, model, "b")
    assert digests(first_run, TRAINING_FILES) == digests(second_run, TRAINING_FILES)
    assert digests(first_backtest, BACKTEST_FILES) == digests(second_backtest, BACKTEST_FILES)
    predictions = pd.read_parquet(first_run / "predictions.parquet")
    kind = model["kind"]
    # Identical because of a seed, not because the model predicted nothing.
    assert predictions[f"{kind}__direction_6"].nunique() > 10
    return pd.read_csv(first_backtest / "trades.csv")


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "lgbm", "params": {"n_estimators": 20}},
        {"kind": "xgb", "params": {"n_estimators": 20}},
    ],
    ids=["lgbm", "xgb"],
)
def test_boosted_reruns_write_identical_bytes(
    untracked_cli: Callable[..., Outcome], tmp_path: Path, model: dict[str, Any]
) -> None:
    trades = assert_identical_reruns(untracked_cli, tmp_path / "runs", model)
    assert len(trades) > 0


def test_a_different_seed_changes_the_predictions(
    untracked_cli: Callable[..., Outcome], tmp_path: Path
) -> None:
    """The comparison above can fail: row and column subsampling draw from the seed."""
    model = {"kind": "lgbm", "params": {"n_estimators": 20}}
    first, _ = train_and_backtest(untracked_cli, tmp_path / "runs", model, "a")
    folder = tmp_path / "reseeded"
    folder.mkdir()
    config = folder / "train.yaml"
    config.write_text(yaml.safe_dump({**run_config(model), "seed": 8}))
    assert untracked_cli("train", config, "--output", folder / "run").code == 0
    assert digests(first, TRAINING_FILES[:1]) != digests(folder / "run", TRAINING_FILES[:1])


@pytest.mark.slow
def test_deep_reruns_on_the_cpu_write_identical_bytes(
    untracked_cli: Callable[..., Outcome], tmp_path: Path
) -> None:
    """A GRU on the CPU, one thread: torch's deterministic algorithms, seeded draws."""
    model = {
        "kind": "gru",
        "params": {"epochs": 2, "hidden": 16, "seq_len": 16, "mc_samples": 5, "n_threads": 1},
    }
    assert_identical_reruns(untracked_cli, tmp_path / "runs", model)
