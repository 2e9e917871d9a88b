"""The prediction log's journal on SQLite and PostgreSQL: what is written is moved into the
table once, a dead server's file is moved by the next one, and a second move moves nothing."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from trademl.errors import StoreError
from trademl.monitoring.journal import Journal, Mover, host_name
from trademl.monitoring.predictions import LoggedPrediction, PredictionLog, prediction_answers


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


def test_request_ids_a_client_chose_arrive_as_sent(tmp_path: Path) -> None:
    # X-Request-ID is the client's: quotes, backslashes, a newline, a forged journal entry and
    # non-ASCII letters must come back as sent, and never split or add a journal line.
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    ids = ['a"b', "c\\d", "e\nf", '{"r":"x","t":0,"a":"y"}', "idé42", uuid.uuid4().hex]
    with Journal(PredictionLog(url), tmp_path / "journal") as journal:
        for hour, request_id in enumerate(ids):
            journal.append([prediction(request_id, hour)]).result()
        lines = journal.path.read_bytes().splitlines()
    assert sum(line.startswith(b'{"r":') for line in lines) == len(ids)
    with PredictionLog(url) as log:
        assert log.read("btc")["request_id"].tolist() == ids


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


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.sqlite'}"
    else:
        yield request.getfixturevalue(
            {"postgresql": "postgres_url"}.get(request.param, "mariadb_url")
        )


def test_a_polled_answer_is_stored_once_and_read_once_per_request(
    any_url: str, tmp_path: Path
) -> None:
    """Two servers answer the same bar many times (journal and direct appends alike): its rows
    are stored once, and the log reads back one row per request and horizon."""
    model = f"polled_{uuid.uuid4().hex[:8]}"
    two = [prediction("x", 7, model), dataclasses.replace(prediction("x", 7, model), horizon="b")]
    log = PredictionLog(any_url)
    answer = log.prepare(two)
    with (
        Journal(log, tmp_path / "a") as first,
        Journal(PredictionLog(any_url), tmp_path / "b") as second,
    ):
        for n in range(30):
            (first if n % 2 else second).write(f"q{n}", answer)
    with PredictionLog(any_url) as direct:
        direct.append_prepared([(f"d{n}", answer) for n in range(3)])
        direct.append_prepared([("d3", answer)])
        rows = direct.read(model)
        with direct._engine.connect() as connection:
            stored = connection.execute(
                sa.select(sa.func.count())
                .select_from(prediction_answers)
                .where(prediction_answers.c.answer == answer.key)
            ).scalar()
    assert stored == 2  # one row per horizon, however many requests and writers
    assert len(rows) == 2 * 34
    expected = sorted([f"q{n}" for n in range(30)] + [f"d{n}" for n in range(4)])
    assert sorted(rows["request_id"].unique()) == expected
    assert all(h == ["intraday", "b"] for h in rows.groupby("request_id")["horizon"].apply(list))
    assert set(rows["p_up"]) == {0.5 + 7 / 100}


def test_equal_answers_share_a_key_and_different_ones_do_not(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.sqlite'}")
    a, b = log.prepare([prediction("x", 1)]), log.prepare([prediction("y", 1)])
    other = log.prepare([prediction("x", 2)])
    assert a.key == b.key  # the request id is not part of the answer
    assert a.key != other.key


def test_a_log_of_the_earlier_layout_is_refused_by_name(tmp_path: Path) -> None:
    database = tmp_path / "old.sqlite"
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE prediction_log (id INTEGER PRIMARY KEY, request_id TEXT, outputs TEXT)"
        )
        connection.exec_driver_sql("INSERT INTO prediction_log VALUES (1, 'kept', '{}')")
    engine.dispose()
    log = PredictionLog(f"sqlite:///{database}")
    with pytest.raises(StoreError, match="earlier layout"):
        log.append([prediction("r", 1)])
    log.close()
    with sqlite3.connect(database) as connection:  # what was there is untouched
        assert connection.execute("SELECT request_id FROM prediction_log").fetchall() == [("kept",)]
