"""The monitoring and retraining cycle end to end on real BTCUSDT 1h data.

A champion is trained on an early span; the later span is served bar by bar through the
running app (each bar written to the store, then asked for over HTTP), which logs every
prediction. The log is scored as labels mature, a cycle retrains on the data before the recent
window and the gate decides on that window; a synthetic break of the served forecasts fires
the performance alarm within a bounded delay and the policy starts a cycle; the same cycle runs
as a job on a real Celery worker.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.conftest import cli_runner
from tests.support.jobs import REDIS_URL, Worker, job_settings, require_redis, wait_for
from tests.support.training import SHORT_RUN_GATE as GATE
from tests.support.training import SMALL_LGBM as GOOD
from tests.support.training import tiny_run_config

from trademl.api import train
from trademl.config import Settings, load_run_config
from trademl.data.ingest import open_default_store
from trademl.data.sources.files import read_candle_file
from trademl.errors import ConfigError
from trademl.jobs import JobState, open_queue
from trademl.jobs.celery_queue import CeleryQueue
from trademl.monitoring.assess import MonitoringError, assess, served_records
from trademl.monitoring.predictions import PredictionLog
from trademl.pipeline import PipelineModel
from trademl.serving import create_app
from trademl.tracking.client import connect
from trademl.tracking.pipeline import load_pipeline
from trademl.tracking.policy import check
from trademl.tracking.registry import history, promote
from trademl.tracking.retraining import PROMOTED_AT, retrain
from trademl.tracking.watch import log_url, monitor

MODEL = "BTCUSDT_1h_monitoring_test"
FEED_START = pd.Timestamp("2023-05-01", tz="UTC")  # the champion trains on bars before it
SERVED_BARS = 360
MONITORING = {"window": 300, "min_mature": 100, "arl0": 500}


@dataclass
class Cycle:
    settings: Settings
    candles: pd.DataFrame
    pipeline: PipelineModel
    version: int


def _write(settings: Settings, bars: pd.DataFrame) -> None:
    with open_default_store(settings) as store:
        store.write(bars, "BTCUSDT", "1h")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Cycle:
    """A champion trained before FEED_START, then SERVED_BARS bars served through the app."""
    home = tmp_path_factory.mktemp("monitoring")
    settings = Settings(home=home, mlflow_timeout_s=5, model_reload_s=0, store_poll_s=0.02)
    candles = read_candle_file(data_dir / "crypto" / "BTCUSDT_1h.csv")
    _write(settings, candles[(candles.index >= "2022-09-01") & (candles.index < FEED_START)])
    config = tiny_run_config(
        home / "runs" / "champion", GOOD, name=MODEL, gate=GATE, monitoring=MONITORING
    )
    result = train(config, settings=settings)
    assert result.alias == "champion", result
    pipeline, info = load_pipeline(MODEL, "champion", settings)
    feed = candles[candles.index >= FEED_START].iloc[:SERVED_BARS]
    with TestClient(create_app(settings)) as client:
        for stamp, bar in feed.iterrows():
            _write(settings, bar.to_frame().T.rename_axis("timestamp"))
            deadline = time.monotonic() + 10
            while True:  # the store path, once the server has seen the bar
                response = client.post(
                    "/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"}
                )
                assert response.status_code == 200, response.text
                if pd.Timestamp(response.json()["bar_timestamp"]) == stamp:
                    break
                assert time.monotonic() < deadline, f"the server never saw {stamp}"
                time.sleep(0.02)
    return Cycle(settings, candles, pipeline, info.version)


def test_the_replay_builds_the_log_and_labels_mature(served: Cycle) -> None:
    with PredictionLog(log_url(served.settings)) as log:
        rows = log.read(MODEL, version=served.version)
    bars = rows.drop_duplicates(["bar_timestamp", "horizon_bars"])
    assert len(bars) == SERVED_BARS * len(served.pipeline.horizons)
    assert bars["bar_timestamp"].min() == FEED_START
    report, info, _ = monitor(MODEL, settings=served.settings)
    assert info.version == served.version
    # 300 bars; the last 6 have labels not yet in the store.
    horizon = max(served.pipeline.horizons.values())
    assert report.logged == MONITORING["window"] * len(served.pipeline.horizons)
    assert report.mature_share == pytest.approx(1 - horizon / MONITORING["window"])
    for target in report.targets.values():
        assert MONITORING["min_mature"] <= target.rows <= MONITORING["window"] - horizon
        assert np.isfinite(target.model_loss) and np.isfinite(target.baseline_loss)
        assert target.threshold is not None and target.threshold > 0
    json.dumps(report.as_dict())  # the API's body: plain JSON


def test_a_window_with_too_few_mature_labels_says_how_many(served: Cycle) -> None:
    with pytest.raises(MonitoringError, match=r"holds \d+ logged predictions of which \d+"):
        monitor(MODEL, window=60, settings=served.settings)


def test_a_model_without_reference_statistics_says_how_to_get_them(served: Cycle) -> None:
    bare = PipelineModel(**{**served.pipeline.__dict__, "monitoring": None})
    with pytest.raises(MonitoringError, match="trademl train"):
        assess(bare, pd.DataFrame(), served.candles, model=MODEL, version=1)


def test_a_cycle_is_gated_on_the_recent_window_and_recorded(served: Cycle) -> None:
    cycle = retrain(MODEL, trigger="manual", settings=served.settings)
    assert cycle.champion == served.version and cycle.challenger == served.version + 1
    assert cycle.gate is not None
    assert cycle.decision == ("promoted" if cycle.gate.passed else "rejected")
    client = connect(served.settings)
    champion = int(client.get_model_version_by_alias(MODEL, "champion").version)
    assert champion == (cycle.challenger if cycle.gate.passed else served.version)
    run = client.get_run(cycle.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == served.settings.mlflow_experiment_retraining
    assert run.data.tags["trigger"] == "manual"
    assert run.data.tags["decision"] == cycle.decision
    assert run.data.tags["challenger_version"] == str(cycle.challenger)
    # The challenger never saw the window it was judged on.
    challenger, _ = load_pipeline(MODEL, cycle.challenger, served.settings)
    assert challenger.monitoring is not None
    assert challenger.monitoring.trained_until < cycle.start
    events = [e for e in history(MODEL, served.settings) if e.get("version") == cycle.challenger]
    assert any(e["action"] in ("promoted", "rejected") for e in events), events


def test_a_challenger_not_shown_better_is_rejected_and_the_champion_keeps_serving(
    served: Cycle,
) -> None:
    client = connect(served.settings)
    before = int(client.get_model_version_by_alias(MODEL, "champion").version)
    # A level no 120-bar window can reach: the challenger cannot show it is better.
    cycle = retrain(MODEL, trigger="manual", window=120, settings=served.settings, level=1e-12)
    assert cycle.decision == "rejected" and cycle.reason.startswith("refused")
    # Whichever clause failed first (a target it cannot serve, or not better), it is named.
    assert cycle.gate is not None and not cycle.gate.passed
    assert any(c.detail in cycle.reason for c in cycle.gate.checks if not c.passed)
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == before
    with TestClient(create_app(served.settings)) as app:
        response = app.post("/api/v1/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
    assert response.status_code == 200, response.text
    assert response.json()["model"]["version"] == before


def test_a_regime_shift_fires_the_alarm_within_a_bounded_delay(served: Cycle) -> None:
    """Synthetic: from a known bar the served max-high forecast is three times too wide."""
    pipeline = served.pipeline
    span = served.candles[served.candles.index < FEED_START + pd.Timedelta(hours=SERVED_BARS)]
    out = pipeline.predict(span.iloc[-(SERVED_BARS + pipeline.warmup_bars) :])
    shift_at = out.index[150]
    broken = out.copy()
    broken.loc[shift_at:, "intraday__high_log"] *= 3.0
    rows = served_records(
        broken, pipeline, model_name="synthetic", model_version=1, request_id="replay"
    )
    with PredictionLog("sqlite://") as log:
        log.append(rows)
        frame = log.read("synthetic")
    clean = assess(
        pipeline,
        frame[frame["bar_timestamp"] < shift_at],
        span,
        model="synthetic",
        version=1,
        window=SERVED_BARS,
        min_mature=100,
    )
    target = next(t for t in clean.targets.values() if t.name.startswith("max_high"))
    assert target.alarm_at is None  # no alarm before the break
    report = assess(pipeline, frame, span, model="synthetic", version=1, window=SERVED_BARS)
    target = next(t for t in report.targets.values() if t.name.startswith("max_high"))
    assert target.alarm_at is not None and target.alarm_at >= shift_at
    delay = int((target.alarm_at - shift_at) / pd.Timedelta(hours=1))
    assert delay <= 48, f"alarm {delay} bars after the break"


def test_an_alarm_starts_a_cycle_through_the_policy(served: Cycle) -> None:
    """The served forecasts break after the last cycle: the policy's check retrains."""
    settings, pipeline = served.settings, served.pipeline
    champion, info = load_pipeline(MODEL, "champion", settings)
    with open_default_store(settings) as store:
        last = store.read("BTCUSDT", "1h").index[-1]
    feed = served.candles[served.candles.index > last].iloc[:200]
    _write(settings, feed)
    context = served.candles[served.candles.index <= feed.index[-1]].iloc[
        -(len(feed) + champion.warmup_bars) :
    ]
    out = champion.predict(context)
    out[[c for c in out if c.endswith("__high_log")]] *= 4.0  # a broken server's answers
    rows = served_records(
        out, champion, model_name=MODEL, model_version=info.version, request_id="broken"
    )
    with PredictionLog(log_url(settings)) as log:
        log.append(rows)
    outcome = check(MODEL, settings=settings)
    assert outcome["action"] in ("promoted", "rejected"), outcome
    assert outcome["trigger"] == "performance"
    assert any("CUSUM" in alarm for alarm in outcome["cycle"]["alarms"])
    # Right after a cycle the detectors wait for fresh bars: no second cycle on the same alarm.
    again = check(MODEL, settings=settings)
    assert again["action"] == "waiting", again
    del pipeline


