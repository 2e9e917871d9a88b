"""One plug-in mechanism for every family: model kinds, indicators, sources, stores, strategies.

A :class:`PluginTable` maps names to entries. Entries come from three places, all looked up
the same way and all named the same way in errors:

* ``register(name)``: a decorator, run when the module holding the entry is imported;
* the built-ins: a name → module map (and, for families with many names per module, a list of
  modules), imported on the first :meth:`PluginTable.get` or :meth:`PluginTable.names` that
  needs them, so that ``import trademl`` and a CLI start import none of them;
* Python entry points of the table's group (``trademl.models``, ``trademl.indicators``,
  ``trademl.sources``, ``trademl.stores``, ``trademl.strategies``), for third-party packages.

An entry point's *name* is the plug-in's name. Its *value* is either an object
(``package.module:Object``), which the table registers under that name, or a module
(``package.module``), whose import must register the name itself (with the family's
decorator, as the built-in modules do). Entry points are listed once, on first need, and each
is loaded only when its name is asked for (or when every entry is wanted, as for a listing).
A broken entry point (its import fails, it names nothing registrable, it clashes with a
built-in) raises :class:`PluginLoadError` naming the package and the entry
when it is asked for by name; listings skip it with a :class:`PluginWarning`, so a broken
third-party package never breaks the built-ins.

Every unknown name raises :class:`~trademl.errors.UnknownPluginError` with one shape: the
name, the closest known name, and every known name (built-in and entry points).

>>> sources: PluginTable[object] = PluginTable("source")
>>> @sources.register("demo")
... class Demo: ...
>>> sources.get("demo") is Demo
True
>>> sources.get("dmeo")
Traceback (most recent call last):
...
trademl.errors.UnknownPluginError: unknown source 'dmeo'; did you mean 'demo'? (known: demo)
"""

from __future__ import annotations

import difflib
import importlib
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from trademl.errors import ConfigError, UnknownPluginError

T = TypeVar("T")

GROUPS: dict[str, str] = {
    "models": "trademl.models",
    "indicators": "trademl.indicators",
    "sources": "trademl.sources",
    "stores": "trademl.stores",
    "strategies": "trademl.strategies",
}
"""The entry-point group of each plug-in family."""


class PluginLoadError(ConfigError):
    """A third-party entry point is broken: its import failed, it registers nothing under its
    name, or it clashes with another plug-in. The message names the package and the entry."""


class PluginWarning(UserWarning):
    """A third-party entry point could not be loaded; the other plug-ins still work."""


@dataclass(frozen=True)
class _External:
    """One entry point of the table's group, not loaded yet."""

    entry: EntryPoint
    package: str

    def describe(self) -> str:
        return f"entry point {self.entry.name!r} = {self.entry.value!r} of package {self.package!r}"


def callable_entry(what: str) -> Callable[[str, Any], None]:
    """A registration check refusing entries that are not callable; ``what`` says what a
    factory of the family must be (``"a factory (url, chunk_rows) -> MarketStore"``)."""

    def check(name: str, entry: Any) -> None:
        if not callable(entry):
            raise TypeError(f"{name!r} must be {what}, got {type(entry).__name__}")

    return check


