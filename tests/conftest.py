"""Shared fixtures: the real market data of ../shared/data and an isolated TRADEML_HOME."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trademl.cli.app import main
from trademl.config import Settings, _cached_settings, reload_settings

# A third-party plug-in package (installed by make install); its modules are not tests, and
# one of them fails to import on purpose.
collect_ignore = ["example_plugin"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Folders whose conftest builds a session fixture many files share (a registry with trained
# versions, a worker, a browser): under pytest-xdist each runs on one worker, built once.
_SHARED_SESSION_FOLDERS = {"serving", "tracking", "jobs"}


def xdist_scope(nodeid: str) -> str:
    """What runs whole on one pytest-xdist worker: a test file (its module fixtures built
    once), or a whole folder of :data:`_SHARED_SESSION_FOLDERS`.

    >>> xdist_scope("tests/serving/ui/test_dashboard.py::test_a[en]")
    'tests/serving'
    >>> xdist_scope("tests/models/test_gbm.py::test_b")
    'tests/models/test_gbm.py'
    """
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    if len(parts) > 2 and parts[0] == "tests" and parts[1] in _SHARED_SESSION_FOLDERS:
        return "/".join(parts[:2])
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``make test``'s ``pytest -n 2``: whole scopes (:func:`xdist_scope`) per worker."""
    from xdist.scheduler import LoadScopeScheduling

    class ScopeScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ScopeScheduling(config, log)


def market_data_dir() -> Path:
    """Where the shared real market data lives (TRADEML_TEST_DATA, default ../shared/data)."""
    configured = os.environ.get("TRADEML_TEST_DATA")
    if configured:
        return Path(configured).expanduser().resolve()
    return (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared market-data folder; fails under CI, skips locally, when it is missing."""
    path = market_data_dir()
    if not (path / "crypto" / "BTCUSDT_1h.csv").exists():
        message = f"market data not found at {path} (set TRADEML_TEST_DATA)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty TRADEML_HOME for one test, with settings re-read."""
    root = tmp_path / "home"
    monkeypatch.setenv("TRADEML_HOME", str(root))
    monkeypatch.delenv("TRADEML_STORE_URL", raising=False)
    reload_settings()
    yield root
    # Lazily re-read after monkeypatch has restored the environment.
    _cached_settings.cache_clear()


@pytest.fixture
def settings(home: Path) -> Settings:
    """Settings pointing at the per-test home."""
    return Settings(home=home)


# -- real database servers ---------------------------------------------------------------------

POSTGRES_ADMIN_URL = os.environ.get(
    "TRADEML_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL = os.environ.get("TRADEML_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")


def _service_missing(name: str, error: Exception) -> None:
    message = f"{name} is not reachable: {error}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _scratch_database(admin_url: str, name: str) -> Iterator[str]:
    """Create a throw-away database on a real server; drop it afterwards."""
    import sqlalchemy as sa

    from trademl.data.stores.sql_store import normalise_url

    url = sa.engine.make_url(normalise_url(admin_url))
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as error:
        engine.dispose()
        _service_missing(url.get_backend_name(), error)
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            if url.get_backend_name() == "postgresql":
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on this machine's PostgreSQL for the test session."""
    yield from _scratch_database(POSTGRES_ADMIN_URL, f"trademl_test_{os.getpid()}")


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh database on this machine's MariaDB for the test session."""
    yield from _scratch_database(MARIADB_ADMIN_URL, f"trademl_test_{os.getpid()}")


STORE_BACKENDS = ["duckdb", "postgresql", "mariadb"]


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One URL per backend; SQL backends get an emptied candles table for each test."""
    backend = request.param
    if backend == "duckdb":
        yield f"duckdb:///{tmp_path / 'market.duckdb'}"
        return
    url = request.getfixturevalue("postgres_url" if backend == "postgresql" else "mariadb_url")
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS candles")
    engine.dispose()
    yield url


# -- the CLI, in process -----------------------------------------------------------------------


@dataclass
class Outcome:
    """Exit code and output of one CLI run."""

    code: int
    stdout: str
    stderr: str


def cli_runner(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """Run ``trademl`` in process with these arguments, capturing its exit code and output."""

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as stop:
            code = int(stop.code or 0) if not isinstance(stop.code, str) else 1
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], home) -> Callable[..., Outcome]:
    return cli_runner(capsys)
