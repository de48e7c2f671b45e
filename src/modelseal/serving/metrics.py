"""Prometheus metrics, named after the OVMS families their users look for (``modelseal_`` prefix).

Request counters and latencies are recorded by the adapters through :meth:`Metrics.track`; model
state, lease state and metered inferences are read from the :class:`ModelManager` at scrape time.
Each server has its own registry. Labels name only configured models and versions, so a client
cannot grow the label set by asking for names that do not exist.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from modelseal.serving.models import ModelManager

__all__ = ["CONTENT_TYPE", "Metrics", "RequestTracker"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_US_BUCKETS = tuple(float(10**e * m) for e in range(1, 8) for m in (1, 2.5, 5))
_LEASE_STATES = ("active", "offline", "ended", "none")


class RequestTracker:
    """Set ``failed`` before the ``track`` block ends to count the request as failed."""

    failed = False


class _ModelCollector(Collector):
    def __init__(self, models: ModelManager) -> None:
        self._models = models

    def collect(self) -> Iterable[Metric]:
        from modelseal.serving.models import State

        state = GaugeMetricFamily(
            "modelseal_model_state",
            "1 for the state each model version is in (START, LOADING, AVAILABLE, UNLOADING, END).",
            labels=["name", "version", "state"],
        )
        lease = GaugeMetricFamily(
            "modelseal_lease_state",
            "1 for the lease state of each sealed model version's key (none: no key held).",
            labels=["name", "version", "state"],
        )
        metered = CounterMetricFamily(
            "modelseal_inferences_metered",
            "Inferences counted on sealed models' keys (reported to the vault on renewal).",
            labels=["name", "version"],
        )
        for version in self._models.versions():
            labels = [version.name, str(version.version)]
            for member in State:
                state.add_metric([*labels, member.value], float(version.state is member))
            if version.source.sealed is None:
                continue
            status = version.lease()
            current = status.state if status is not None else "none"
            for name in _LEASE_STATES:
                lease.add_metric([*labels, name], float(current == name))
            metered.add_metric(labels, float(version.metered))
        return [state, lease, metered]


class Metrics:
    """The server's metric families in one registry."""

    def __init__(self, models: ModelManager) -> None:
        self._models = models
        self.registry = CollectorRegistry()
        request_labels = ["api", "interface", "method", "name", "version"]
        self.success = Counter(
            "modelseal_requests_success",
            "Requests answered successfully.",
            request_labels,
            registry=self.registry,
        )
        self.fail = Counter(
            "modelseal_requests_fail",
            "Requests answered with an error.",
            request_labels,
            registry=self.registry,
        )
        self.request_time = Histogram(
            "modelseal_request_time_us",
            "Time to answer an inference request, in microseconds.",
            ["interface", "name", "version"],
            buckets=_US_BUCKETS,
            registry=self.registry,
        )
        self.inference_time = Histogram(
            "modelseal_inference_time_us",
            "Time the backend spent on one inference, in microseconds.",
            ["name", "version"],
            buckets=_US_BUCKETS,
            registry=self.registry,
        )
        self.current = Gauge(
            "modelseal_current_requests",
            "Requests being handled now.",
            ["name", "version"],
            registry=self.registry,
        )
        self.registry.register(_ModelCollector(models))

    def _labels(self, name: str, version: str) -> tuple[str, str]:
        """Only configured names and versions become label values."""
        names = self._models.names()
        if name not in names:
            return "", ""
        known = version.isdigit() and int(version) in self._models.model(name)
        return name, version if known else ""

    @contextmanager
    def track(
        self, interface: str, method: str, name: str = "", version: str = ""
    ) -> Iterator[RequestTracker]:
        name, version = self._labels(name, version)
        tracker = RequestTracker()
        gauge = self.current.labels(name, version)
        gauge.inc()
        started = time.perf_counter()
        try:
            yield tracker
        except BaseException:
            tracker.failed = True
            raise
        finally:
            gauge.dec()
            counter = self.fail if tracker.failed else self.success
            counter.labels("KServe", interface, method, name, version).inc()
            if method == "ModelInfer":
                elapsed = (time.perf_counter() - started) * 1e6
                self.request_time.labels(interface, name, version).observe(elapsed)

    def observe_inference(self, name: str, version: str, seconds: float) -> None:
        self.inference_time.labels(name, version).observe(seconds * 1e6)

    def render(self) -> bytes:
        return generate_latest(self.registry)
