"""One name → factory table, reused by sources, stores, indicators, models and strategies.

>>> sources: PluginTable[object] = PluginTable("source")
>>> @sources.register("demo")
... class Demo: ...
>>> sources.get("demo") is Demo
True
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from trademl.errors import UnknownPluginError

T = TypeVar("T")


class PluginTable(Generic[T]):
    """Named plug-ins of one kind; unknown names fail with the known ones listed."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its target under ``name``."""

        def decorate(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return decorate

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``; raises :class:`UnknownPluginError` otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownPluginError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._entries))})"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
