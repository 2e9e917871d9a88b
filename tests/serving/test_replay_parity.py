"""Served = validated, by replay on real BTCUSDT 1h candles.

A pipeline is trained up to a date and promoted; the bars that follow are appended to the
store one at a time, as a live feed would write them, and after each one the running app is
asked over HTTP (``/predict`` from the store and from candles, ``/signals``) and over the
WebSocket, and the champion is asked through ``mlflow.pyfunc``. Every answer must equal, within
1e-9, what the same pipeline and the strategy compute in one batch over the FULL history (from
the file's first bar), never over the served window. A stored series with a bar missing inside
the window is served, flagged as gapped, with the value training would compute on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.serving.conftest import tiny_config
from tests.serving.test_api import candle_rows
from tests.serving.test_stream import next_of

from trademl.api import train as run
from trademl.backtest.strategies import maxmin_signals
from trademl.config import Settings
from trademl.data.ingest import open_default_store
from trademl.data.sources.files import read_candle_file
from trademl.errors import ConfigError
from trademl.pipeline import PipelineModel, missing_bars
from trademl.serving import create_app
from trademl.serving.parity import max_abs_diff, replay_parity
from trademl.tracking.client import fluent
from trademl.tracking.pipeline import load_pipeline, to_model_input
from trademl.tracking.registry import promote

MODEL = "BTCUSDT_1h_serving_test"  # the name tiny_config registers, in this module's own home
FEED_START = pd.Timestamp("2023-06-01", tz="UTC")  # training ends 2023-05-01; the feed after
REPLAYED = 36
TOLERANCE = 1e-9
# Small enough that the replay sees trades: the parity of stops and targets is then tested.
STRATEGY = {"reward_risk": 1.0, "min_confidence": 0.0, "allow_short": True}


@dataclass
class Replay:
    """A module's own home, store, registered champion and app."""

    settings: Settings
    candles: pd.DataFrame  # every bar of the shared file
    pipeline: PipelineModel
    client: TestClient


def reset_store(settings: Settings, candles: pd.DataFrame) -> None:
    """The store's BTCUSDT 1h series, replaced by ``candles``."""
    with open_default_store(settings) as store:
        store.delete("BTCUSDT", "1h")
        store.write(candles, "BTCUSDT", "1h")


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Replay]:
    home = tmp_path_factory.mktemp("replay")
    settings = Settings(
        home=home, mlflow_timeout_s=5, model_reload_s=0, store_poll_s=0.02, ws_heartbeat_s=5
    )
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    reset_store(settings, candles[candles.index < FEED_START])
    result = run(tiny_config(home / "runs" / "v1", 10), settings=settings)
    if result.alias != "champion":  # a gate refusing short runs: promote by hand
        promote(MODEL, result.model_version, force=True, settings=settings)
    pipeline, info = load_pipeline(MODEL, "champion", settings)
    assert info.version == result.model_version
    with TestClient(create_app(settings)) as client:
        yield Replay(settings, candles, pipeline, client)


def served_values(body: Mapping[str, Any]) -> dict[str, float]:
    """A /predict answer as the pipeline's output columns (NaN for null)."""

    def number(value: float | None) -> float:
        return math.nan if value is None else float(value)

    values: dict[str, float] = {}
    for name, horizon in body["horizons"].items():
        for key in ("p_up", "confidence", "high", "low"):
            values[f"{name}__{key}"] = number(horizon[key])
        for target in ("high", "low"):
            interval = horizon[f"{target}_interval"]
            if interval is not None:
                values[f"{name}__{target}_lo"] = number(interval["lower"])
                values[f"{name}__{target}_hi"] = number(interval["upper"])
    return values


def comparable(expected: pd.Series) -> dict[str, float]:
    """A batch row as the columns the API answers (the log ratios are the prices' logs)."""
    return {str(k): float(v) for k, v in expected.items() if not str(k).endswith("_log")}


