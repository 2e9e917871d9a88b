"""The README's Python example runs as written (on the shared data)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_examples_run(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README has no Python example"
    for number, block in enumerate(blocks):
        code = block.replace("../shared/data", str(data_dir)).replace(
            "/tmp/market.duckdb", str(tmp_path / "m.duckdb")
        )
        script = tmp_path / f"example_{number}.py"
        script.write_text(code)
        monkeypatch.chdir(tmp_path)
        runpy.run_path(str(script), run_name="__main__")


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text().split("## ", 1)[0]
    assert head.index("make demo") < head.index("make test")
