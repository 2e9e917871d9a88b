"""Group commit of the prediction log: concurrent requests share transactions, each request's
future completes only once its rows are committed, a bad request fails alone, and closing
commits what was queued."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from trademl.errors import ConfigError, StoreError
from trademl.monitoring.predictions import LoggedPrediction, PredictionLog
from trademl.monitoring.writer import LogWriter


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

    def append(self, predictions):  # type: ignore[no-untyped-def]
        self.transactions += 1
        return super().append(predictions)


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


def test_append_async_does_not_block_the_event_loop() -> None:
    async def main() -> list[int]:
        with LogWriter(PredictionLog("sqlite://")) as writer:
            return list(await asyncio.gather(*(writer.append_async([row(n)]) for n in range(20))))

    assert asyncio.run(main()) == [1] * 20
