"""Group commit of the prediction log: concurrent requests share transactions, each request's
future completes only once its rows are committed, a bad request fails alone, a cancelled one
does not fail the others, a database that cannot be written fails every waiter with a message
that names it (password masked), and closing commits what was queued."""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from trademl.errors import ConfigError, StoreError
from trademl.monitoring.appender import ROWS_PER_STATEMENT, Appender
from trademl.monitoring.predictions import LoggedPrediction, PredictionLog, PreparedRows
from trademl.monitoring.writer import WINDOW_S, LogWriter


def row(request: int, **changes: object) -> LoggedPrediction:
    fields: dict[str, object] = {
        "request_id": f"req-{request}",
        "model_name": "btc",
        "model_version": 1,
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "bar_timestamp": pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=request),
        "horizon": "intraday",
        "horizon_bars": 6,
        "source": "store",
        "outputs": {"p_up": 0.5},
    }
    fields.update(changes)
    return LoggedPrediction(**fields)  # type: ignore[arg-type]


class CountingLog(PredictionLog):
    """A real log that counts its transactions."""

    transactions = 0

    def append_prepared(self, batch):  # type: ignore[no-untyped-def]
        self.transactions += 1
        return super().append_prepared(batch)


def test_a_request_is_answered_only_after_its_rows_are_committed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    log = CountingLog(url)
    with LogWriter(log) as writer, ThreadPoolExecutor(16) as pool:
        futures = list(pool.map(lambda n: writer.append([row(n), row(n)]), range(400)))
        for future in futures:
            assert future.result(timeout=30) == 2
            # Durable when answered: another connection already reads the rows.
        with PredictionLog(url) as reader:
            assert len(reader.read("btc")) == 800
    assert log.transactions < 400  # concurrent requests shared commits


def test_a_bad_request_fails_alone_and_close_commits_the_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    writer = LogWriter(PredictionLog(url))
    good = [writer.append([row(n)]) for n in range(50)]
    bad = writer.append([row(99, source="cron")])
    writer.close()
    assert all(f.result(timeout=10) == 1 for f in good)
    with pytest.raises(ConfigError, match="source"):
        bad.result(timeout=10)
    with PredictionLog(url) as reader:
        assert len(reader.read("btc")) == 50
    with pytest.raises(StoreError, match="closed"):
        writer.append([row(1)]).result(timeout=1)


@pytest.mark.parametrize("window_s", [0.0, WINDOW_S])
def test_append_async_does_not_block_the_event_loop(window_s: float) -> None:
    async def main() -> list[int]:
        with LogWriter(PredictionLog("sqlite://"), window_s=window_s) as writer:
            first = await writer.append_async([row(0)])  # a lone request: committed at once
            rest = await asyncio.gather(*(writer.append_async([row(n)]) for n in range(1, 20)))
            return [first, *rest]

    assert asyncio.run(main()) == [1] * 20


def test_requests_on_an_event_loop_share_commits_and_a_cancelled_one_fails_alone(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    log = CountingLog(url)
    prepared = log.prepare([row(0)])

    async def main() -> list[int | BaseException]:
        requests = [
            asyncio.ensure_future(writer.append_prepared_async(f"req-{n}", prepared))
            for n in range(300)
        ]
        await asyncio.sleep(0)  # every request queued, waiting on its batch
        requests[7].cancel()  # a client gone: the others of its commit wait on
        return list(await asyncio.gather(*requests, return_exceptions=True))

    with LogWriter(log) as writer:
        outcomes = asyncio.run(main())
    assert isinstance(outcomes[7], asyncio.CancelledError)
    assert outcomes[:7] + outcomes[8:] == [1] * 299
    assert 0 < log.transactions < 300  # shared
    with PredictionLog(url) as reader:
        ids = reader.read("btc")["request_id"]
    # The cancelled request's rows were in its batch: committed all the same, each once.
    assert sorted(ids) == sorted(f"req-{n}" for n in range(300))


def test_a_value_the_database_refuses_fails_its_request_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    log = PredictionLog(url)
    good = log.prepare([row(1)])
    # model_name is NOT NULL: the database, not the checks, refuses this one.
    bad = PreparedRows(tuple((None, *values[1:]) for values in good.rows))

    async def main() -> list[int | BaseException]:
        return list(
            await asyncio.gather(
                writer.append_prepared_async("ok-1", good),
                writer.append_prepared_async("bad", bad),
                writer.append_prepared_async("ok-2", good),
                return_exceptions=True,
            )
        )

    with LogWriter(log) as writer:
        first, refused, last = asyncio.run(main())
    assert (first, last) == (1, 1)
    assert isinstance(refused, ConfigError)
    assert "refused" in str(refused) and "NOT NULL" in str(refused)
    with PredictionLog(url) as reader:
        assert sorted(reader.read("btc")["request_id"]) == ["ok-1", "ok-2"]


def test_a_database_that_cannot_be_written_fails_every_waiter_loudly() -> None:
    secret = "pw-4e1d9a"
    writer = LogWriter(PredictionLog(f"postgresql://postgres:{secret}@127.0.0.1:1/trademl"))

    async def main() -> list[int | BaseException]:
        waiting = (writer.append_async([row(n)]) for n in range(5))
        return list(await asyncio.gather(*waiting, return_exceptions=True))

    failures = [*asyncio.run(main()), writer.append([row(9)]).exception(timeout=30)]
    writer.close()
    for failure in failures:
        assert isinstance(failure, StoreError)
        message = str(failure)
        assert message.startswith("prediction log: cannot write to postgresql://postgres:***@")
        assert "Connection refused" in message and secret not in message


def test_a_file_removed_under_the_writer_is_refused_not_written_into(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    url = f"sqlite:///{folder / 'log.sqlite'}"
    with LogWriter(PredictionLog(url)) as writer:
        assert writer.append([row(1)]).result(timeout=10) == 1
        shutil.rmtree(folder)  # the open connection could go on writing the unlinked file
        with pytest.raises(StoreError, match="removed or replaced"):
            writer.append([row(2)]).result(timeout=10)
        with pytest.raises(StoreError, match="unable to open database file"):
            writer.append([row(3)]).result(timeout=10)
        folder.mkdir()
        # A new file, without the table: still refused (restart the server to begin anew).
        with pytest.raises(StoreError, match="no such table"):
            writer.append([row(4)]).result(timeout=10)


def test_an_append_larger_than_one_statement_is_one_transaction(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rows.sqlite'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (a INTEGER NOT NULL, b TEXT)")
    appender = Appender(engine, "t", ["a", "b"])
    rows = 3 * ROWS_PER_STATEMENT + 5
    assert appender.write([v for n in range(rows) for v in (n, "x")]) == rows
    # A value refused in the last statement: none of the statements before it stays.
    refused = [v for n in range(rows) for v in (None if n == rows - 1 else n, "y")]
    with pytest.raises(ConfigError, match="refused a row"):
        appender.write(refused)
    with pytest.raises(ConfigError, match="not rows of 2"):
        appender.write([1, 2, 3])
    appender.close()
    with engine.connect() as connection:
        counts = connection.exec_driver_sql("SELECT b, count(*) FROM t GROUP BY b").all()
    assert [tuple(c) for c in counts] == [("x", rows)]
