"""Prometheus metrics of one app: request counts and latencies by route, predictions by model
version, served models and jobs by state (read from the job store at scrape time).

Each app has its own registry, so several apps in one process (tests) do not collide; with
several uvicorn workers each worker reports its own counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
