"""`trademl runs|models|mlflow` and backtest runs, on the shared tracked runs of each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import Outcome, cli_runner
from tests.tracking.conftest import MODEL, Backend

from trademl.api import backtest
from trademl.config import _cached_settings, reload_settings
from trademl.tracking.client import connect


@pytest.fixture
def tracked_cli(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Outcome]]:
    monkeypatch.setenv("TRADEML_HOME", str(backend.settings.home))
    if backend.settings.mlflow_tracking_uri:
        monkeypatch.setenv("TRADEML_MLFLOW_TRACKING_URI", backend.settings.mlflow_tracking_uri)
    reload_settings()
    yield cli_runner(capsys)
    _cached_settings.cache_clear()


def test_backtest_is_a_run_tagged_with_its_training_run(backend: Backend, tmp_path: Path) -> None:
    source = backend.runs["better"]
    config = {
        "run": str(source.output),
        "strategy": {"kind": "maxmin", "params": {"reward_risk": 1.2, "max_bars": 6}},
        "grid": {"reward_risk": [1.0, 2.0]},
        "output": str(tmp_path / "bt"),
    }
    backtest(config, settings=backend.settings)
    client = connect(backend.settings)
    experiment = client.get_experiment_by_name("backtests")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], f"tags.source_run_id = '{source.run_id}'")
    assert len(runs) == 1  # the grid is recorded in the backtest's own run, not a second one
    run = runs[0]
    assert run.data.tags["registered_model"] == MODEL
    assert run.data.tags["symbol"] == "BTCUSDT" and run.data.tags["run_kind"] == "backtest"
    assert "pbo" in run.data.metrics or "pbo" in run.data.tags.get("nonfinite_metrics", "")
    assert "deflated_sharpe_grid" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "metrics.json", "trades.csv"} <= artifacts


def test_runs_and_models_commands(tracked_cli: Callable[..., Outcome], backend: Backend) -> None:
    listed = tracked_cli("runs", "list", "--filter", f"tags.registered_model = '{MODEL}'")
    assert listed.code == 0 and backend.runs["good"].run_id in listed.stdout
    good, better = backend.runs["good"].run_id, backend.runs["better"].run_id
    shown = tracked_cli("runs", "show", good, "--match", "log_loss")
    assert shown.code == 0 and "direction.intraday.lgbm.log_loss" in shown.stdout
    compared = tracked_cli("runs", "compare", good, better, "--match", "lgbm.log_loss")
    assert compared.code == 0 and "tag data_hash" in compared.stdout
    models = tracked_cli("models", "list")
    assert models.code == 0 and MODEL in models.stdout
    show = tracked_cli("models", "show", MODEL)
    assert show.code == 0 and "history" in show.stdout
    card = tracked_cli("models", "card", MODEL, "--version", "1")
    assert card.code == 0 and card.stdout.startswith(f"# Model card: {MODEL} v1")


def test_bad_input_exits_non_zero(tracked_cli: Callable[..., Outcome]) -> None:
    refused = tracked_cli("models", "promote", MODEL, "--version", "1")
    assert refused.code == 8 and "fails the promotion gate: a learned model" in refused.stderr
    missing = tracked_cli("models", "show", "no_such_model")
    assert missing.code == 6 and "'no_such_model' is not registered" in missing.stderr
    alias = tracked_cli("models", "export", MODEL, "--version", "staging")
    assert alias.code == 6 and "has no alias 'staging'" in alias.stderr
    run = tracked_cli("runs", "show", "0" * 32)
    assert run.code == 6 and "does not exist" in run.stderr


def test_unreachable_server_exits_with_a_clear_error(
    tracked_cli: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEML_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("TRADEML_MLFLOW_TIMEOUT_S", "2")
    reload_settings()
    outcome = tracked_cli("models", "list")
    assert outcome.code == 7 and "unreachable within 2s" in outcome.stderr


def test_mlflow_ui_command(tracked_cli: Callable[..., Outcome], backend: Backend) -> None:
    outcome = tracked_cli("mlflow", "ui", "--port", "5055", "--dry-run")
    assert outcome.code == 0
    assert f"mlflow ui --backend-store-uri {backend.settings.mlflow_uri}" in outcome.stdout
    assert "--port 5055" in outcome.stdout
