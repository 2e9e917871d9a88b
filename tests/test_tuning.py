"""``trademl tune`` / ``tuning.tune`` on real BTCUSDT 1h data: outputs, pruning, AutoML and two
worker processes sharing one study on PostgreSQL."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from tests.conftest import POSTGRES_ADMIN_URL, _scratch_database

from trademl.config import Settings, load_run_config
from trademl.tuning import SEARCH_SPACES, choice, resolve_storage, tune

FOLDS = 3


def tiny_config(output: Path, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "data": {
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "start": "2023-01-01",
            "end": "2023-10-01",
        },
        "features": "minimal",
        "labels": {"kinds": ["max_high"], "horizons": [6]},
        # Params given in the config are held fixed: tiny trees keep the tests fast.
        "models": [{"kind": "lgbm", "params": {"n_estimators": 30, "n_jobs": 1}}],
        "validation": {
            "kind": "walk_forward",
            "params": {"test_size": 800, "n_splits": FOLDS, "min_train_size": 2000},
        },
        "uncertainty": {"intervals": "none"},
        "output": str(output),
    }
    config.update(changes)
    return config


@pytest.fixture
def btc_store(cli, data_dir: Path) -> None:
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0


def _write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_tune_command_writes_trials_and_a_runnable_best_config(
    cli, btc_store, home: Path, tmp_path: Path
) -> None:
    config = _write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "out"))
    result = cli("tune", config, "--trials", "3", "--storage", "sqlite", "--study", "s")
    assert result.code == 0, result.stderr
    assert "best trials by mean out-of-sample r2" in result.stdout
    assert "trials: 3 (" in result.stdout

    folder = tmp_path / "out" / "tuning"
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == 3 and set(trials["kind"]) == {"lgbm"}
    assert {"number", "params", "value", "state", "seconds"} <= set(trials.columns)
    best = load_run_config(folder / "best.yaml")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_trials"] == 3 and summary["metric"] == "r2"
    assert summary["direction"] == "maximize"
    assert best.models[0].kind == "lgbm"
    assert dict(best.models[0].params) == summary["best_params"]
    assert best.models[0].params["n_estimators"] == 30  # held fixed
    assert set(SEARCH_SPACES["lgbm"]) - {"n_estimators"} <= set(summary["best_params"])

    # The study lives in optuna.db under the home; every fold was reported to Optuna.
    url = resolve_storage("sqlite", Settings(home=home))
    assert url is not None and (home / "optuna.db").exists()
    storage = optuna.storages.RDBStorage(url)
    try:
        study = optuna.load_study(study_name="s", storage=storage)
        for trial in study.trials:
            if trial.state == optuna.trial.TrialState.COMPLETE:
                assert sorted(trial.intermediate_values) == list(range(FOLDS))
                mean = sum(trial.intermediate_values.values()) / FOLDS
                assert trial.value == pytest.approx(mean)
    finally:
        storage.remove_session()
        storage.engine.dispose()


def test_trials_in_a_bad_region_are_pruned_after_one_fold(btc_store, tmp_path: Path) -> None:
    # A learning rate of 1e-5 leaves 30 trees near the training mean: far worse than 0.1.
    # (Learning from zero: over the HAR baseline, trees that stay near zero keep its forecast.)
    spaces = {"lgbm": {"learning_rate": choice(0.1, 1e-5)}}
    model = {"kind": "lgbm", "params": {"n_estimators": 30, "n_jobs": 1}, "residual": False}
    result = tune(
        tiny_config(tmp_path / "out", models=[model]),
        trials=8,
        spaces=spaces,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    states = result.trials.set_index("number")["state"]
    assert result.n_pruned >= 1, result.trials
    for trial in result.study.trials:
        rate = trial.user_attrs["params"]["learning_rate"]
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert rate == 1e-5 and len(trial.intermediate_values) < FOLDS
        else:
            assert len(trial.intermediate_values) == FOLDS, states
    assert result.best_params["learning_rate"] == 0.1


def test_automl_scores_the_baselines_searches_residual_learning_and_a_stack(
    btc_store, tmp_path: Path
) -> None:
    models = [
        {"kind": "lgbm", "params": {"n_estimators": 30, "n_jobs": 1}},
        {"kind": "xgb", "params": {"n_estimators": 30, "n_jobs": 1}},
    ]
    result = tune(
        tiny_config(tmp_path / "out", models=models),
        trials=8,
        time_limit=300,
        automl=True,
        kinds=("lgbm", "xgb"),
    )
    trials = result.study.trials
    # The baselines are the first trials: the search has to beat them, on the same folds.
    assert [t.user_attrs["params"]["strategy"] for t in trials[:2]] == ["volatility", "mean"]
    assert {t.user_attrs["kind"] for t in trials[2:]} <= {"lgbm", "xgb", "naive"}
    assert {"lgbm", "xgb"} & set(result.trials["kind"])
    assert result.n_trials == len(result.trials) == 8
    # Residual learning over the HAR baseline is a dimension of the learned kinds.
    learned = [t for t in trials if t.user_attrs["kind"] != "naive"]
    assert all(f"{t.user_attrs['kind']}.residual" in t.params for t in learned)
    assert all(
        t.user_attrs["residual"] == t.params[f"{t.user_attrs['kind']}.residual"] for t in learned
    )
    # An honest out-of-sample score of the stack, compared with its best member.
    assert result.stacked_score is not None and math.isfinite(result.stacked_score)
    assert 2 <= len(result.stacked_models) <= 3
    assert result.stack_chosen == (result.stacked_score > result.best_value)
    assert "on the same folds" in result.stack_note
    summary = json.loads((tmp_path / "out" / "tuning" / "summary.json").read_text())
    assert summary["stacked_score"] == pytest.approx(result.stacked_score)
    assert summary["stack_chosen"] == result.stack_chosen
    best = load_run_config(tmp_path / "out" / "tuning" / "best.yaml")
    # The stack only when it beat its best member; else the best member alone.
    assert [m.kind for m in best.models] == (
        ["stacking"] if result.stack_chosen else [result.best_kind]
    )
    if not result.stack_chosen:
        assert best.models[0].residual == result.best_residual
    # Each kind's parameters are recorded under its own prefix.
    assert all(
        name == "kind" or name.startswith(f"{t.user_attrs['kind']}.")
        for t in trials
        for name in t.params
    )


def test_the_time_limit_bounds_the_whole_search_and_stops_long_trials(
    btc_store, tmp_path: Path
) -> None:
    # A million trees a fold without early stopping cannot finish in the budget: it stops at it.
    params = {"n_estimators": 1_000_000, "n_jobs": 1, "early_stopping_rounds": None}
    models = [{"kind": "lgbm", "params": params}]
    limit = 20.0
    result = tune(
        tiny_config(tmp_path / "out", models=models),
        trials=None,
        time_limit=limit,
        automl=True,
        kinds=("lgbm",),
        spaces={"lgbm": {"num_leaves": choice(63)}},
    )
    stopped = [t for t in result.study.trials if "stopped" in t.user_attrs]
    assert stopped, result.trials
    assert all("stopped at the time budget" in t.user_attrs["stopped"] for t in stopped)
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in stopped)
    # Stopped inside the first fit, not after a fold ran on past the budget.
    assert all(not t.intermediate_values for t in stopped)
    # The baselines completed within it, so the answer is the best of what finished.
    assert result.n_complete == 2 and result.best_kind == "naive"
    assert result.stacked_score is None and not result.stack_chosen
    # Generous slack for a loaded machine: the search does not run on past its budget.
    assert result.seconds < 1.5 * limit, result.seconds


@pytest.fixture
def optuna_postgres() -> Iterator[str]:
    """A fresh PostgreSQL database for Optuna alone (it keeps its own alembic_version)."""
    yield from _scratch_database(POSTGRES_ADMIN_URL, f"trademl_optuna_test_{os.getpid()}")


@pytest.mark.integration
def test_two_workers_share_one_study_on_postgresql(
    btc_store, home: Path, tmp_path: Path, optuna_postgres: str
) -> None:
    config = _write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "out"))
    # Each worker has its own home (its own copy of the market store), as on two machines;
    # the study is what they share.
    homes = [home, tmp_path / "home2"]
    shutil.copytree(home, homes[1])
    command = [sys.executable, "-m", "trademl", "tune", str(config), "--trials", "3"]
    command += ["--storage", optuna_postgres, "--study", "shared"]
    workers = []
    for number, worker_home in enumerate(homes):
        env = {**os.environ, "TRADEML_HOME": str(worker_home), "TRADEML_LOG_LEVEL": "WARNING"}
        log = open(tmp_path / f"worker{number}.log", "w")  # noqa: SIM115 - closed below
        workers.append((subprocess.Popen(command, env=env, stdout=log, stderr=log), log))
    for process, log in workers:
        code = process.wait(timeout=300)
        log.close()
        assert code == 0, Path(log.name).read_text()

    storage = optuna.storages.RDBStorage(resolve_storage(optuna_postgres, Settings(home=home)))
    try:
        study = optuna.load_study(study_name="shared", storage=storage)
        assert len(study.trials) == 6
        assert len({t.user_attrs["worker"] for t in study.trials}) == 2
        assert all(t.state.is_finished() for t in study.trials)
    finally:
        storage.remove_session()
        storage.engine.dispose()
    trials = pd.read_csv(tmp_path / "out" / "tuning" / "trials.csv")
    assert len(trials) >= 3
