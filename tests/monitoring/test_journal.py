"""The prediction log's journal on SQLite and PostgreSQL: what is written is moved into the
table once, a dead server's file is moved by the next one, and a second move moves nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from trademl.errors import StoreError
from trademl.monitoring.journal import Journal, Mover, host_name
from trademl.monitoring.predictions import LoggedPrediction, PredictionLog


def prediction(request_id: str, hour: int, model: str = "btc") -> LoggedPrediction:
    return LoggedPrediction(
        request_id,
        model,
        3,
        "BTCUSDT",
        "1h",
        pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=hour),
        "intraday",
        6,
        "store",
        {"p_up": 0.5 + hour / 100, "high_log": 0.01},
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.sqlite'}"
    else:
        yield request.getfixturevalue("postgres_url")


def test_written_rows_reach_the_table_once_with_their_values(url: str, tmp_path: Path) -> None:
    model = f"once_{uuid.uuid4().hex[:8]}"
    with Journal(PredictionLog(url), tmp_path / "journal") as journal:
        for hour in range(5):
            journal.append([prediction(f"r{hour}", hour, model)]).result()
        path = journal.path
    assert not path.exists()  # all moved at close
    with PredictionLog(url) as log:
        rows = log.read(model)
    assert rows["request_id"].tolist() == [f"r{h}" for h in range(5)]
    assert rows["p_up"].tolist() == [0.5 + h / 100 for h in range(5)]
    assert rows["bar_timestamp"].tolist() == [
        pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=h) for h in range(5)
    ]
    assert rows["logged_at"].notna().all()


def test_a_dead_servers_file_is_moved_by_the_next_and_never_twice(url: str, tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    model = f"dead_{uuid.uuid4().hex[:8]}"
    log = PredictionLog(url)
    first = Journal(log, folder)
    first._stop.set()  # no mover of its own: this test moves by hand
    first._thread.join()
    # The server's file, under a pid that no longer runs.
    dead = folder / f"{host_name()}-999999999-deadbeef.jsonl"
    os.close(first._fd)
    first.path.rename(dead)
    first.path, first._fd = dead, os.open(dead, os.O_WRONLY | os.O_APPEND)
    for hour in range(3):
        first.append([prediction(f"d{hour}", hour, model)]).result()
    assert Mover(log, folder).move(dead) == 3  # moved while it lived ...
    first.append([prediction("d3", 3, model)]).result()  # ... then one more, and it dies
    os.close(first._fd)
    with Journal(PredictionLog(url), folder) as second:  # moves the rest at start
        assert not dead.exists()
        second.append([prediction("n0", 9, model)]).result()
    with PredictionLog(url) as reader:
        rows = reader.read(model)
    counts = rows["request_id"].value_counts().to_dict()
    assert counts == {"d0": 1, "d1": 1, "d2": 1, "d3": 1, "n0": 1}


def test_a_removed_journal_refuses_the_write(tmp_path: Path) -> None:
    with Journal(PredictionLog("sqlite://"), tmp_path / "journal") as journal:
        journal.path.unlink()
        with pytest.raises(StoreError, match=r"journal .* cannot write"):
            journal.append([prediction("x", 0)]).result()
