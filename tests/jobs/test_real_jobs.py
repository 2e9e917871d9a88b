"""A real training run and a backtest of it, as jobs on a real Celery worker (Redis)."""

from __future__ import annotations

from pathlib import Path

from tests.support.jobs import Worker, finished

from trademl.data.ingest import import_path, open_default_store
from trademl.jobs import JobState, open_queue


def test_train_then_backtest_jobs_on_a_celery_worker(redis_worker: Worker, data_dir: Path) -> None:
    settings = redis_worker.settings
    with open_default_store(settings) as store:  # the worker reads the store after this closes
        import_path(data_dir / "crypto" / "BTCUSDT_1h.csv", store)
    run_dir = settings.home / "runs" / "tiny"
    train_config = {
        "data": {"symbol": "BTCUSDT", "timeframe": "1h", "start": "2023-01-01", "end": "2023-04-01"},
        "features": "minimal",
        "labels": {"kinds": ["direction", "max_high", "min_low"], "horizons": ["intraday"]},
        "models": [{"kind": "naive"}],
        "validation": {"kind": "walk_forward", "params": {"test_size": 300, "n_splits": 2, "min_train_size": 800}},
        "output": str(run_dir),
    }  # fmt: skip
    with open_queue(settings) as queue:
        trained = finished(queue, queue.submit("train", {"config": train_config}), timeout_s=120)
        assert trained.state is JobState.SUCCEEDED, (trained, redis_worker.tail())
        assert trained.result is not None and trained.result["output"] == str(run_dir)
        assert (run_dir / "predictions.parquet").exists() and len(trained.result["data_hash"]) > 8
        backtest_config = {"run": str(run_dir), "output": str(settings.home / "runs" / "bt")}
        tested = finished(
            queue, queue.submit("backtest", {"config": backtest_config}), timeout_s=60
        )
    assert tested.state is JobState.SUCCEEDED, (tested, redis_worker.tail())
    assert tested.result is not None
    assert {"sharpe", "max_drawdown", "n_trades"} <= set(tested.result["metrics"])
    assert (Path(tested.result["output"]) / "report.html").exists()
