"""The example third-party package of tests/example_plugin, which CI installs (make install)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tests.conftest import IN_CI

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "example_plugin"


def require_example_plugin() -> None:
    """Skip (fail under CI) when the example plug-in package is not installed."""
    if importlib.util.find_spec("trademl_example") is None:
        message = f"the example plug-in is not installed: pip install -e {EXAMPLE_PLUGIN}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
