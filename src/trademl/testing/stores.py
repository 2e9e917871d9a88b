"""Conformance checks of a market store: exact round trips, idempotent upserts in one
transaction, half-open range reads.

A store is given as a :class:`StoreCase`: a name and a function opening a fresh, empty store
(a temporary DuckDB file, a scratch database, a new in-memory name...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trademl.data.candles import COLUMNS
from trademl.data.stores.base import Batch, MarketStore
from trademl.errors import DataValidationError
from trademl.testing.data import ConformanceError, sample_candles


@dataclass(frozen=True)
class StoreCase:
    """A store under test: ``open()`` returns a fresh, empty store each call."""

    name: str
    open: Callable[[], MarketStore]

    def __str__(self) -> str:
        return self.name


StoreCheck = Callable[[StoreCase], None]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return bool(
        a.index.equals(b.index)
        and list(a.columns) == list(b.columns)
        and np.array_equal(a[list(COLUMNS)].to_numpy(), b[list(COLUMNS)].to_numpy())
    )


def _candles(n: int = 300) -> pd.DataFrame:
    return sample_candles(n, seed=21, symbol="ETHUSDT")


def check_store_round_trip(case: StoreCase) -> None:
    """What is written is read back exactly, with attrs naming symbol and timeframe; a second
    identical write changes nothing."""
    candles = _candles()
    with case.open() as store:
        report = store.write(candles, "ETHUSDT", "1h")
        if (report.inserted, report.updated, report.unchanged) != (len(candles), 0, 0):
            raise ConformanceError(f"{case}: first write reported {report}")
        back = store.read("ETHUSDT", "1h")
        if not _same(back, candles):
            raise ConformanceError(
                f"{case}: read gave {len(back)} rows that differ from the {len(candles)} written"
            )
        if back.attrs.get("symbol") != "ETHUSDT" or back.attrs.get("timeframe") != "1h":
            raise ConformanceError(f"{case}: read's attrs {back.attrs} must name the series")
        again = store.write(candles, "ETHUSDT", "1h")
        if (again.inserted, again.updated, again.unchanged) != (0, 0, len(candles)):
            raise ConformanceError(f"{case}: rewriting the same candles reported {again}")
        if not _same(store.read("ETHUSDT", "1h"), candles):
            raise ConformanceError(f"{case}: rewriting the same candles changed them")


def check_store_upsert(case: StoreCase) -> None:
    """A write updates changed rows, adds new ones and counts both."""
    candles = _candles()
    with case.open() as store:
        store.write(candles.iloc[:200], "ETHUSDT", "1h")
        changed = candles.iloc[150:].copy()
        volume = changed["volume"].to_numpy(copy=True)
        volume[:10] += 1.0
        changed["volume"] = volume
        report = store.write(changed, "ETHUSDT", "1h")
        if (report.inserted, report.updated, report.unchanged) != (100, 10, 40):
            raise ConformanceError(f"{case}: upsert reported {report}, expected (100, 10, 40)")
        expected = pd.concat([candles.iloc[:150], changed])
        if not _same(store.read("ETHUSDT", "1h"), expected):
            raise ConformanceError(f"{case}: after an upsert the series is not the merged one")


def check_store_range_and_keys(case: StoreCase) -> None:
    """Reads are half-open ``[start, end)``; series are keyed by symbol and timeframe, listed
    with their row counts and spans; delete removes one series and counts its rows."""
    candles = _candles()
    with case.open() as store:
        store.write(candles, "ETHUSDT", "1h")
        store.write(candles.iloc[:50], "BTCUSDT", "1h")
        start, end = candles.index[10], candles.index[20]
        part = store.read("ETHUSDT", "1h", start, end)
        if not _same(part, candles.iloc[10:20]):
            raise ConformanceError(f"{case}: read(start, end) must give [start, end) exactly")
        listed = {(s.symbol, s.timeframe): s for s in store.list_series()}
        if set(listed) != {("ETHUSDT", "1h"), ("BTCUSDT", "1h")}:
            raise ConformanceError(f"{case}: list_series gave {sorted(listed)}")
        info = listed[("BTCUSDT", "1h")]
        if (info.rows, info.first, info.last) != (50, candles.index[0], candles.index[49]):
            raise ConformanceError(f"{case}: list_series gave {info} for 50 rows")
        if len(store.read("ETHUSDT", "4h")) or len(store.read("SOLUSDT", "1h")):
            raise ConformanceError(f"{case}: a series not written must read empty")
        if store.delete("BTCUSDT", "1h") != 50 or len(store.read("BTCUSDT", "1h")):
            raise ConformanceError(f"{case}: delete must remove the series and count its rows")
        if len(store.read("ETHUSDT", "1h")) != len(candles):
            raise ConformanceError(f"{case}: deleting one series touched another")


def check_store_refuses_bad_batches_whole(case: StoreCase) -> None:
    """A batch breaking the Candles contract is refused before anything is written, even the
    valid batches of the same write."""
    candles = _candles()
    bad = candles.iloc[:20].copy()
    high = bad["high"].to_numpy(copy=True)
    high[5] = bad["low"].iloc[5] / 2  # high below low
    bad["high"] = high
    with case.open() as store:
        store.write(candles.iloc[:100], "ETHUSDT", "1h")
        try:
            store.write_many(
                [Batch(candles.iloc[100:], "ETHUSDT", "1h"), Batch(bad, "BTCUSDT", "1h")]
            )
        except DataValidationError:
            pass
        else:
            raise ConformanceError(f"{case}: a batch with high below low was accepted")
        if (
            not _same(store.read("ETHUSDT", "1h"), candles.iloc[:100])
            or store.read("BTCUSDT", "1h").shape[0]
        ):
            raise ConformanceError(f"{case}: a refused write_many changed the store")


def store_checks(case: StoreCase) -> list[StoreCheck]:
    """The checks of a store."""
    return [
        check_store_round_trip,
        check_store_upsert,
        check_store_range_and_keys,
        check_store_refuses_bad_batches_whole,
    ]


def check_store(case: StoreCase) -> None:
    """Run every store check, each on a fresh store from ``case.open``.

    Raises
    ------
    ConformanceError
        Naming the store and the broken promise.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from trademl.data.stores import open_store
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> files = iter(range(100))
    >>> check_store(StoreCase("duckdb", lambda: open_store(f"duckdb:///{folder}/{next(files)}.db")))
    """
    for check in store_checks(case):
        check(case)
