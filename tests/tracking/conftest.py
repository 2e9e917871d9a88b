"""One MLflow backend per parameter (SQLite file, PostgreSQL database), each with a market
store holding real BTCUSDT 1h candles and three small registered training runs, shared by
the tracking tests of that backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import POSTGRES_ADMIN_URL, _scratch_database
from tests.support.training import SHORT_RUN_GATE, SMALL_LGBM, tiny_run_config

from trademl.api import train as run
from trademl.config import Settings
from trademl.data.ingest import import_path, open_default_store
from trademl.run_outputs import RunResult

MODEL = "BTCUSDT_1h_tracking_test"
# Gate numbers chosen for these short runs: the max-high target (vs the HAR volatility and
# mean baselines), loose coverage, and level 0.5, where a one-sided test passes whenever the
# point estimate favours the challenger: 800 test rows cannot show significance at 0.05
# (test_tracking checks that they do not), and these tests exercise the registry's mechanics;
# tests/tracking/test_gate.py tests the statistics on records whose answer is known.
GATE = SHORT_RUN_GATE


WEAK = {"kind": "naive", "params": {"strategy": "mean"}}
# On this span (seeded, byte-reproducible) GOOD's max-high forecast has a lower squared loss
# than both baselines (one-sided p about 0.2) and BETTER's is lower than GOOD's. Learned from
# scratch: over the HAR baseline no short run of either beats it on this span.
GOOD = SMALL_LGBM
BETTER = {
    "kind": "lgbm",
    "params": {"n_estimators": 40, "min_child_samples": 300},
    "residual": False,
}


@dataclass
class Backend:
    """A tracking backend with its settings and the registered runs on it."""

    name: str
    settings: Settings
    runs: dict[str, RunResult]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> Iterator[Backend]:
    """Settings on one MLflow backend, with runs v1 (naive), v2 and v3 (LightGBM) registered."""
    home = tmp_path_factory.mktemp(f"tracking_{request.param}")
    scratch = None
    if request.param == "postgresql":
        scratch = _scratch_database(
            POSTGRES_ADMIN_URL, f"trademl_mlflow_test_{uuid.uuid4().hex[:10]}"
        )
        settings = Settings(home=home, mlflow_tracking_uri=next(scratch), mlflow_timeout_s=5)
    else:
        settings = Settings(home=home, mlflow_timeout_s=5)
    with open_default_store(settings) as store:
        import_path(data_dir / "crypto" / "BTCUSDT_1h.csv", store)
    runs = {
        label: run(
            tiny_run_config(home / "runs" / label, model, name=MODEL, gate=GATE),
            settings=settings,
        )
        for label, model in (("weak", WEAK), ("good", GOOD), ("better", BETTER))
    }
    yield Backend(request.param, settings, runs)
    if scratch is not None:
        scratch.close()  # drops the database, ending MLflow's pooled connections first