def assert_parity(path: str, expected: pd.Series, got: Mapping[str, float]) -> float:
    diff, column = max_abs_diff(comparable(expected), got)
    assert diff <= TOLERANCE, f"{path} at {expected.name}: {column} differs by {diff}"
    return diff


def latest_from_store(client: TestClient, stamp: pd.Timestamp) -> dict[str, Any]:
    """The store-path prediction, once the server has seen the bar at ``stamp``."""
    deadline = time.monotonic() + 10
    while True:
        response = client.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if pd.Timestamp(body["bar_timestamp"]) == stamp:
            return body
        assert time.monotonic() < deadline, f"the server never saw the bar at {stamp}"
        time.sleep(0.02)


def test_served_equals_batch_over_the_full_history_bar_by_bar(replay: Replay) -> None:
    candles, pipeline, client = replay.candles, replay.pipeline, replay.client
    reset_store(replay.settings, candles[candles.index < FEED_START])
    feed = candles[candles.index >= FEED_START].iloc[:REPLAYED]
    history = candles[candles.index <= feed.index[-1]]
    assert history.index[0].year == 2017  # the batch starts years before any served window
    # What was validated: one batch over the full history, and the strategy on it.
    batch = pipeline.predict(history)
    signals = maxmin_signals(
        history,
        batch["intraday__high_log"],
        batch["intraday__low_log"],
        batch["intraday__p_up"],
        **STRATEGY,
    )
    with fluent(replay.settings):
        champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    window = pipeline.window_bars
    worst = 0.0
    sides: set[str] = set()
    with client.websocket_connect("/ws/BTCUSDT?timeframe=1h") as socket:
        first = next_of(socket, "prediction")
        assert pd.Timestamp(first["bar_timestamp"]) < FEED_START
        for step, (stamp, bar) in enumerate(feed.iterrows()):
            with open_default_store(replay.settings) as store:
                store.write(bar.to_frame().T.rename_axis("timestamp"), "BTCUSDT", "1h")
            expected = batch.loc[stamp]
            served = history.loc[:stamp]
            gaps = missing_bars(pd.DatetimeIndex(served.index[-window:]), "1h")
            # The store path, the candles-in-body path (the window, or a longer history) ...
            from_store = latest_from_store(client, stamp)
            body = {
                "symbol": "BTCUSDT",
                "timeframe": "1h",
                "candles": candle_rows(served.iloc[-(window + 17 * (step % 2)) :]),
            }
            from_candles = client.post("/api/v1/predict", json=body)
            assert from_candles.status_code == 200, from_candles.text
            message = next_of(socket, "prediction")  # ... the WebSocket ...
            for path, answer in (
                ("store", from_store),
                ("candles", from_candles.json()),
                ("websocket", message),
            ):
                assert pd.Timestamp(answer["bar_timestamp"]) == stamp, path
                assert answer["close"] == float(bar["close"])
                assert (answer["gapped"], answer["missing_bars"]) == (gaps > 0, gaps)
                worst = max(worst, assert_parity(path, expected, served_values(answer)))
            # ... the signal ...
            signal = client.get(
                "/api/v1/signals/BTCUSDT", params={"timeframe": "1h", **STRATEGY}
            ).json()
            position = history.index.get_loc(stamp)
            side = {1: "long", -1: "short"}.get(int(signals.side[position]), "flat")
            assert pd.Timestamp(signal["bar_timestamp"]) == stamp
            assert signal["side"] == side, f"signal at {stamp}"
            for key in ("stop", "target"):
                want = float(getattr(signals, key)[position])
                got = math.nan if signal[key] is None else signal[key]
                assert (math.isnan(want) and math.isnan(got)) or abs(want - got) <= TOLERANCE
            sides.add(side)
            # ... and MLflow's pyfunc of the champion, on the served window (the one last-bar
            # computation) or a few bars more (the batch computation over a short history).
            out = champion.predict(to_model_input(served.iloc[-(window + 5 * (step % 2)) :]))
            out = out.iloc[-1]
            assert pd.Timestamp(out["timestamp"], tz="UTC") == stamp
            worst = max(
                worst,
                assert_parity("pyfunc", expected, out.drop("timestamp").astype(float).to_dict()),
            )
    assert sides - {"flat"}, "the replay should see signals with a stop and a target"
    # The library's replay (behind `make demo`'s line) measures the same thing.
    report = replay_parity(pipeline, history, REPLAYED)
    assert report.bars == REPLAYED and report.max_abs_diff <= TOLERANCE
    assert str(report).startswith(f"served = validated on {REPLAYED} replayed bars")
    print(f"replay parity: {REPLAYED} bars × 5 paths, max abs diff {worst:.3g}; library {report}")


