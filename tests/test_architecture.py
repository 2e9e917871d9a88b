"""The layers stay layered: no import cycles, no inner layer importing an outer one, the core
training and serving its own model with MLflow absent, and ``import trademl`` loading nothing
heavy. ``bench/import_graph.py`` prints the same graph."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_PACKAGES = ("data", "features", "models", "validation", "backtest", "monitoring")
OUTER_PACKAGES = ("tracking", "serving", "jobs", "cli")


def _graph_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "import_graph", ROOT / "bench" / "import_graph.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GRAPH = _graph_module()


@pytest.mark.parametrize("typing", [False, True], ids=["runtime", "with-type-only-imports"])
def test_no_import_cycles(typing: bool) -> None:
    edges, _, _ = GRAPH.graph(typing)
    assert GRAPH.cycles(edges) == []


def test_no_inner_layer_imports_an_outer_one() -> None:
    edges, _, _ = GRAPH.graph(True)
    assert GRAPH.upward(edges) == []


def test_core_packages_never_import_tracking_serving_jobs_or_cli() -> None:
    # Stated apart from the layer table, so that editing the table cannot hide a violation.
    edges, _, _ = GRAPH.graph(True)
    core = tuple(f"trademl.{p}" for p in CORE_PACKAGES)
    outer = tuple(f"trademl.{p}" for p in OUTER_PACKAGES)
    bad = sorted(
        (v, w) for v, ws in edges.items() if v.startswith(core) for w in ws if w.startswith(outer)
    )
    assert bad == []


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    edges = {
        "trademl.models.a": {"trademl.models.b"},
        "trademl.models.b": {"trademl.models.a", "trademl.tracking.x"},
    }
    assert GRAPH.cycles(edges) == [["trademl.models.a", "trademl.models.b"]]
    assert GRAPH.upward(edges) == [("trademl.models.b", "trademl.tracking.x")]


def test_deferred_imports_count(tmp_path: Path) -> None:
    # An import inside a function is an edge like any other: it hides a cycle, not removes it.
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from trademl.tracking import registry\n")
    found = GRAPH.imports(source, "trademl.models.mod", False)
    assert ("trademl.tracking", True) in found


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
        cwd=ROOT,
    )


def test_import_trademl_loads_no_framework() -> None:
    done = _python(
        """
        import sys, trademl
        heavy = ("trademl.api", "mlflow", "torch", "lightgbm", "sklearn", "pandas", "fastapi")
        print(",".join(m for m in heavy if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_core_trains_saves_and_serves_without_mlflow(data_dir: Path, tmp_path: Path) -> None:
    # MLflow made unimportable: the core must train from candles in memory, save its pipeline
    # model with the run, load it back and predict, never touching the tracking layer.
    done = _python(
        f"""
        import sys
        sys.modules["mlflow"] = None
        import pandas as pd
        from trademl.config import Settings
        from trademl.data.sources.files import read_candle_file
        from trademl.pipeline import load_run_pipeline
        from trademl.workflow import run

        candles = read_candle_file({str(data_dir / "crypto" / "BTCUSDT_1h.csv")!r})
        candles = candles.loc["2023-01-01":"2023-04-30"]
        config = {{
            "data": {{"symbol": "BTCUSDT", "timeframe": "1h"}},
            "features": "minimal",
            "labels": {{"kinds": ["direction", "max_high"], "horizons": [6]}},
            "models": [{{"kind": "lgbm", "params": {{"n_estimators": 20}}}}],
            "validation": {{"kind": "walk_forward",
                           "params": {{"test_size": 400, "n_splits": 2, "min_train_size": 1500}}}},
            "output": {str(tmp_path / "run")!r},
        }}
        settings = Settings(home={str(tmp_path / "home")!r}, tracking=True)
        result = run(config, settings=settings, candles=candles)
        assert result.run_id is None
        pipeline = load_run_pipeline(result.output)
        last = pipeline.predict_last(candles)
        assert last.timestamp == candles.index[-1]
        assert pipeline.predict(candles).iloc[-1]["6__high"] == last.values["6__high"]
        print("mlflow" in sys.modules and sys.modules["mlflow"] is not None)
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