def test_a_bad_cron_string_is_refused_at_config_time(tmp_path: Path) -> None:
    config = tiny_run_config(tmp_path, GOOD, name=MODEL, gate=GATE)
    config["monitoring"] = {"retraining": {"schedule": "61 * * * *"}}
    with pytest.raises(ConfigError, match="minute"):
        load_run_config(config)


def test_a_retrain_whose_data_span_is_too_short_is_refused(tmp_path: Path, served: Cycle) -> None:
    settings = Settings(home=tmp_path, mlflow_timeout_s=5)
    candles = served.candles
    _write(settings, candles[(candles.index >= "2023-01-01") & (candles.index < FEED_START)])
    # The policy keeps 300 bars of history for a challenger: too few to train on.
    monitoring = {**MONITORING, "retraining": {"train_bars": 300}}
    config = tiny_run_config(tmp_path / "run", GOOD, name=MODEL, gate=GATE, monitoring=monitoring)
    assert train(config, settings=settings).alias == "champion"
    _write(settings, candles[(candles.index >= FEED_START)].iloc[:400])
    with pytest.raises(MonitoringError, match=r"only 300 bars before the window .* at least"):
        retrain(MODEL, settings=settings, window=300)


def test_the_cycle_runs_as_a_job_on_a_real_celery_worker(served: Cycle) -> None:
    require_redis()
    settings = job_settings(served.settings.home, REDIS_URL, queue=f"monitoring-{time.time_ns()}")
    worker = Worker.start(settings)
    try:
        with open_queue(settings) as queue:
            with pytest.raises(ConfigError, match=r"payload\.name"):
                queue.submit("retrain", {"name": "../../etc/passwd"})
            job_id = queue.submit("retrain", {"name": MODEL, "trigger": "scheduled"})
            info = wait_for(queue, job_id, lambda i: i.state.finished, timeout_s=180)
        assert info.state is JobState.SUCCEEDED, (info, worker.tail())
        assert info.result["trigger"] == "scheduled"
        assert info.result["decision"] in ("promoted", "rejected")
        run = connect(served.settings).get_run(info.result["run_id"])
        assert run.data.tags["trigger"] == "scheduled"
        # What Celery beat sends (trademl.tracking.policy.celery_beat): the task by name,
        # which queues a watch job on the same store, run by the worker.
        with open_queue(settings) as queue:
            assert isinstance(queue, CeleryQueue)
            before = {job.id for job in queue.list(limit=100)}
            queue.app.send_task("trademl.watch", args=[MODEL], queue=settings.celery_queue)
            deadline = time.monotonic() + 60
            while not (new := [j for j in queue.list(limit=100) if j.id not in before]):
                assert time.monotonic() < deadline, worker.tail()
                time.sleep(0.1)
            watched = wait_for(queue, new[0].id, lambda i: i.state.finished, timeout_s=180)
        assert watched.kind == "watch" and watched.state is JobState.SUCCEEDED, worker.tail()
        assert watched.result["action"] in ("none", "waiting", "promoted", "rejected")
    finally:
        worker.stop()


