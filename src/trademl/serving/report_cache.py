"""Reports that take seconds to compute, answered from memory for a while: the monitoring
endpoint reads the prediction log, the candles and the features of a whole window, and anyone
who can reach the server may ask for it. Within ``ttl_s`` an identical request gets the report
already computed, and requests that arrive while it is computed wait for that one computation
rather than starting their own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: T | None = None
    made_at: float = -1.0


class ReportCache(Generic[T]):
    """A time-bounded cache with one computation in flight per key.

    Parameters
    ----------
    ttl_s : float
        Seconds a report is answered from memory (0 computes every time).
    size : int
        Keys kept at most (the oldest is forgotten first).

    >>> cache: ReportCache[int] = ReportCache(ttl_s=60)
    >>> calls = []
    >>> cache.get("k", lambda: calls.append(1) or 42)
    (42, 0.0)
    >>> cache.get("k", lambda: calls.append(1) or 43)[0], len(calls)
    (42, 1)
    """

    def __init__(self, ttl_s: float, size: int = 64) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> tuple[T, float]:
        """The report of ``key`` and its age in seconds (0.0 when computed by this call).
        An exception from ``compute`` reaches every caller waiting on it and caches nothing."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        with entry.lock:
            now = time.monotonic()
            if entry.value is not None and now - entry.made_at < self.ttl_s:
                return entry.value, now - entry.made_at
            entry.value = compute()
            entry.made_at = time.monotonic()
            return entry.value, 0.0
