"""The shipped conformance checks over every registered plug-in, third-party ones included.

Each family's table is loaded whole (built-ins and entry points), so a new kind, indicator or
strategy is checked the moment it is registered, with the checks its capabilities call for.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.plugins.example import require_example_plugin

from trademl.backtest.strategy_table import STRATEGIES
from trademl.config import Settings
from trademl.data.sources.base import SOURCES, get_source
from trademl.data.sources.files import read_candle_file
from trademl.data.stores import STORES, open_store
from trademl.features.indicators import INDICATORS
from trademl.models.base import MODELS, BaseModel
from trademl.testing import (
    SourceCase,
    StoreCase,
    check_source,
    check_store,
    parametrize_with_checks,
)
from trademl.testing.models import model_instances

# Small settings for whichever kinds take them (each kind gets only its own parameters):
# few trees, tiny networks, cheap stacking. Which checks run is up to each kind's capabilities.
FAST: dict[str, Any] = {
    "n_estimators": 30,
    "learning_rate": 0.1,
    "n_jobs": 1,
    "seq_len": 3,
    "hidden": 8,
    "epochs": 2,
    "batch_size": 64,
    "n_threads": 1,
    "base_models": [
        {"kind": "lgbm", "params": {"n_estimators": 30, "n_jobs": 1}},
        {"kind": "naive", "params": {"strategy": "mean"}},
    ],
}


def every_model() -> list[BaseModel]:
    models = []
    for kind, cls in MODELS.load_all().items():
        params = {k: v for k, v in FAST.items() if k in cls.param_names()}
        models.extend(model_instances(kind, params))
    return models


@parametrize_with_checks(every_model())
def test_every_model_kind(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


@parametrize_with_checks(list(INDICATORS.load_all().values()))
def test_every_indicator(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


@parametrize_with_checks(list(STRATEGIES.load_all().values()))
def test_every_strategy(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


def test_every_model_kind_and_strategy_is_covered() -> None:
    """Registered means checked: the lists above are the tables, not a hand-kept copy."""
    assert {m.kind for m in every_model()} == set(MODELS.names())
    assert set(STRATEGIES.load_all()) == set(STRATEGIES.names())
    assert set(INDICATORS.load_all()) == set(INDICATORS.names())


# -- stores: a fresh, empty store per check --------------------------------------------------


@pytest.fixture
def fresh_stores(tmp_path: Path) -> Callable[[str], StoreCase]:
    """``case(url)``: a StoreCase whose every open is a new DuckDB file or a new SQL table."""
    counter = itertools.count()

    def case(url: str) -> StoreCase:
        if url.startswith("duckdb:"):
            return StoreCase(
                "duckdb", lambda: open_store(f"duckdb:///{tmp_path}/{next(counter)}.db")
            )

        def reopen() -> Any:
            import sqlalchemy as sa

            engine = sa.create_engine(url)
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE IF EXISTS candles")
            engine.dispose()
            return open_store(url)

        return StoreCase(url.split(":", 1)[0], reopen)

    return case


@pytest.mark.integration
def test_every_built_in_store(store_url: str, fresh_stores: Callable[[str], StoreCase]) -> None:
    """DuckDB, PostgreSQL and MariaDB (conftest's store_url), each through open_store."""
    check_store(fresh_stores(store_url))


def test_the_third_party_store() -> None:
    require_example_plugin()
    check_store(StoreCase("examplemem", lambda: open_store(f"examplemem://{uuid.uuid4().hex}")))


def test_every_store_scheme_opens_a_checked_backend() -> None:
    """The SQL aliases open the SQL store that the integration check above covers."""
    built_in = {"duckdb", "postgresql", "postgres", "mysql", "mariadb"}
    assert built_in <= set(STORES.names())
    assert {STORES.get(s) for s in built_in - {"duckdb"}} == {STORES.get("postgresql")}


# -- sources ---------------------------------------------------------------------------------


def test_the_third_party_source(data_dir: Path) -> None:
    require_example_plugin()
    folder = data_dir / "crypto"
    expected = read_candle_file(folder / "BTCUSDT_1h.csv")
    start, end = pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2024-03-04", tz="UTC")
    source = get_source(f"example_folder:{folder}", Settings(home=Path("/nonexistent")))
    check_source(SourceCase(source, "BTCUSDT", "1h", start, end, expected=expected))


def test_every_built_in_source_has_a_conformance_test() -> None:
    """The built-in sources download: each is checked against its local server in
    tests/data/sources (a test calling check_source), not here."""
    root = Path(__file__).resolve().parents[1] / "data" / "sources"
    modules = {"binance": "binance", "ccxt": "ccxt_source", "polygon": "polygon", "yahoo": "yahoo"}
    for name in SOURCES.names():
        if name in modules:
            text = (root / f"test_{modules[name]}.py").read_text()
            assert "check_source(" in text, f"source {name} has no conformance test"
