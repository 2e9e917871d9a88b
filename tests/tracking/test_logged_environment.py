"""The logged pyfunc's environment rebuilds from the model alone: a registered version is
downloaded, a fresh venv installs only its requirements.txt (from the model's folder, as
MLflow does; trademl itself from the wheel logged beside it), and the pyfunc loaded there
predicts what the training process's pipeline predicts. Slow (a venv install, about a
minute from a warm pip cache): .ci/packaging runs it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import venv
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from tests.support.training import SHORT_RUN_GATE, SMALL_LGBM, tiny_run_config

from trademl.api import train
from trademl.config import Settings
from trademl.data.ingest import import_path, open_default_store
from trademl.tracking.client import connect
from trademl.tracking.pipeline import load_pipeline, to_model_input

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
import mlflow.pyfunc, pandas as pd, trademl
model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_json(sys.argv[2], orient="split")
out = model.predict(frame)
print(json.dumps({"trademl": trademl.__file__, "out": out.to_json(orient="split")}))
"""


def _run(command: list[str], cwd: Path) -> str:
    # Outside this checkout: no PYTHONPATH or active venv leaks into the fresh one.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(command, cwd=cwd, env=clean, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_registered_model_loads_in_a_venv_built_from_its_requirements(
    tmp_path: Path, data_dir: Path
) -> None:
    settings = Settings(home=tmp_path / "home", tracking=True)
    with open_default_store(settings) as store:
        import_path(data_dir / "crypto" / "BTCUSDT_1h.csv", store)
    config = tiny_run_config(tmp_path / "run", SMALL_LGBM, name="env_model", gate=SHORT_RUN_GATE)
    result = train(config, settings=settings)
    assert result.model_version is not None

    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=connect(settings).get_model_version_download_uri(
                "env_model", str(result.model_version)
            ),
            dst_path=str(tmp_path / "model"),
            tracking_uri=settings.mlflow_uri,
        )
    )
    requirements = (model_dir / "requirements.txt").read_text().split()
    wheel = requirements[0]
    assert wheel.startswith("artifacts/trademl-0.1.0+g") and wheel.endswith("-py3-none-any.whl")
    assert (model_dir / wheel).is_file()
    assert not any(line.startswith("trademl==") for line in requirements)

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    # As MLflow restores an environment: pip in the model's folder, its requirements only.
    _run([str(python), "-m", "pip", "install", "--quiet", "-r", "requirements.txt"], model_dir)

    pipeline, _ = load_pipeline("env_model", result.model_version, settings)
    with open_default_store(settings) as store:
        candles = store.read("BTCUSDT", "1h").loc["2023-04-01":"2023-05-01"]
    frame = to_model_input(candles)
    source = tmp_path / "input.json"
    source.write_text(frame.to_json(orient="split", date_format="epoch", date_unit="ns"))
    loaded = _run([str(python), "-c", SCRIPT, str(model_dir), str(source)], tmp_path)
    answer = json.loads(loaded.strip().splitlines()[-1])
    assert answer["trademl"].startswith(str(env))  # the logged wheel, not this checkout
    there = pd.read_json(io.StringIO(answer["out"]), orient="split")
    here = pipeline.predict(candles).reset_index(drop=True)
    values = [c for c in here.columns if c in there.columns]
    assert len(values) == here.shape[1] and len(there) == len(here)
    pd.testing.assert_frame_equal(there[values], here[values], check_dtype=False, atol=1e-9)
