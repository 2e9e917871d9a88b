"""Atomic writes (issue 14, item 7): the file and its folder are flushed to disk around the
rename, and the file's permissions are set on its handle, never through the process umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trademl.atomic import atomic_path


def test_file_and_folder_are_fsynced_around_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spies that call through to the real system calls, recording their order.
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(f"fsync {kind}")
        real_fsync(fd)

    def replace(source: str, target: str) -> None:
        calls.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "out" / "data.txt"
    with atomic_path(target) as temp:
        Path(temp).write_text("new")
    assert calls == ["fsync file", "rename", "fsync folder"]
    assert target.read_text() == "new" and os.listdir(target.parent) == ["data.txt"]


def test_permissions_come_from_the_handle_not_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed: list[int] = []
    real_umask = os.umask
    previous = real_umask(0o077)  # a strict umask: a file made through it would be 0600
    try:
        monkeypatch.setattr(os, "umask", lambda mask: changed.append(mask) or real_umask(mask))
        fresh = tmp_path / "fresh.txt"
        with atomic_path(fresh) as temp:
            Path(temp).write_text("x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o640)
        with atomic_path(kept) as temp:
            Path(temp).write_text("x")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640  # a replaced file keeps its mode
        with atomic_path(tmp_path / "private.txt", mode=0o600) as temp:
            Path(temp).write_text("x")
        assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
    finally:
        real_umask(previous)
    assert changed == []  # the process umask is never touched (it would race other threads)


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    target.write_text("old")

    def crash() -> None:
        with atomic_path(target) as temp:
            Path(temp).write_text("partial")
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        crash()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["data.txt"]