class PluginTable(Generic[T]):
    """Named plug-ins of one family; unknown names fail with the known ones listed.

    Parameters
    ----------
    kind : str
        What an entry is, as errors say it: ``"model kind"``, ``"indicator"``...
    group : str, optional
        The entry-point group third-party packages register in; None for none.
    builtins : mapping of str to str, optional
        Built-in name → module whose import registers that name.
    builtin_modules : sequence of str, optional
        Modules that register many names each (indicators), imported together the first time
        a name is missing or every name is wanted.
    check : callable, optional
        ``check(name, entry)`` raises ``TypeError`` or ``ValueError`` when ``entry`` cannot be
        registered as ``name``; run on every registration.
    hint : str, optional
        Appended to the "unknown" error (e.g. how a name takes an argument).
    """

    def __init__(
        self,
        kind: str,
        *,
        group: str | None = None,
        builtins: Mapping[str, str] | None = None,
        builtin_modules: Sequence[str] = (),
        check: Callable[[str, T], None] | None = None,
        hint: str = "",
    ) -> None:
        self.kind = kind
        self.group = group
        self.hint = hint
        self._builtins = dict(builtins or {})
        self._builtin_modules = tuple(builtin_modules)
        self._check = check
        self._entries: dict[str, T] = {}
        self._external: dict[str, _External] | None = None
        self._broken: dict[str, str] = {}
        self._warned: set[str] = set()
        self._bulk_loaded = not self._builtin_modules
        self._lock = threading.RLock()

    # -- registration ----------------------------------------------------------------------

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its target under ``name``.

        Raises
        ------
        ValueError
            ``name`` is already registered to another entry, or ``check`` refuses the entry.
        """

        def decorate(entry: T) -> T:
            if self._check is not None:
                self._check(name, entry)
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return decorate

    # -- lookup ----------------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``, importing its module or entry point if needed.

        Raises
        ------
        UnknownPluginError
            No built-in, registered or entry-point plug-in has that name.
        PluginLoadError
            The name belongs to a third-party entry point that failed to load.
        """
        found = self._entries.get(name)
        if found is not None:
            return found
        with self._lock:
            self._load(name)
            if name in self._entries:
                return self._entries[name]
        raise self.unknown(name)

    def names(self) -> list[str]:
        """Every known name, sorted: registered, built-in and third-party (none imported but
        the multi-name built-in modules, whose names are only known once imported)."""
        with self._lock:
            self._load_bulk()
            known = set(self._entries) | set(self._builtins) | set(self._externals())
        return sorted(known)

    def load_all(self) -> dict[str, T]:
        """Import every built-in and entry point; return the loaded entries by name.

        A third-party entry point that fails to load is skipped with a :class:`PluginWarning`
        naming its package, once per table (and :meth:`get` raises for it every time).
        """
        with self._lock:
            self._load_bulk()
            for module in sorted(set(self._builtins.values())):
                importlib.import_module(module)
            for name in sorted(set(self._externals()) | set(self._broken)):
                if name in self._entries and name not in self._broken:
                    continue
                try:
                    self._load_external(name)
                except PluginLoadError as error:
                    if name not in self._warned:
                        self._warned.add(name)
                        warnings.warn(str(error), PluginWarning, stacklevel=2)
            return dict(sorted(self._entries.items()))

    def unknown(self, name: str) -> UnknownPluginError:
        """The error for an unknown ``name``, with the closest and all known names."""
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        extra = f"; {self.hint}" if self.hint else ""
        return UnknownPluginError(
            f"unknown {self.kind} {name!r}{hint} (known: {', '.join(known) or 'none'}{extra})"
        )

    def third_party(self) -> list[str]:
        """Names that installed packages register through the entry-point group, sorted."""
        return sorted(self._externals())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"PluginTable({self.kind!r}, group={self.group!r})"

    # -- loading ---------------------------------------------------------------------------

    def _load(self, name: str) -> None:
        module = self._builtins.get(name)
        if module is not None:
            importlib.import_module(module)
            return
        self._load_bulk()
        if name not in self._entries and name in self._externals():
            self._load_external(name)

    def _load_bulk(self) -> None:
        if not self._bulk_loaded:
            for module in self._builtin_modules:
                importlib.import_module(module)
            self._bulk_loaded = True

    def _externals(self) -> dict[str, _External]:
        if self._external is None:
            found: dict[str, _External] = {}
            if self.group is not None:
                for entry in entry_points(group=self.group):
                    external = _External(entry, entry.dist.name if entry.dist else "unknown")
                    clash = self._clash(entry.name, found.get(entry.name))
                    if clash:
                        self._broken[entry.name] = f"{external.describe()}: {clash}"
                        continue
                    found[entry.name] = external
            self._external = found
        return self._external

    def _clash(self, name: str, earlier: _External | None) -> str:
        if name in self._builtins:
            return f"{self.kind} {name!r} is built into trademl and cannot be replaced"
        if earlier is not None:
            return f"{self.kind} {name!r} is registered by package {earlier.package!r} too"
        return ""

    def _load_external(self, name: str) -> None:
        if name in self._broken:
            raise PluginLoadError(self._broken[name])
        external = self._externals()[name]
        where = external.describe()
        try:
            loaded = external.entry.load()
        except Exception as error:  # any failure of third-party code is reported, not raised raw
            message = f"{where} failed to load: {type(error).__name__}: {error}"
            self._broken[name] = message
            raise PluginLoadError(message) from error
        if isinstance(loaded, types.ModuleType):
            if name not in self._entries:
                message = (
                    f"{where} imports module {loaded.__name__!r}, which registers no "
                    f"{self.kind} {name!r} (point the entry at the object, module:Object, or "
                    "register it on import)"
                )
                self._broken[name] = message
                raise PluginLoadError(message)
            return
        try:
            self.register(name)(loaded)
        except (TypeError, ValueError) as error:
            message = f"{where} cannot be registered: {error}"
            self._broken[name] = message
            raise PluginLoadError(message) from error
