"""Every python and bash block of the documentation runs, and prints what the page shows.

Blocks of one page run in order, in one temporary working folder (holding a copy of
``examples/``, with the shared data at ``../shared/data`` as beside a clone) with a fresh
``TRADEML_HOME``: python blocks share one namespace in this
process, bash blocks run in ``bash -euo pipefail`` with this venv's ``bin`` first on ``PATH``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from tests.docs.blocks import Block, blocks_of, output_matches, pages

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
# Blocks that need a long-running server; each page says why beside the block.
MOST_SKIPPED = 8

PAGES = [page for page in pages(DOCS) if blocks_of(page.read_text())]


def _environment(home: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEML_")}
    env.update(TRADEML_HOME=str(home), TRADEML_TEST_DATA=str(data_dir), NO_COLOR="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run_python(block: Block, namespace: dict[str, Any], where: str) -> str:
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        exec(compile(block.code, where, "exec"), namespace)
    return captured.getvalue()


def _run_bash(block: Block, env: dict[str, str], cwd: Path, where: str) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{where} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_examples_run(
    page: Path, data_dir: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    shutil.copytree(REPO / "examples", work / "examples")
    # As in a clone beside the shared data: pages may read ../shared/data.
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(data_dir, target_is_directory=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("TRADEML_TEST_DATA", str(data_dir))
    env = _environment(home, data_dir)
    # A module of its own as __main__, as `python page.py` would have: classes a page defines
    # can then be pickled (a model's save/load round trip).
    main_module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main_module)
    namespace = main_module.__dict__
    for block in blocks_of(page.read_text()):
        if block.skipped:
            continue
        where = f"{page.relative_to(REPO)}:{block.line}"
        if block.language == "python":
            output = _run_python(block, namespace, where)
        else:
            output = _run_bash(block, env, work, where)
        if block.expected is not None:
            assert output_matches(block.expected, output), (
                f"{where} printed:\n{output}\nthe page shows:\n{block.expected}"
            )


def test_few_blocks_are_skipped_and_each_says_why() -> None:
    skipped = [
        (page, block)
        for page in pages(DOCS)
        for block in blocks_of(page.read_text())
        if block.skipped
    ]
    assert len(skipped) <= MOST_SKIPPED, [f"{p.name}:{b.line}" for p, b in skipped]
    for page, block in skipped:
        above = "\n".join(page.read_text().splitlines()[: block.line - 1]).rstrip()
        paragraph = " ".join(above.rsplit("\n\n", 1)[-1].split())
        assert "not run in CI" in paragraph, f"{page.name}:{block.line} needs a reason above it"


def test_shown_output_is_checked() -> None:
    markdown = (
        "```python\nprint(1 + 1)\n```\n\n```text\n2\n```\n\n"
        "```{.bash .skip-ci}\ntrademl serve\n```\n```yaml\na: 1\n```\n"
    )
    first, second = blocks_of(markdown)
    assert (first.language, first.expected, first.line) == ("python", "2\n", 1)
    assert second.skipped and second.expected is None
    assert output_matches("rows: ...\nsharpe 1.5", "rows: 1200\nsharpe   1.5\n")
    assert not output_matches("2", "3")
    assert not output_matches("rows: 12", "rows: 12 and more")
