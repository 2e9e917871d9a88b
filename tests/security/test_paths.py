"""Item 1 of issue 14: a config submitted as a job names only paths under TRADEML_HOME
(reads from runs/ and configs/, writes to runs/); everything else is refused with a
ConfigError naming the field, never the file's content; two runs never share an output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.security.conftest import HEADERS, Outside, assert_no_secret

from trademl.backtest.runner import backtest
from trademl.errors import ConfigError
from trademl.jobs import open_queue
from trademl.paths import PathPolicy, output_lock
from trademl.workflow import run


def run_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "data": {"symbol": "BTCUSDT", "timeframe": "1h"},
        "features": "minimal",
        "models": [{"kind": "naive"}],
        "validation": {"params": {"test_size": 100}},
        "output": "runs/ok",
    }
    config.update(changes)
    return config


def backtest_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"run": "runs/ok", "output": "runs/bt"}
    config.update(changes)
    return config


def traversals(home: Path, outside: Outside) -> dict[str, str]:
    """Every way out of the allowed roots: absolute, `..`, a symbolic link inside pointing
    out, a sibling of the roots, and home itself."""
    (home / "runs").mkdir(parents=True, exist_ok=True)
    link = home / "runs" / "link"
    link.symlink_to(outside.folder, target_is_directory=True)
    return {
        "absolute": str(outside.secret),
        "dotdot": "runs/../../outside/secret.yaml",
        "dotdot_inside": "runs/../configs/x.yaml",
        "symlink": "runs/link/secret.yaml",
        "sibling": "cache/x.yaml",
        "home": ".",
        "etc": "/etc/shadow",
    }


def test_policy_resolves_under_home_and_refuses_the_rest(home: Path, outside: Outside) -> None:
    policy = PathPolicy.service(home)
    assert policy.write("runs/a/b", "output") == (home / "runs" / "a" / "b").resolve()
    assert policy.read(str(home / "configs" / "f.yaml"), "features").name == "f.yaml"
    for name, value in traversals(home, outside).items():
        with pytest.raises(ConfigError, match=r"^features: ") as caught:
            policy.read(value, "features")
        assert_no_secret(str(caught.value))
        assert name and str(home) not in str(caught.value)  # no server path in the message
    with pytest.raises(ConfigError, match=r"output: .*outside the folders a job may write"):
        policy.write("configs/x", "output")  # configs/ is read-only to jobs
    with pytest.raises(ConfigError, match="output: expected a path"):
        policy.write("runs/\x00x", "output")


def test_every_path_field_of_a_job_is_refused_at_submit(home: Path, outside: Outside) -> None:
    cases = traversals(home, outside)
    with open_queue() as queue:
        for value in cases.values():
            attempts = {
                "features": ("train", run_config(features=value if value.endswith(".yaml") else value + "/f.yaml")),
                "output": ("train", run_config(output=value)),
                "data.universe": ("train", run_config(data={"universe": value, "timeframe": "1h"})),
                "run": ("backtest", backtest_config(run=value)),
                "train": ("backtest", {"train": value, "output": "runs/bt"}),
                "output ": ("backtest", backtest_config(output=value)),
            }  # fmt: skip
            for field, (kind, config) in attempts.items():
                with pytest.raises(ConfigError, match=rf"^{field.strip()}: ") as caught:
                    queue.submit(kind, {"config": config})
                assert_no_secret(str(caught.value))
        assert queue.list() == []  # nothing stored


def test_a_job_config_is_a_mapping_never_a_file_name(home: Path, outside: Outside) -> None:
    with open_queue() as queue:
        for kind in ("train", "backtest"):
            for value in (str(outside.secret), "/etc/shadow", "configs/run.yaml"):
                with pytest.raises(
                    ConfigError, match="payload 'config': expected a config mapping"
                ):
                    queue.submit(kind, {"config": value})


def test_the_api_answers_422_naming_the_field_never_the_file(
    api: TestClient, home: Path, outside: Outside
) -> None:
    # Before: {"config": "/etc/shadow"} was read as YAML and its lines quoted in the 422.
    for body in (
        {"kind": "train", "payload": {"config": str(outside.secret)}},
        {"kind": "train", "payload": {"config": "/etc/shadow"}},
        {"kind": "backtest", "payload": {"config": str(outside.secret)}},
    ):
        response = api.post("/api/v1/jobs", json=body, headers=HEADERS)
        assert response.status_code == 422, response.text
        assert "payload 'config'" in response.json()["error"]["message"]
        assert_no_secret(response.text)
    for value in traversals(home, outside).values():
        for path, config, field in (
            ("/api/v1/backtest", {"train": value, "output": "runs/bt"}, "train"),
            ("/api/v1/backtest", backtest_config(run=value), "run"),
            ("/api/v1/train", run_config(output=value), "output"),
            (
                "/api/v1/train",
                run_config(data={"universe": value, "timeframe": "1h"}),
                "data.universe",
            ),
            ("/api/v1/train", run_config(features=value.rstrip("/") + "/f.yaml"), "features"),
        ):
            response = api.post(path, json={"config": config}, headers=HEADERS)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["message"].startswith(f"{field}: ")
            assert_no_secret(response.text)
    listed = api.get("/api/v1/jobs", headers=HEADERS).json()
    assert listed["jobs"] == []


def test_two_runs_never_share_an_output_folder(home: Path) -> None:
    folder = home / "runs" / "shared"
    with output_lock(folder):
        # A run or a backtest naming a folder held by another fails before reading any data.
        with pytest.raises(ConfigError, match="output: the folder 'shared' is being written"):
            run(run_config(output=str(folder)))
        with pytest.raises(ConfigError, match="output: the folder 'shared' is being written"):
            backtest(backtest_config(run=str(home / "runs" / "ok"), output=str(folder)))
    with output_lock(folder):  # released when the holder is done
        pass


def test_the_cli_keeps_local_paths(home: Path, tmp_path: Path) -> None:
    policy = PathPolicy.local()
    assert policy.write(str(tmp_path / "anywhere"), "output") == (tmp_path / "anywhere").resolve()
    assert policy.read("../x.yaml", "features") == (Path.cwd().parent / "x.yaml").resolve()