def _log_broken(
    settings: Settings,
    pipeline: PipelineModel,
    version: int,
    bars: pd.DataFrame,
    history: pd.DataFrame,
) -> None:
    """Predictions of ``version`` for ``bars`` as a broken server would log them: every
    max-high forecast four times too wide."""
    context = history[history.index <= bars.index[-1]].iloc[-(len(bars) + pipeline.warmup_bars) :]
    out = pipeline.predict(context)
    out[[c for c in out if c.endswith("__high_log")]] *= 4.0
    rows = served_records(
        out, pipeline, model_name=MODEL, model_version=version, request_id="broken"
    )
    with PredictionLog(log_url(settings)) as log:
        log.append(rows)


def test_an_alarm_soon_after_a_promotion_rolls_it_back(tmp_path: Path, served: Cycle) -> None:
    settings = Settings(home=tmp_path, mlflow_timeout_s=5)
    candles = served.candles
    _write(settings, candles[(candles.index >= "2022-09-01") & (candles.index < FEED_START)])
    monitoring = {**MONITORING, "retraining": {"rollback_bars": 200}}
    for label in ("v1", "v2"):
        config = tiny_run_config(
            tmp_path / label, GOOD, name=MODEL, gate=GATE, monitoring=monitoring
        )
        train(config, settings=settings)
    feed = candles[candles.index >= FEED_START].iloc[:300]
    _write(settings, feed)
    # Version 2 promoted by a cycle at the first served bar, then its forecasts break.
    promote(MODEL, 2, force=True, settings=settings)
    connect(settings).set_model_version_tag(MODEL, "2", PROMOTED_AT, FEED_START.isoformat())
    pipeline, _ = load_pipeline(MODEL, 2, settings)
    _log_broken(settings, pipeline, 2, feed, candles)
    outcome = check(MODEL, settings=settings)
    assert outcome["action"] == "rolled_back", outcome
    assert int(connect(settings).get_model_version_by_alias(MODEL, "champion").version) == 1
    run = connect(settings).get_run(outcome["cycle"]["run_id"])
    assert run.data.tags["decision"] == "rolled_back" and run.data.tags["trigger"] == "performance"
    assert "after the promotion" in outcome["reason"]


