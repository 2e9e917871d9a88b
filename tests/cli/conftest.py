"""Run the real ``trademl`` entry point in-process and capture what a shell would see."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from trademl.cli.app import main


@dataclass
class Outcome:
    """Exit code and output of one CLI run."""

    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], home) -> Callable[..., Outcome]:
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
