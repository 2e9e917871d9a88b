"""One suite, three real backends: DuckDB (embedded), PostgreSQL and MariaDB on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trademl.data.sources.files import read_candle_file
from trademl.data.stores import Batch, MarketStore, open_store
from trademl.errors import ConfigError, DataValidationError

pytestmark = pytest.mark.integration


@pytest.fixture
def store(store_url: str) -> Iterator[MarketStore]:
    with open_store(store_url, chunk_rows=5_000) as opened:
        yield opened


@pytest.fixture(scope="module")
def eth(data_dir: Path) -> pd.DataFrame:
    return read_candle_file(data_dir / "crypto" / "ETHUSDT_1h.csv").iloc[:12_000]


def snapshot(store: MarketStore) -> dict[tuple[str, str], pd.DataFrame]:
    return {(s.symbol, s.timeframe): store.read(s.symbol, s.timeframe) for s in store.list_series()}


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        pd.testing.assert_frame_equal(before[key], after[key])


def test_round_trip_is_exact(store: MarketStore, eth: pd.DataFrame) -> None:
    report = store.write(eth, "ETHUSDT", "1h")
    assert (report.inserted, report.updated, report.unchanged) == (len(eth), 0, 0)
    back = store.read("ETHUSDT", "1h")
    pd.testing.assert_frame_equal(back, eth, check_freq=False)
    assert back.attrs == {"symbol": "ETHUSDT", "timeframe": "1h"}


def test_reimport_changes_nothing(store: MarketStore, eth: pd.DataFrame) -> None:
    store.write(eth, "ETHUSDT", "1h")
    before = snapshot(store)
    again = store.write(eth, "ETHUSDT", "1h")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(eth))
    assert not again.changed
    assert_same(before, snapshot(store))


def test_upsert_updates_changed_rows_and_adds_new_ones(
    store: MarketStore, eth: pd.DataFrame
) -> None:
    store.write(eth.iloc[:6_000], "ETHUSDT", "1h")
    revised = eth.iloc[5_000:7_000].copy()
    revised.iloc[10, revised.columns.get_loc("volume")] += 1.0
    report = store.write(revised, "ETHUSDT", "1h")
    assert (report.inserted, report.updated, report.unchanged) == (1_000, 1, 999)
    back = store.read("ETHUSDT", "1h")
    assert len(back) == 7_000
    assert back["volume"].iloc[5_010] == eth["volume"].iloc[5_010] + 1.0


def test_range_read_is_half_open(store: MarketStore, eth: pd.DataFrame) -> None:
    store.write(eth, "ETHUSDT", "1h")
    start, end = pd.Timestamp("2021-01-01", tz="UTC"), pd.Timestamp("2021-02-01", tz="UTC")
    month = store.read("ETHUSDT", "1h", start, end)
    expected = eth.loc[(eth.index >= start) & (eth.index < end)]
    pd.testing.assert_frame_equal(month, expected, check_freq=False)
    assert month.index[0] == start and month.index[-1] < end
    assert store.read("ETHUSDT", "1h", pd.Timestamp("2030-01-01", tz="UTC")).empty


def test_series_are_keyed_by_symbol_and_timeframe(store: MarketStore, eth: pd.DataFrame) -> None:
    store.write_many([Batch(eth, "ETHUSDT", "1h"), Batch(eth.iloc[:100], "ETHCOPY", "1h")])
    infos = {(s.symbol, s.timeframe): s for s in store.list_series()}
    assert infos[("ETHUSDT", "1h")].rows == len(eth)
    assert infos[("ETHCOPY", "1h")].rows == 100
    assert infos[("ETHUSDT", "1h")].first == eth.index[0]
    assert infos[("ETHUSDT", "1h")].last == eth.index[-1]
    assert store.delete("ETHCOPY", "1h") == 100
    assert [s.symbol for s in store.list_series()] == ["ETHUSDT"]


def test_invalid_batch_leaves_store_untouched(store: MarketStore, eth: pd.DataFrame) -> None:
    store.write(eth.iloc[:1_000], "ETHUSDT", "1h")
    before = snapshot(store)
    broken = eth.iloc[1_000:2_000].copy()
    broken.iloc[500, broken.columns.get_loc("low")] = 1e9
    with pytest.raises(DataValidationError, match="ohlc_consistency"):
        store.write_many(
            [Batch(eth.iloc[1_000:2_000], "ETHUSDT", "1h"), Batch(broken, "OTHER", "1h")]
        )
    with pytest.raises(ConfigError, match="symbol"):
        store.write(eth, "BAD SYMBOL", "1h")
    assert_same(before, snapshot(store))


class FailingAfterFirstBatch:
    """Fault injection: the database work of the second batch raises mid-transaction."""

    def __init__(self, store: MarketStore) -> None:
        self.store = store
        self.calls = 0

    def __enter__(self) -> None:
        name = "_write_series"
        original = getattr(self.store, name)

        def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("disk full")
            return original(*args, **kwargs)

        setattr(self.store, name, failing)

    def __exit__(self, *exc: object) -> None:
        delattr(self.store, "_write_series")


def test_failure_mid_transaction_rolls_everything_back(
    store: MarketStore, eth: pd.DataFrame
) -> None:
    store.write(eth.iloc[:1_000], "ETHUSDT", "1h")
    before = snapshot(store)
    with FailingAfterFirstBatch(store), pytest.raises(Exception, match="disk full"):
        store.write_many([Batch(eth, "ETHUSDT", "1h"), Batch(eth, "SECOND", "1h")])
    assert_same(before, snapshot(store))
    # The store still works after the rollback.
    assert store.write(eth, "ETHUSDT", "1h").inserted == len(eth) - 1_000


def test_all_shared_files_round_trip(store: MarketStore, data_dir: Path) -> None:
    frames = {p.name: read_candle_file(p) for p in sorted(data_dir.rglob("*_1d.csv"))}
    store.write_many([Batch(f, f.attrs["symbol"], f.attrs["timeframe"]) for f in frames.values()])
    for frame in frames.values():
        back = store.read(frame.attrs["symbol"], "1d")
        assert np.array_equal(back.to_numpy(), frame.to_numpy())
        assert back.index.equals(frame.index)