def test_the_commands_print_the_report_write_the_html_and_name_bad_input(
    served: Cycle, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = cli_runner(capsys)
    home = str(served.settings.home)
    html = tmp_path / "report.html"
    outcome = run("--home", home, "monitor", MODEL, "--window", "300", "--html", html)
    assert outcome.code == 0, outcome.stderr
    assert f"{MODEL} version" in outcome.stdout and "matured" in outcome.stdout
    assert html.exists() and "plotly" in html.read_text()[:2_000_000].lower()
    as_json = run("--home", home, "monitor", MODEL, "--window", "300", "--json")
    body = json.loads(as_json.stdout[: as_json.stdout.rindex("}") + 1])
    assert body["model"] == MODEL and 0 < body["mature_share"] <= 1
    unknown = run("--home", home, "monitor", "no_such_model")
    assert unknown.code != 0 and "no_such_model" in unknown.stderr
    bad = run("--home", home, "retrain", MODEL, "--trigger", "whenever")
    assert bad.code != 0 and "whenever" in bad.stderr
    watched = run("--home", home, "watch", MODEL, "--once")
    assert watched.code == 0, watched.stderr
    assert json.loads(watched.stdout)["action"] in ("none", "waiting", "promoted", "rejected")


def test_drift_starts_a_cycle_when_configured_and_the_gate_still_decides(
    tmp_path: Path, served: Cycle
) -> None:
    """Synthetic control: after the feed starts, every price's log distance from the first
    served close is five times the real one (a monotone map, so the candles stay valid) —
    volatility five times higher, which the volatility features must flag."""
    settings = Settings(home=tmp_path, mlflow_timeout_s=5)
    candles = served.candles
    _write(settings, candles[(candles.index >= "2022-09-01") & (candles.index < FEED_START)])
    monitoring = {**MONITORING, "retraining": {"on_alarm": False, "on_drift": True}}
    config = tiny_run_config(tmp_path / "run", GOOD, name=MODEL, gate=GATE, monitoring=monitoring)
    assert train(config, settings=settings).alias == "champion"
    real = candles[candles.index >= FEED_START].iloc[:300]
    anchor = float(real["close"].iloc[0])
    wild = real.copy()
    for column in ("open", "high", "low", "close"):
        wild[column] = anchor * np.exp(5.0 * np.log(real[column] / anchor))
    _write(settings, wild)
    pipeline, info = load_pipeline(MODEL, "champion", settings)
    history = pd.concat([candles[candles.index < FEED_START], wild])
    out = pipeline.predict(history.iloc[-(len(wild) + pipeline.warmup_bars) :])
    rows = served_records(
        out, pipeline, model_name=MODEL, model_version=info.version, request_id="wild"
    )
    with PredictionLog(log_url(settings)) as log:
        log.append(rows)
    report, _, _ = monitor(MODEL, settings=settings)
    assert report.drifted, report.feature_drift.to_frame() if report.feature_drift else None
    outcome = check(MODEL, settings=settings)
    assert outcome["trigger"] == "drift", outcome
    assert outcome["action"] in ("promoted", "rejected")
    cycle = outcome["cycle"]
    # Drift started the cycle; the gate decided, with its numbers, on the recent window.
    assert cycle["champion"] == info.version and cycle["challenger"] == info.version + 1
    assert outcome["reason"]
