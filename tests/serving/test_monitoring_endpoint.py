"""``GET /api/v1/models/{name}/monitoring`` on a real server: a champion trained on BTCUSDT 1h,
the predictions it would have served over the following weeks in the prediction log, and the
report compared with ``monitor()``'s; refusals; the ``trademl_monitor_*`` gauges."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.support.monitoring import monitored_champion

from trademl.config import Settings
from trademl.serving import create_app
from trademl.serving.metrics import Metrics
from trademl.tracking.watch import monitor

MODEL = "BTCUSDT_1h_monitoring_endpoint_test"
URL = f"/api/v1/models/{MODEL}/monitoring"


@dataclass
class Server:
    settings: Settings
    client: TestClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Server]:
    # No registry reloads and rare store polls: the server opens no file on its own during a
    # test (the filesystem test below relies on it).
    settings = monitored_champion(
        tmp_path_factory.mktemp("monitoring_endpoint"),
        data_dir,
        MODEL,
        model_reload_s=0,
        store_poll_s=3600,
        monitoring_cache_s=0,  # every request computes (the cache has its own test)
    )
    with TestClient(create_app(settings)) as client:
        yield Server(settings, client)


def _plain(report: dict[str, Any]) -> Any:
    return json.loads(json.dumps(report))


def test_the_report_is_monitors_for_the_same_inputs(server: Server) -> None:
    answer = server.client.get(URL)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected, info, _ = monitor(MODEL, settings=server.settings)
    assert body == _plain(expected.as_dict())
    assert body["model"] == MODEL and body["version"] == info.version == 1
    assert body["window"]["end"] == "2023-06-30T23:00:00+00:00"
    assert {t["target"] for t in body["targets"]} == {"max_high_6", "min_low_6"}
    assert any(a.startswith("min_low_6: the loss of") for a in body["alarms"])
    assert body["feature_drift"]["columns"] > 10

    # An explicit version and window.
    narrow = server.client.get(URL, params={"version": "1", "window": 200})
    assert narrow.status_code == 200, narrow.text
    report, _, _ = monitor(MODEL, 1, window=200, settings=server.settings)
    assert narrow.json() == _plain(report.as_dict())
    assert narrow.json()["logged"] == 200 < body["logged"]


def test_an_unknown_model_or_version_is_a_404(server: Server) -> None:
    answer = server.client.get("/api/v1/models/no_such_model/monitoring")
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "ModelNotFoundError"
    assert "'no_such_model' is not registered" in answer.json()["error"]["message"]
    answer = server.client.get(URL, params={"version": "7"})
    assert answer.status_code == 404 and "has no version 7" in answer.json()["error"]["message"]


def test_too_few_mature_labels_is_a_409_with_the_counts(server: Server) -> None:
    # 20 bars hold fewer matured predictions than the version's monitoring.min_mature (100).
    answer = server.client.get(URL, params={"window": 20})
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["type"] == "MonitoringError"
    assert "(20 bars) holds 20 logged predictions" in error["message"]
    assert "a report needs at least 100" in error["message"]


class _Opened:
    """Paths under ``roots`` or naming ``etc`` that the process opens while recording."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [str(r) for r in roots]
        self.recording = False
        self.paths: list[str] = []
        sys.addaudithook(self._hook)  # cannot be removed: it only records while asked

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.recording or event not in {"open", "os.listdir", "os.scandir"}:
            return
        path = str(args[0]) if args else ""
        if any(path.startswith(r) for r in self.roots) or "etc" in Path(path).parts:
            self.paths.append(path)

    def during(self, call: Any) -> tuple[Any, list[str]]:
        self.paths, self.recording = [], True
        try:
            return call(), list(self.paths)
        finally:
            self.recording = False


