"""The documentation site builds strictly (every internal link and anchor resolves, every
docstring parses), and the README's links into it point at pages that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).parent / "mkdocs"


def test_site_builds_strictly(tmp_path: Path) -> None:
    if not MKDOCS.exists():
        message = "mkdocs is not installed (pip install -e '.[docs]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "TRADEML_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for page in ("reference/cli", "reference/http", "reference/settings", "reference/python"):
        assert (site / page / "index.html").exists(), page
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "trademl data import" in cli and "--timeframe" in cli
    settings = (site / "reference" / "settings" / "index.html").read_text()
    assert "TRADEML_STORE_URL" in settings
    http = (site / "reference" / "http" / "index.html").read_text()
    assert "/api/v1/predict" in http


def test_readme_links_into_the_docs_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)", readme)
    for target in targets:
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_every_setting_has_a_description_for_the_generated_table() -> None:
    from trademl.config import Settings

    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not undocumented, f"settings without a description: {undocumented}"
