"""One plug-in mechanism: lazy built-ins, third-party entry points, one shape of error."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from tests.plugins.example import require_example_plugin

from trademl.backtest.strategy_table import STRATEGIES, Strategy
from trademl.config import Settings
from trademl.data.sources.base import SOURCES, get_source
from trademl.data.stores import STORES, open_store
from trademl.errors import ConfigError, UnknownPluginError
from trademl.features.indicators import INDICATORS, get_indicator
from trademl.jobs.tasks import JOB_KINDS
from trademl.models.base import MODELS, BaseModel, make_model
from trademl.models.gbm import LGBMModel
from trademl.plugins import GROUPS, PluginLoadError, PluginTable, PluginWarning
from trademl.validation.splitters import SPLITTERS

BROKEN_GROUP = "trademl_example.broken"


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip()


def test_importing_trademl_imports_no_plugin_module() -> None:
    """Listing names reads the built-in map and the entry-point metadata, nothing heavier."""
    loaded = run_python(
        "import sys, trademl\n"
        "from trademl.models.base import MODELS\n"
        "from trademl.data.sources.base import SOURCES\n"
        "from trademl.data.stores import STORES\n"
        "names = MODELS.names() + SOURCES.names() + STORES.names()\n"
        "heavy = ['trademl.models.gbm', 'trademl.models.deep', 'trademl.data.sources.yahoo',\n"
        "         'trademl.data.sources.ccxt_source', 'trademl.data.stores.sql_store',\n"
        "         'trademl.features.talib_indicators', 'lightgbm', 'torch']\n"
        "print(sorted(m for m in heavy if m in sys.modules), 'lgbm' in names)"
    )
    assert loaded == "[] True"


def test_get_imports_only_the_module_of_the_name() -> None:
    loaded = run_python(
        "import sys\n"
        "from trademl.models.base import make_model\n"
        "make_model('naive')\n"
        "print('trademl.models.naive' in sys.modules, 'trademl.models.gbm' in sys.modules)"
    )
    assert loaded == "True False"


def test_every_family_names_its_built_ins() -> None:
    assert {"naive", "lgbm", "xgb", "stacking", "gru"} <= set(MODELS.names())
    assert {"rsi", "sma", "alpha158_kbar", "log_return"} <= set(INDICATORS.names())
    assert {"binance", "ccxt", "polygon", "yahoo"} <= set(SOURCES.names())
    assert {"duckdb", "postgresql", "mysql", "mariadb"} <= set(STORES.names())
    assert {"maxmin", "direction"} <= set(STRATEGIES.names())
    assert GROUPS == {
        "models": "trademl.models",
        "indicators": "trademl.indicators",
        "sources": "trademl.sources",
        "stores": "trademl.stores",
        "strategies": "trademl.strategies",
    }


# Each family's lookup by a misspelt name, its table's kind, and the name the error names.
UNKNOWN: list[tuple[str, Callable[[], Any], str, str, str]] = [
    ("models", lambda: make_model("lgbmm"), "model kind", "lgbmm", "lgbm"),
    ("indicators", lambda: get_indicator("rsy"), "indicator", "rsy", "rsi"),
    ("sources", lambda: get_source("yahooo", Settings()), "source", "yahooo", "yahoo"),
    ("stores", lambda: open_store("duckbd:///x.db"), "store scheme", "duckbd", "duckdb"),
    ("strategies", lambda: STRATEGIES.get("maxmni"), "strategy", "maxmni", "maxmin"),
    ("job kinds", lambda: JOB_KINDS.get("trian"), "job kind", "trian", "train"),
    ("splitters", lambda: SPLITTERS.get("walkforward"), "splitter", "walkforward", "walk_forward"),
]


@pytest.mark.parametrize(("family", "lookup", "kind", "name", "close"), UNKNOWN)
def test_unknown_names_fail_alike_in_every_family(
    family: str, lookup: Callable[[], Any], kind: str, name: str, close: str
) -> None:
    """unknown <kind> '<name>'; did you mean '<close>'? (known: <every name>[; hint])."""
    with pytest.raises(UnknownPluginError) as caught:
        lookup()
    message = str(caught.value)
    shape = rf"^unknown {kind} '{name}'; did you mean '{close}'\? \(known: (?P<known>[^;)]+)"
    match = re.match(shape, message)
    assert match, message
    assert isinstance(caught.value, ConfigError)


def test_the_known_names_include_the_third_party_ones() -> None:
    require_example_plugin()
    with pytest.raises(UnknownPluginError, match=r"known: .*example_ridge"):
        make_model("no_such_kind")
    with pytest.raises(UnknownPluginError, match=r"known: .*examplemem"):
        open_store("nosuch://x")
    with pytest.raises(UnknownPluginError, match=r"known: .*example_folder"):
        get_source("nosuch", Settings())


def test_an_entry_point_registers_an_object_or_a_module_does() -> None:
    require_example_plugin()
    ridge = MODELS.get("example_ridge")  # value module:Object: the table registers it
    assert issubclass(ridge, BaseModel) and ridge.kind == "example_ridge"
    indicator = INDICATORS.get("range_mean")  # value a module: its import registered it
    assert indicator.source == "trademl-example-plugin"
    assert callable(SOURCES.get("example_folder")) and callable(STORES.get("examplemem"))
    assert isinstance(STRATEGIES.get("example_threshold"), Strategy)


def broken_table() -> PluginTable[type[BaseModel]]:
    """A model table over the example package's deliberately broken entry points."""

    def check(name: str, entry: type[BaseModel]) -> None:
        if not (isinstance(entry, type) and issubclass(entry, BaseModel)):
            raise TypeError(f"{entry!r} is not a model class")

    table: PluginTable[type[BaseModel]] = PluginTable(
        "model kind", group=BROKEN_GROUP, builtins={"lgbm": "trademl.models.gbm"}, check=check
    )
    table.register("lgbm")(LGBMModel)
    return table


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "missing_module",
            r"ModuleNotFoundError: No module named 'trademl_example.does_not_exist'",
        ),
        ("fails_on_import", r"failed to load: RuntimeError: trademl_example.broken is broken"),
        ("registers_nothing", r"imports module 'trademl_example.broken_empty', which registers no"),
        ("not_a_model", r"cannot be registered: .*is not a model class"),
    ],
)
def test_a_broken_entry_point_names_its_package_and_entry(name: str, message: str) -> None:
    require_example_plugin()
    table = broken_table()
    with pytest.raises(PluginLoadError, match=message) as caught:
        table.get(name)
    assert f"entry point '{name}'" in str(caught.value)
    assert "package 'trademl-example-plugin'" in str(caught.value)
    with pytest.raises(PluginLoadError):  # and again: a broken entry stays broken
        table.get(name)


def test_a_broken_entry_point_does_not_break_the_built_ins() -> None:
    require_example_plugin()
    table = broken_table()
    with pytest.warns(PluginWarning) as warned:
        loaded = table.load_all()
    assert loaded == {"lgbm": LGBMModel}
    assert len(warned) == 5  # four broken entries and the clash below
    # An entry point may not replace a built-in: the built-in is what the name gives.
    assert table.get("lgbm") is LGBMModel
    assert any("'lgbm' is built into trademl" in str(w.message) for w in warned)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table.load_all()  # warned once per table, not at every listing


def test_register_refuses_a_second_entry_under_one_name() -> None:
    table: PluginTable[object] = PluginTable("thing")
    table.register("a")(1)
    table.register("a")(1)  # the same entry again is fine (a module re-imported)
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        table.register("a")(2)
    assert "a" in table and list(table) == ["a"] and len(table) == 1
