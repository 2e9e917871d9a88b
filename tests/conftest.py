"""Shared fixtures: the real market data of ../shared/data and an isolated TRADEML_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from trademl.config import Settings, reload_settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
    reload_settings()


@pytest.fixture
def settings(home: Path) -> Settings:
    """Settings pointing at the per-test home."""
    return Settings(home=home)
