"""The dependency floors in pyproject.toml are versions CI tests: every floor is satisfied by
what this environment installed, and none lags a major release behind it (a floor of pandas 2
while CI runs pandas 3 would promise an API nobody tested)."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# The runtime: the core and every layer's extra, and the documentation build.
CHECKED_EXTRAS = (
    "serve",
    "celery",
    "tracking",
    "deep",
    "onnx",
    "postgres",
    "mysql",
    "exchanges",
    "dex",
    "docs",
)


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = list(project["dependencies"])
    for extra in CHECKED_EXTRAS:
        listed += project["optional-dependencies"][extra]
    found = [Requirement(text) for text in listed]
    return [r for r in found if r.name != "trademl" and (r.marker is None or r.marker.evaluate())]


def _floor(requirement: Requirement) -> Version:
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert floors, f"{requirement} has no floor (>=): say which version CI tested"
    return max(floors)


def _problem(requirement: Requirement, installed: Version) -> str | None:
    """What is wrong with ``requirement``'s floor when ``installed`` is what CI tests."""
    if not requirement.specifier.contains(installed, prereleases=True):
        return f"{requirement.name} {installed} is installed, outside {requirement.specifier}"
    floor = _floor(requirement)
    # 0.x releases break at minors and move weekly: the containment above is their check.
    if installed.major >= 1 and floor.major != installed.major:
        return (
            f"{requirement.name}: the floor {floor} is a major release behind the tested "
            f"{installed}; raise it to what CI tests"
        )
    return None


@pytest.mark.parametrize("requirement", _requirements(), ids=str)
def test_the_floor_is_the_tested_major_release(requirement: Requirement) -> None:
    installed = Version(importlib.metadata.version(requirement.name))
    assert _problem(requirement, installed) is None


def test_a_floor_behind_what_ci_tests_is_caught() -> None:
    tested = Version("3.1.1")
    assert "major release behind" in str(_problem(Requirement("pandas>=2.2"), tested))
    assert "outside" in str(_problem(Requirement("pandas>=3.2"), tested))
    assert _problem(Requirement("pandas>=3.1"), tested) is None
    assert _problem(Requirement("fastapi>=0.115"), Version("0.165.0")) is None
