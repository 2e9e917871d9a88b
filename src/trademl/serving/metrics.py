"""Prometheus metrics of one app: request counts and latencies by route, predictions by model
version, served models and jobs by state (read from the job store at scrape time), and the
latest monitoring report of each model (set whenever one is computed).

Each app has its own registry, so several apps in one process (tests) do not collide; with
several uvicorn workers each worker reports its own counts.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from trademl.monitoring.assess import Assessment

# Label children are looked up once: ``labels()`` takes a lock and builds a key each call, a
# visible share of a store-path request. The caches stop growing here (labels still work).
_CHILDREN_MAX = 4096
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _StateCollector(Collector):
    """Gauges read when scraped: served models and jobs per state."""

    def __init__(
        self, served: Callable[[], dict[str, int]], jobs: Callable[[], dict[str, int]]
    ) -> None:
        self._served = served
        self._jobs = jobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        models = GaugeMetricFamily(
            "trademl_served_model_version", "The version served per model", labels=["model"]
        )
        for name, version in self._served().items():
            models.add_metric([name], version)
        yield models
        jobs = GaugeMetricFamily("trademl_jobs", "Jobs in the job store by state", labels=["state"])
        try:
            counts = self._jobs()
        except Exception:
            counts = {}
        for state, count in counts.items():
            jobs.add_metric([state], count)
        yield jobs


class Metrics:
    """The app's metrics and the registry they live in."""

    def __init__(
        self, served: Callable[[], dict[str, int]], jobs: Callable[[], dict[str, int]]
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "trademl_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "trademl_http_request_duration_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.predictions = Counter(
            "trademl_predictions",
            "Predictions answered by model, version and source (store or request)",
            ["model", "version", "source"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(served, jobs))
        self._children: dict[tuple[str, ...], Any] = {}
        self.monitoring = _MonitoringGauges(self.registry)

    def _child(self, metric: Counter | Histogram, kind: str, labels: tuple[str, ...]) -> Any:
        key = (kind, *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)
            if len(self._children) < _CHILDREN_MAX:
                self._children[key] = child
        return child

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency (a method outside HTTP's is ``other``)."""
        method = method if method in _METHODS else "other"
        self._child(self.requests, "r", (method, route, str(status))).inc()
        self._child(self.latency, "l", (method, route)).observe(seconds)

    def count_prediction(self, model: str, version: int, source: str) -> None:
        """Count one prediction answered for ``model`` ``version`` from ``source``."""
        self._child(self.predictions, "p", (model, str(version), source)).inc()

    def observe_monitoring(self, report: Assessment) -> None:
        """Set the ``trademl_monitor_*`` gauges of ``report``'s model from ``report``."""
        self.monitoring.observe(report)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _MonitoringGauges:
    """The latest monitoring report per model, as gauges.

    Per model and target: the CUSUM statistic now and its threshold, the realised loss of the
    served forecast and of the baseline (``forecast`` label), the rolling interval coverage;
    per model: the mature share, the number of drifted features and the version the gauges
    describe. A value the report lacks (no threshold, no interval) has no sample, and targets
    absent from a model's newest report are removed.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        target, model = ["model", "target"], ["model"]
        self.cusum = Gauge(
            "trademl_monitor_cusum",
            "CUSUM statistic of the loss differential (served minus baseline) at the window's end",
            target,
            registry=registry,
        )
        self.threshold = Gauge(
            "trademl_monitor_cusum_threshold",
            "The CUSUM alarm threshold calibrated at training",
            target,
            registry=registry,
        )
        self.loss = Gauge(
            "trademl_monitor_realised_loss",
            "Mean realised loss over the window's mature bars, of the served forecast or baseline",
            [*target, "forecast"],
            registry=registry,
        )
        self.coverage = Gauge(
            "trademl_monitor_coverage",
            "Rolling interval coverage at the window's end",
            target,
            registry=registry,
        )
        self.mature_share = Gauge(
            "trademl_monitor_mature_share",
            "Share of the window's logged predictions whose labels have matured",
            model,
            registry=registry,
        )
        self.drifted = Gauge(
            "trademl_monitor_drifted_features",
            "Features flagged as drifted in the window (Benjamini-Hochberg across features)",
            model,
            registry=registry,
        )
        self.version = Gauge(
            "trademl_monitor_version",
            "The model version the trademl_monitor_* gauges describe",
            model,
            registry=registry,
        )
        self._targets: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def _set(self, gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
        if value is None or not math.isfinite(value):
            self._remove(gauge, labels)
        else:
            gauge.labels(*labels).set(value)

    @staticmethod
    def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
        with contextlib.suppress(KeyError):  # never set
            gauge.remove(*labels)

    def _drop_target(self, model: str, target: str) -> None:
        for gauge in (self.cusum, self.threshold, self.coverage):
            self._remove(gauge, (model, target))
        for forecast in ("served", "baseline"):
            self._remove(self.loss, (model, target, forecast))

    def observe(self, report: Assessment) -> None:
        model = report.model
        # One report at a time, so gauges of one model never mix two reports' targets.
        with self._lock:
            for gone in self._targets.get(model, set()) - set(report.targets):
                self._drop_target(model, gone)
            self._targets[model] = set(report.targets)
            for name, health in report.targets.items():
                labels = (model, name)
                self._set(self.cusum, labels, health.last_statistic)
                self._set(self.threshold, labels, health.threshold)
                self._set(self.loss, (*labels, "served"), health.model_loss)
                self._set(self.loss, (*labels, "baseline"), health.baseline_loss)
                coverage = health.coverage
                last = float(coverage.iloc[-1]) if coverage is not None and len(coverage) else None
                self._set(self.coverage, labels, last)
            self._set(self.mature_share, (model,), report.mature_share)
            drifted = None if report.feature_drift is None else len(report.drifted)
            self._set(self.drifted, (model,), drifted)
            self.version.labels(model).set(report.version)
