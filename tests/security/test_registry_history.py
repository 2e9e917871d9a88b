"""Item 5 of issue 14, on PostgreSQL (where MLflow's tags are VARCHAR(5000)): the decision
history cannot overflow, concurrent decisions are never lost, and a fault between the record
and the alias move leaves a consistent pair from which rollback finds the previous champion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import POSTGRES_ADMIN_URL, _scratch_database
from tests.support.training import tiny_run_config

from trademl.api import train as run
from trademl.config import Settings
from trademl.data.ingest import import_path, open_default_store
from trademl.errors import ModelNotFoundError
from trademl.tracking import decisions as decision_log
from trademl.tracking.client import connect
from trademl.tracking.registry import history, promote, resolve_version, rollback

MODEL = "BTCUSDT_1h_history_test"
REASON = "r" * 2000


@dataclass
class Registry:
    settings: Settings
    env: dict[str, str]  # for processes deciding on the same registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Registry]:
    """Three naive versions on a PostgreSQL MLflow backend, none promoted (impossible gate)."""
    scratch = _scratch_database(POSTGRES_ADMIN_URL, f"trademl_history_{uuid.uuid4().hex[:10]}")
    url = next(scratch)
    home = tmp_path_factory.mktemp("security_history")
    settings = Settings(home=home, mlflow_tracking_uri=url, mlflow_timeout_s=5)
    with open_default_store(settings) as store:
        import_path(data_dir / "crypto" / "BTCUSDT_1h.csv", store)
    for label in ("v1", "v2", "v3"):
        model = {"kind": "naive", "name": label}
        run(
            tiny_run_config(home / "runs" / label, model, name=MODEL, gate={"min_rows": 10**6}),
            settings=settings,
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEML_")}
    env.update(TRADEML_HOME=str(home), TRADEML_MLFLOW_TRACKING_URI=url)
    yield Registry(settings, env)
    scratch.close()


def champion(settings: Settings) -> int:
    return resolve_version(MODEL, "champion", settings).version


def consistent(settings: Settings) -> decision_log.Log:
    """The log replays to the alias, and every promotion names the champion it replaced."""
    log = decision_log.read_log(connect(settings), MODEL)
    assert log.champion == champion(settings)
    before: int | None = None
    for event in log.events:
        if event.action in ("promoted", "rollback"):
            assert event.previous == before, event
        before = log.stacks[event.seq][-1] if log.stacks[event.seq] else None
    return log


def test_a_hundred_cycles_with_long_reasons(registry: Registry) -> None:
    settings = registry.settings
    promote(MODEL, 1, force=True, settings=settings, reason=REASON)
    for cycle in range(100):
        promote(MODEL, 2, force=True, settings=settings, reason=f"{cycle} {REASON}")
        assert champion(settings) == 2
        back = rollback(MODEL, settings=settings, reason=f"{cycle} {REASON}")
        assert (back.version, back.previous) == (1, 2) and champion(settings) == 1
    with pytest.raises(ModelNotFoundError, match="nothing to roll back to"):
        rollback(MODEL, settings=settings)
    events = history(MODEL, settings)
    rollbacks = [e for e in events if e["action"] == "rollback"]
    assert len(rollbacks) == 100 and len([e for e in events if e["action"] == "promoted"]) == 101
    assert all(e["reason"].endswith(REASON) and len(e["reason"]) > 2000 for e in rollbacks)
    consistent(settings)


DECIDER = """
import sys
from trademl.errors import ConfigError
from trademl.tracking.registry import promote
marker, rounds = sys.argv[1], int(sys.argv[2])
done = []
for i in range(rounds):
    for version in (3, 2, 1):
        try:
            promote("{model}", version, force=True, reason=f"{{marker}}-{{i}}")
        except ConfigError:  # already the champion: another process got there first
            continue
        done.append(f"{{marker}}-{{i}}")
        break
print(",".join(done))
"""


def test_concurrent_promotions_from_two_processes_lose_nothing(registry: Registry) -> None:
    script = DECIDER.format(model=MODEL)
    deciders = [
        subprocess.Popen(
            [sys.executable, "-c", script, marker, "8"],
            env=registry.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for marker in ("alpha", "beta")
    ]
    decided = []
    for process in deciders:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        decided.extend(m for m in out.strip().split(",") if m)
    assert len(decided) == 16
    logged = [
        e["reason"].rsplit("; ", 1)[-1] for e in history(MODEL, registry.settings)
        if e["action"] == "promoted"
    ]  # fmt: skip
    assert sorted(m for m in logged if m.startswith(("alpha", "beta"))) == sorted(decided)
    consistent(registry.settings)


@pytest.fixture
def fault() -> Iterator[None]:
    yield
    decision_log.fault_hook = None


CRASHER = """
import os
from trademl.tracking import decisions as history
from trademl.tracking.registry import promote

def crash(point):
    if point == "{point}":
        os._exit(3)  # no cleanup, no compensation: as a killed process

history.fault_hook = crash
promote("{model}", {version}, force=True, reason="crashes")
"""


@pytest.mark.usefixtures("fault")
def test_a_fault_between_the_record_and_the_alias_move(registry: Registry) -> None:
    settings = registry.settings
    start = champion(settings)
    other = 3 if start != 3 else 2

    def fail(point: str) -> None:
        if point == "logged":
            raise RuntimeError("injected fault")

    decision_log.fault_hook = fail
    with pytest.raises(RuntimeError, match="injected fault"):
        promote(MODEL, other, force=True, settings=settings)
    decision_log.fault_hook = None
    log = consistent(settings)  # compensated: reverted in the log, alias unchanged
    assert champion(settings) == start and log.events[-1].action == "reverted"
    # A process killed after the record, before the move: the next decision finishes it.
    for point in ("logged", "moved"):
        code = CRASHER.format(point=point, model=MODEL, version=other)
        died = subprocess.run([sys.executable, "-c", code], env=registry.env, check=False)
        assert died.returncode == 3
        back = rollback(MODEL, settings=settings, reason=f"after a crash at {point}")
        assert (back.version, back.previous) == (start, other)
        assert champion(settings) == start
        consistent(settings)
    assert json.dumps(history(MODEL, settings))  # readable, whole
