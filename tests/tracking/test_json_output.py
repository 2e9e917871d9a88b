"""`--json` of runs, models, backtest, train and tune: one JSON document on stdout with the
documented keys (README, "Machine-readable output"), and JSON logs on request."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import Outcome, cli_runner
from tests.support.training import SHORT_RUN_GATE, SMALL_LGBM, tiny_run_config
from tests.tracking.conftest import MODEL, Backend

from trademl.config import _cached_settings, reload_settings

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def tracked_cli(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Outcome]]:
    monkeypatch.setenv("TRADEML_HOME", str(backend.settings.home))
    reload_settings()
    yield cli_runner(capsys)
    _cached_settings.cache_clear()


def _json(outcome: Outcome) -> Any:
    assert outcome.code == 0, outcome.stderr
    return json.loads(outcome.stdout)  # the whole of stdout: no table, no progress line


@SQLITE_ONLY
def test_runs_and_models_as_json(tracked_cli: Callable[..., Outcome], backend: Backend) -> None:
    listed = _json(tracked_cli("runs", "list", "--json", "--limit", "50"))
    by_id = {run["run_id"]: run for run in listed["runs"]}
    good = backend.runs["good"].run_id
    assert set(by_id[good]) == {
        "run_id", "experiment", "run_name", "kind", "symbol", "timeframe", "status", "start_time"
    }  # fmt: skip
    assert by_id[good]["symbol"] == "BTCUSDT" and by_id[good]["status"] == "FINISHED"

    shown = _json(tracked_cli("runs", "show", good, "--json", "--match", "log_loss"))
    assert shown["run_id"] == good and shown["params"] and shown["tags"]["symbol"] == "BTCUSDT"
    assert shown["metrics"] and all("log_loss" in name for name in shown["metrics"])
    assert "pipeline" in shown["artifacts"] or shown["artifacts"]

    models = _json(tracked_cli("models", "list", "--json"))["models"]
    mine = next(model for model in models if model["name"] == MODEL)
    assert mine["versions"] == 3 and mine["latest"] == 3
    assert set(mine) >= {"name", "versions", "latest", "champion", "challenger", "aliases"}

    detail = _json(tracked_cli("models", "show", MODEL, "--json"))
    assert [v["version"] for v in detail["versions"]] == [3, 2, 1]
    assert detail["versions"][-1]["run_id"] == backend.runs["weak"].run_id
    assert {"at", "action", "version", "reason"} <= set(detail["history"][0])

    missing = tracked_cli("models", "show", "no_such_model", "--json")
    assert missing.code == 6 and missing.stdout == ""


@SQLITE_ONLY
def test_backtest_as_json(
    tracked_cli: Callable[..., Outcome], backend: Backend, tmp_path: Path
) -> None:
    config = tmp_path / "bt.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run": str(backend.runs["better"].output),
                "strategy": {"kind": "maxmin", "params": {"reward_risk": 1.5, "max_bars": 6}},
                "output": str(tmp_path / "bt"),
            }
        )
    )
    out = _json(tracked_cli("backtest", config, "--json"))
    assert set(out) == {"output", "n_trades", "metrics", "baseline_metrics"}
    assert out["output"] == str(tmp_path / "bt") and out["n_trades"] > 0
    assert {"sharpe", "deflated_sharpe", "max_drawdown"} <= set(out["metrics"])
    assert all(not isinstance(value, list | dict) for value in out["metrics"].values())
    written = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    assert out["n_trades"] == written.get("n_trades", out["n_trades"])


def test_train_as_json_names_the_run_the_version_and_the_alias(
    cli: Callable[..., Outcome], data_dir: Path, home: Path, tmp_path: Path
) -> None:
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0
    config = tmp_path / "run.yaml"
    run = tiny_run_config(tmp_path / "run", SMALL_LGBM, name="json_model", gate=SHORT_RUN_GATE)
    config.write_text(yaml.safe_dump(run))
    out = _json(cli("train", config, "--json"))
    assert set(out) == {
        "output", "seconds", "data_hash", "run_id", "model_name", "registered_version", "alias",
        "registry_reason", "served_by", "summary",
    }  # fmt: skip
    assert len(out["run_id"]) == 32 and out["model_name"] == "json_model"
    assert out["registered_version"] == 1 and out["alias"] in ("champion", None)
    assert out["registry_reason"]
    rows = out["summary"]
    assert {row["model"] for row in rows} > {"lgbm"}  # the baselines beside the model
    assert all(
        value is None or not isinstance(value, float) or value == value
        for r in rows
        for value in r.values()
    )
    listed = _json(cli("models", "list", "--json"))["models"]
    assert listed[0]["name"] == "json_model" and listed[0]["latest"] == 1


def test_json_logs_on_request(
    cli: Callable[..., Outcome], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEML_LOG_FORMAT", "json")
    reload_settings()
    done = cli("--log-level", "DEBUG", "data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv")
    assert done.code == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines, "the import logs at DEBUG"
    assert all(
        set(line) >= {"time", "level", "message", "logger", "function", "line"} for line in lines
    )
    assert all(line["logger"].startswith("trademl") for line in lines)


def test_log_format_is_checked(
    cli: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEML_LOG_FORMAT", "xml")
    with pytest.raises(Exception, match="log_format"):
        reload_settings()


def test_tune_as_json(
    cli: Callable[..., Outcome],
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADEML_TRACKING", "false")
    reload_settings()
    assert cli("data", "import", data_dir / "crypto" / "BTCUSDT_1h.csv").code == 0
    config = tmp_path / "tune.yaml"
    run = tiny_run_config(tmp_path / "out", SMALL_LGBM, name="unused", gate={})
    run["labels"] = {"kinds": ["max_high"], "horizons": ["intraday"]}
    run["uncertainty"] = {"intervals": "none"}
    config.write_text(yaml.safe_dump(run))
    out = _json(cli("tune", config, "--trials", "2", "--json"))
    assert set(out) == {
        "target", "metric", "direction", "best_value", "best_kind", "best_params", "n_trials",
        "n_complete", "n_pruned", "best_residual", "stacked_score", "stack_chosen", "stack_note",
        "time_limit", "output", "seconds", "trials",
    }  # fmt: skip
    assert out["n_trials"] == 2 and len(out["trials"]) == 2 and out["metric"] == "r2"
    assert out["best_value"] == max(t["value"] for t in out["trials"] if t["value"] is not None)
    assert Path(out["output"], "best.yaml").is_file()
