"""Where a config's paths may point: one resolver for every path a run or backtest config
names (feature-set files, a backtest's ``train`` config and ``run`` folder, ``output``).

A job submitted to the service resolves them under ``TRADEML_HOME`` only (reads from
``runs/`` and ``configs/``, writes to ``runs/``), so a config cannot make the service read or
overwrite any other file; a user at their own shell (the CLI, the library) gets the same
resolver with the whole file system as its root.

>>> policy = PathPolicy.service(Path("/srv/trademl"))
>>> policy.write("runs/btc", "output").as_posix()
'/srv/trademl/runs/btc'
>>> policy.read("/etc/shadow", "train")
Traceback (most recent call last):
...
trademl.errors.ConfigError: train: '/etc/shadow' is outside the folders a job may read (runs/, configs/ under TRADEML_HOME)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trademl.errors import ConfigError

if TYPE_CHECKING:
    from trademl.backtest.config import BacktestConfig
    from trademl.config import DataSection, RunConfig

LOCK_NAME = ".trademl.lock"


@dataclass(frozen=True)
class PathPolicy:
    """How config strings become paths, and which folders they may land in.

    Parameters
    ----------
    base : Path
        What relative paths are relative to.
    read_roots, write_roots : tuple of Path
        Folders that a read (write) path must resolve into, symbolic links followed.
    allow_parent : bool
        Whether a path may contain ``..`` at all.
    described : str
        The allowed folders in words, for error messages (never an absolute server path).
    """

    base: Path
    read_roots: tuple[Path, ...]
    write_roots: tuple[Path, ...]
    allow_parent: bool
    described_reads: str
    described_writes: str

    @classmethod
    def service(cls, home: Path) -> PathPolicy:
        """A job's policy: reads under ``home/runs`` and ``home/configs``, writes under
        ``home/runs``, relative paths relative to ``home``, no ``..``."""
        return cls(
            base=home,
            read_roots=(home / "runs", home / "configs"),
            write_roots=(home / "runs",),
            allow_parent=False,
            described_reads="runs/, configs/ under TRADEML_HOME",
            described_writes="runs/ under TRADEML_HOME",
        )

    @classmethod
    def local(cls) -> PathPolicy:
        """A user's own policy (CLI, library): any path they can reach, relative to the
        working directory."""
        root = Path(Path.cwd().anchor or "/")
        return cls(
            base=Path.cwd(),
            read_roots=(root,),
            write_roots=(root,),
            allow_parent=True,
            described_reads="the file system",
            described_writes="the file system",
        )

    def read(self, value: str, field: str) -> Path:
        """The absolute path a config's ``field`` names for reading; raises ConfigError when
        it leaves the read roots."""
        return self._resolve(value, field, self.read_roots, "read", self.described_reads)

    def write(self, value: str, field: str) -> Path:
        """The absolute folder a config's ``field`` names for writing; raises ConfigError
        when it leaves the write roots."""
        return self._resolve(value, field, self.write_roots, "write", self.described_writes)

    def _resolve(
        self, value: str, field: str, roots: tuple[Path, ...], verb: str, described: str
    ) -> Path:
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise ConfigError(f"{field}: expected a path, got {value!r}")
        given = Path(value)
        if not self.allow_parent and ".." in given.parts:
            raise ConfigError(f"{field}: {value!r} contains '..'; give a path under {described}")
        candidate = given if given.is_absolute() else self.base / given
        try:
            # Symbolic links are followed, so a link inside a root to a file outside is caught.
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as error:  # a link loop
            raise ConfigError(
                f"{field}: {value!r} cannot be resolved ({type(error).__name__})"
            ) from None
        if not any(resolved.is_relative_to(root.resolve()) for root in roots):
            raise ConfigError(
                f"{field}: {value!r} is outside the folders a job may {verb} ({described})"
            )
        return resolved


@contextlib.contextmanager
def output_lock(folder: Path, field: str = "output") -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for one run: a second run naming the same folder
    while this one writes fails at once with a ConfigError instead of mixing its files in.

    The lock is an exclusive ``flock`` on a file in the folder, so it holds across threads and
    processes of one host and is released by the kernel if the process dies.
    """
    folder.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    handle = os.open(folder / LOCK_NAME, flags, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"{field}: the folder {folder.name!r} is being written by another run; "
                "give each run its own output folder"
            ) from None
        yield folder
    finally:
        os.close(handle)  # closing releases the lock


def _is_file_name(features: str) -> bool:
    # As load_feature_set decides: a .yaml/.yml name is a file, anything else a preset.
    return Path(features).suffix in (".yaml", ".yml")


def resolve_run_paths(cfg: RunConfig, policy: PathPolicy) -> RunConfig:
    """``cfg`` with its feature-set file and ``output`` as absolute paths allowed by
    ``policy``, and a ``data.universe`` file (allowed by it too) replaced by the symbols it
    lists; raises ConfigError naming the field otherwise. Nothing else is read or created."""
    update: dict[str, Any] = {"output": policy.write(cfg.output, "output").as_posix()}
    if _is_file_name(cfg.features):
        update["features"] = policy.read(cfg.features, "features").as_posix()
    if cfg.data.universe is not None:
        update["data"] = _universe_data(cfg, policy.read(cfg.data.universe, "data.universe"))
    return cfg.model_copy(update=update)


def _universe_data(cfg: RunConfig, path: Path) -> DataSection:
    """The data section with the universe file's symbols as ``symbols``, validated as if the
    config had listed them (so a mixed timeframe or a duplicate is named the same way)."""
    import yaml

    from trademl.config import load_config_file

    if not path.is_file():
        raise ConfigError(f"data.universe: {path} is not a file")
    text = path.read_text()
    entries: Any
    if path.suffix in (".yaml", ".yml"):
        try:
            entries = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"data.universe: {path} is not valid YAML: {error}") from None
    else:  # one symbol a line; '#' starts a comment
        entries = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        entries = [entry for entry in entries if entry]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"data.universe: {path} must list symbols (one a line, or a YAML list)")
    fields = cfg.data.model_dump(exclude={"universe", "symbols"})
    try:
        return load_config_file({**fields, "symbols": entries}, type(cfg.data), "symbols")
    except ConfigError as error:
        raise ConfigError(f"data.universe {path}: {str(error).removeprefix('config: ')}") from None


def resolve_backtest_paths(cfg: BacktestConfig, policy: PathPolicy) -> BacktestConfig:
    """``cfg`` with ``run`` or ``train`` and ``output`` as absolute paths allowed by
    ``policy``; raises ConfigError naming the field otherwise. Nothing is read or created."""
    update = {"output": policy.write(cfg.output, "output").as_posix()}
    if cfg.run is not None:
        update["run"] = policy.read(cfg.run, "run").as_posix()
    if cfg.train is not None:
        update["train"] = policy.read(cfg.train, "train").as_posix()
    return cfg.model_copy(update=update)
