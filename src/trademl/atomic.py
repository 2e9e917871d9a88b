"""Atomic file writes: a temporary file in the target's folder, made durable and renamed into
place when done.

Durable means: the file's bytes are flushed to disk (``fsync``) before the rename, and the
folder's entry after it, so that a power loss leaves either the old file or the whole new one,
never an empty or partial file under the final name.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_MODE = 0o644


def _mode_for(final: Path, mode: int | None) -> int:
    if mode is not None:
        return mode
    try:
        return stat.S_IMODE(final.stat().st_mode)  # a replaced file keeps its permissions
    except FileNotFoundError:
        return DEFAULT_MODE


def fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename or a new file in it) to disk."""
    handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def atomic_path(target: str | Path, mode: int | None = None) -> Iterator[str]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``.

    A crash or an exception leaves ``target`` as it was and no partial file behind. The new
    file gets ``mode`` (default: the replaced file's, else 0o644), set on its handle: the
    process umask is neither read nor changed (changing it would race with other threads).
    """
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=final.parent, prefix=".part-", suffix=final.name)
    os.close(handle)
    try:
        yield temp
        # Whatever the caller wrote through the path is now in this file (a writer may also
        # have replaced it): open it again to set its mode and flush it.
        written = os.open(temp, os.O_RDONLY)
        try:
            os.fchmod(written, _mode_for(final, mode))
            os.fsync(written)
        finally:
            os.close(written)
        os.replace(temp, final)
        fsync_folder(final.parent)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