def test_bad_names_and_windows_are_refused_before_any_file_is_read(server: Server) -> None:
    opened = _Opened([server.settings.home])
    client = server.client
    # The recorder sees what a served report reads (the version's pipeline artifact).
    answer, paths = opened.during(lambda: client.get(URL))
    assert answer.status_code == 200 and paths

    # A slash, even encoded, leaves the route: no such endpoint.
    answer, paths = opened.during(lambda: client.get("/api/v1/models/..%2F..%2Fetc/monitoring"))
    assert answer.status_code == 404 and paths == []
    assert answer.json()["error"]["message"].startswith("no such endpoint")
    # Anything else that is not a registry name is refused by validation, before the registry.
    for name in ("%2E%2E", "%2E", ".hidden", "-rf", "a%20b", "x" * 200, "%00", "a%0Ab"):
        answer, paths = opened.during(lambda n=name: client.get(f"/api/v1/models/{n}/monitoring"))
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["error"]["details"][0]["loc"] == "path.name"
        assert paths == [], name
    for window in ("10**9", "1000001", "100001", "19", "-5", "abc"):
        answer, paths = opened.during(lambda w=window: client.get(URL, params={"window": w}))
        assert answer.status_code == 422 and paths == [], window
        assert answer.json()["error"]["details"][0]["loc"] == "query.window"
    for version in ("../1", "1;drop", "", "9" * 12):
        answer, paths = opened.during(lambda v=version: client.get(URL, params={"version": v}))
        assert answer.status_code == 422 and paths == [], version


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("trademl_monitor_")
    }


def test_metrics_show_the_latest_report(server: Server) -> None:
    assert server.client.get(URL, params={"window": 300}).status_code == 200
    report, _, _ = monitor(MODEL, window=300, settings=server.settings)
    samples = _samples(server.client.get("/metrics").text)

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted({"model": MODEL, **labels}.items())))]

    for target in report.targets.values():
        assert target.threshold is not None and target.coverage is not None
        at = {"target": target.name}
        assert value("trademl_monitor_cusum", **at) == target.last_statistic
        assert value("trademl_monitor_cusum_threshold", **at) == target.threshold
        assert value("trademl_monitor_realised_loss", forecast="served", **at) == (
            target.model_loss
        )
        assert value("trademl_monitor_realised_loss", forecast="baseline", **at) == (
            target.baseline_loss
        )
        assert value("trademl_monitor_coverage", **at) == float(target.coverage.iloc[-1])
    assert value("trademl_monitor_mature_share") == report.mature_share
    assert value("trademl_monitor_drifted_features") == len(report.drifted)
    assert value("trademl_monitor_version") == report.version
    # One sample per model and target (and forecast): no stale series.
    cusums = [k for k in samples if k[0] == "trademl_monitor_cusum"]
    assert len(cusums) == len(report.targets)


def test_a_target_left_out_of_a_newer_report_loses_its_gauges(server: Server) -> None:
    report, _, _ = monitor(MODEL, settings=server.settings)
    metrics = Metrics(lambda: {}, lambda: {})
    metrics.observe_monitoring(report)
    kept = next(iter(report.targets))
    metrics.observe_monitoring(
        dataclasses.replace(report, targets={kept: report.targets[kept]}, feature_drift=None)
    )
    samples = _samples(metrics.render().decode())
    targets = {dict(k[1]).get("target") for k in samples} - {None}
    assert targets == {kept}
    assert len([k for k in samples if k[0] == "trademl_monitor_realised_loss"]) == 2
    # Without a drift table there is no drifted-features count rather than a stale one.
    assert not any(k[0] == "trademl_monitor_drifted_features" for k in samples)
    assert any(k[0] == "trademl_monitor_mature_share" for k in samples)


def test_a_repeated_query_is_answered_from_the_report_computed_last(server: Server) -> None:
    """Anyone who reaches the server may ask for a report that reads a whole window: within
    TRADEML_MONITORING_CACHE_S the same query gets the computed one (its age in ``Age``),
    without touching a file; another query is computed."""
    opened = _Opened([server.settings.home])
    settings = server.settings.model_copy(update={"monitoring_cache_s": 3600})
    with TestClient(create_app(settings)) as client:
        first, paths = opened.during(lambda: client.get(URL, params={"window": 300}))
        assert first.status_code == 200 and first.headers["age"] == "0" and paths
        again, paths = opened.during(lambda: client.get(URL, params={"window": 300}))
        assert again.status_code == 200 and again.json() == first.json()
        assert paths == [] and int(again.headers["age"]) >= 0
        other, paths = opened.during(lambda: client.get(URL, params={"window": 320}))
        assert other.status_code == 200 and other.headers["age"] == "0" and paths
        assert other.json()["logged"] > first.json()["logged"]
        # A refusal is not cached: the next identical request is assessed again.
        for _ in range(2):
            refused, paths = opened.during(lambda: client.get(URL, params={"window": 20}))
            assert refused.status_code == 409 and paths
