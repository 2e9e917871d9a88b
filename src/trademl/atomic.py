"""Atomic file writes: a temporary file in the target's folder, renamed into place when done."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: str | Path) -> Iterator[str]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``.

    A crash or an exception leaves ``target`` as it was and no partial file behind.
    """
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=final.parent, prefix=".part-", suffix=final.name)
    os.close(handle)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    try:
        yield temp
        os.replace(temp, final)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