def test_a_gap_inside_the_window_is_served_flagged(replay: Replay) -> None:
    candles, pipeline, client = replay.candles, replay.pipeline, replay.client
    history = candles[candles.index < FEED_START + pd.Timedelta(days=3)]
    # Two bars lost a few hours before the last one: inside every path's window.
    gapped = history.drop(history.index[[-6, -5]])
    reset_store(replay.settings, gapped)
    stamp = gapped.index[-1]
    # Training computes features over the stored rows, gaps included: that is the reference.
    expected = pipeline.predict(gapped).loc[stamp]
    body = latest_from_store(client, stamp)
    assert body["gapped"] is True and body["missing_bars"] == 2
    assert_parity("store", expected, served_values(body))
    signal = client.get("/api/v1/signals/BTCUSDT", params={"timeframe": "1h"}).json()
    assert signal["gapped"] is True and signal["missing_bars"] == 2
    request = {"symbol": "BTCUSDT", "timeframe": "1h"}
    window = gapped.iloc[-pipeline.window_bars :]
    answer = client.post("/api/v1/predict", json={**request, "candles": candle_rows(window)})
    assert answer.status_code == 200 and answer.json()["missing_bars"] == 2
    # Without the gap, the same bar is served unflagged.
    reset_store(replay.settings, history)
    clean = latest_from_store(client, stamp)
    assert clean["gapped"] is False and clean["missing_bars"] == 0
    assert_parity("store", pipeline.predict(history).loc[stamp], served_values(clean))


def test_the_window_is_warmup_plus_one_and_fewer_is_a_422(replay: Replay) -> None:
    pipeline, client = replay.pipeline, replay.client
    history = replay.candles[replay.candles.index < FEED_START]
    window = history.iloc[-pipeline.window_bars :]
    expected = pipeline.predict(history).iloc[-1]
    # A store holding exactly the window serves the full-history value ...
    reset_store(replay.settings, window)
    assert_parity("store", expected, served_values(latest_from_store(client, window.index[-1])))
    # ... one bar fewer, in the store or in a request, is a 422 that says how many are needed.
    short = window.iloc[1:]
    reset_store(replay.settings, short)
    request = {"symbol": "BTCUSDT", "timeframe": "1h"}
    time.sleep(3 * replay.settings.store_poll_s)  # past the server's look-up of the last bar
    for response in (
        client.post("/api/v1/predict", json=request),
        client.post("/api/v1/predict", json={**request, "candles": candle_rows(short)}),
    ):
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["rule"] == "too_few_bars"
        assert f"needs at least {pipeline.window_bars} candles" in error["message"]
        assert f"got {pipeline.window_bars - 1}" in error["message"]


def test_replay_parity_refuses_what_it_cannot_replay(replay: Replay) -> None:
    pipeline = replay.pipeline
    history = replay.candles[replay.candles.index < FEED_START]
    with pytest.raises(ConfigError, match="bars must be at least 1, got 0"):
        replay_parity(pipeline, history, 0)
    short = history.iloc[-(pipeline.warmup_bars + 3) :]
    with pytest.raises(ConfigError, match=f"needs at least {pipeline.warmup_bars + 4} candles"):
        replay_parity(pipeline, short, 4)
    assert replay_parity(pipeline, short, 3).bars == 3
