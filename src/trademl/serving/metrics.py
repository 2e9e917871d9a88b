"""Prometheus metrics of one app: request counts and latencies by route, predictions by model
version, served models and jobs by state (read from the job store at scrape time).

Each app has its own registry, so several apps in one process (tests) do not collide; with
several uvicorn workers each worker reports its own counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
