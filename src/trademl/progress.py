"""Progress bars on stderr (Rich), shown only when stderr is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

_console = Console(stderr=True)


class Advance(Protocol):
    """Callback that moves a progress bar forward by ``amount``."""

    def __call__(self, amount: float = 1) -> None:
        """Move the bar forward by ``amount``."""


@contextmanager
def progress_bar(
    description: str, total: float | None, *, unit: str = "items"
) -> Iterator[Advance]:
    """A transient Rich progress bar on stderr; yields a function advancing it.

    ``unit="bytes"`` shows sizes and transfer speed.
    """
    columns = [TextColumn("{task.description}"), BarColumn()]
    if unit == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn(), TextColumn(unit)]
    columns.append(TimeRemainingColumn())
    disabled = not sys.stderr.isatty()
    with Progress(*columns, console=_console, transient=True, disable=disabled) as progress:
        task = progress.add_task(description, total=total)

        def advance(amount: float = 1) -> None:
            progress.advance(task, amount)

        yield advance
