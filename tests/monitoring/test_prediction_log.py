"""The prediction log on SQLite and PostgreSQL: what is appended is read back whole after a
reopen, bad rows write nothing, and logged predictions are scored against labels computed by the
training code once (and only once) their horizon's bars are stored."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.conftest import POSTGRES_ADMIN_URL, _scratch_database

import trademl
from trademl.errors import ConfigError
from trademl.features.labels import build_labels
from trademl.monitoring.predictions import (
    LoggedPrediction,
    PredictionLog,
    horizon_records,
    score,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta' / 'log.sqlite'}"
    else:
        yield from _scratch_database(POSTGRES_ADMIN_URL, f"trademl_log_test_{os.getpid()}")


def prediction(bar: str, **changes: object) -> LoggedPrediction:
    fields: dict[str, object] = {
        "request_id": "req-1",
        "model_name": "btc",
        "model_version": 2,
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "bar_timestamp": pd.Timestamp(bar, tz="UTC"),
        "horizon": "intraday",
        "horizon_bars": 6,
        "source": "store",
        "outputs": {"p_up": 0.6, "high_log": 0.01, "low_log": -0.012, "high_lo": np.nan},
    }
    fields.update(changes)
    return LoggedPrediction(**fields)  # type: ignore[arg-type]


def test_appended_rows_survive_a_reopen(url: str) -> None:
    with PredictionLog(url) as log:
        assert log.append([prediction("2024-01-01 00:00"), prediction("2024-01-01 01:00")]) == 2
        assert log.append([prediction("2024-01-01 02:00", model_version=3)]) == 1
    with PredictionLog(url) as reopened:  # a restart: a new process would see the same
        rows = reopened.read("btc")
        assert len(rows) == 3
        assert list(rows["model_version"]) == [2, 2, 3]
        assert str(rows["bar_timestamp"].dt.tz) == "UTC"
        assert rows["p_up"].tolist() == [0.6, 0.6, 0.6]
        assert rows["high_lo"].isna().all()  # NaN stored as null, read back as NaN
        assert len(reopened.read("btc", version=3)) == 1
        window = reopened.read("btc", start=pd.Timestamp("2024-01-01 01:00", tz="UTC"))
        assert len(window) == 2
        assert reopened.read("other").empty


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"symbol": "X" * 65}, "symbol must be 1 to 64"),
        ({"request_id": ""}, "request_id must be 1 to 64"),
        ({"source": "cron"}, "source must be one of"),
        ({"horizon_bars": 0}, "horizon_bars must be at least 1"),
        ({"bar_timestamp": pd.Timestamp("2024-01-01")}, "time zone"),
    ],
)
def test_a_bad_row_writes_nothing(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with PredictionLog(f"sqlite:///{tmp_path / 'log.sqlite'}") as log:
        with pytest.raises(ConfigError, match=message):
            log.append([prediction("2024-01-01 00:00"), prediction("2024-01-01 01:00", **changes)])
        assert log.read("btc").empty


def test_horizon_records_split_a_pipeline_answer_by_horizon() -> None:
    values = {"intraday__p_up": 0.6, "intraday__high": 101.0, "swing__p_up": 0.4}
    rows = horizon_records(
        values,
        {"intraday": 6, "swing": 72},
        request_id="r",
        model_name="m",
        model_version=1,
        symbol="X",
        timeframe="1h",
        bar_timestamp=pd.Timestamp("2024-01-01", tz="UTC"),
        source="request",
    )
    assert [(r.horizon, r.horizon_bars, dict(r.outputs)) for r in rows] == [
        ("intraday", 6, {"p_up": 0.6, "high": 101.0}),
        ("swing", 72, {"p_up": 0.4}),
    ]


def test_labels_mature_when_the_horizon_is_stored(data_dir: Path) -> None:
    candles = trademl.read_candles(data_dir / "crypto" / "BTCUSDT_1h.csv", start="2023-06-01")
    candles = candles.iloc[:500]
    bars = list(candles.index[-10:])  # the last 6 bars cannot have a 6-bar label yet
    missing = candles.index[-1] + pd.Timedelta(hours=5)  # a bar the store does not hold
    log = pd.DataFrame(
        {
            "bar_timestamp": [*bars, missing],
            "horizon_bars": 6,
            "high_log": 0.01,
        }
    )
    scored = score(log, candles)
    assert scored.rows["mature"].tolist() == [True] * 4 + [False] * 7
    assert scored.mature_share == pytest.approx(4 / 11)
    labels = build_labels(candles, [{"kind": "max_high", "horizon": 6}])
    np.testing.assert_array_equal(
        scored.mature["realised_max_high"].to_numpy(), labels["max_high_6"].loc[bars[:4]]
    )
    assert scored.rows.loc[~scored.rows["mature"], "realised_min_low"].isna().all()
    # Once the bars arrive the same rows mature.
    later = trademl.read_candles(data_dir / "crypto" / "BTCUSDT_1h.csv", start="2023-06-01")
    assert score(log.iloc[:10], later.iloc[:520]).mature_share == 1.0


def test_an_empty_log_scores_to_nothing(data_dir: Path) -> None:
    candles = trademl.read_candles(data_dir / "crypto" / "BTCUSDT_1h.csv", end="2022-02-01")
    empty = PredictionLog("sqlite://").read("nobody")
    scored = score(empty, candles)
    assert scored.rows.empty and np.isnan(scored.mature_share)
