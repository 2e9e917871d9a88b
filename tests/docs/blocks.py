"""The fenced code blocks of the documentation pages, and how their shown output is checked.

A block opens with three backticks and a language (```` ```bash ````), or with an attribute
list whose first class is the language and whose other classes are flags (the form MkDocs'
superfences renders): ```` ```{.bash .skip-ci} ```` marks a block that needs something CI
does not start for the docs (a long-running server, several machines); the page says why on
the line above it. A ```` ```text ```` block right after a python or bash block is
the output that block must print, compared as doctest does with ``ELLIPSIS`` and
``NORMALIZE_WHITESPACE`` (``...`` stands for any text).
"""

from __future__ import annotations

import doctest
import re
from dataclasses import dataclass
from pathlib import Path

RUNNABLE = ("python", "bash")
SKIP_FLAG = "skip-ci"
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_CHECKER = doctest.OutputChecker()
_OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass(frozen=True)
class Block:
    """One runnable block of a page, with the output the page shows for it (if any)."""

    language: str
    flags: tuple[str, ...]
    code: str
    line: int
    expected: str | None

    @property
    def skipped(self) -> bool:
        """Whether the block is marked not to run in CI."""
        return SKIP_FLAG in self.flags


def _info(info: str) -> tuple[str, tuple[str, ...]]:
    """The language and flags of a fence's info string."""
    info = info.strip()
    if info.startswith("{"):
        classes = re.findall(r"\.([\w-]+)", info)
        return (classes[0], tuple(classes[1:])) if classes else ("", ())
    words = info.split()
    return (words[0], tuple(words[1:])) if words else ("", ())


def blocks_of(markdown: str) -> list[Block]:
    """The python and bash blocks of ``markdown``, each with the text block that follows it."""
    fences = list(_FENCE.finditer(markdown))
    found: list[Block] = []
    for number, fence in enumerate(fences):
        language, flags = _info(fence.group(1))
        if language not in RUNNABLE:
            continue
        expected = None
        if number + 1 < len(fences):
            following = fences[number + 1]
            between = markdown[fence.end() : following.start()]
            if _info(following.group(1))[0] == "text" and not between.strip():
                expected = following.group(2)
        found.append(
            Block(
                language=language,
                flags=flags,
                code=fence.group(2),
                line=markdown.count("\n", 0, fence.start()) + 1,
                expected=expected,
            )
        )
    return found


def output_matches(expected: str, got: str) -> bool:
    """Whether ``got`` is the output ``expected`` shows (doctest's ELLIPSIS rules)."""
    return bool(_CHECKER.check_output(expected.strip() + "\n", got.strip() + "\n", _OPTIONS))


def pages(root: Path) -> list[Path]:
    """Every markdown page under ``root``, sorted."""
    return sorted(root.rglob("*.md"))
