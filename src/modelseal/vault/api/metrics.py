"""Prometheus metrics of one vault app, in a registry of its own (two apps never share counters).

- ``modelseal_vault_http_requests_total{route, method, status}``
- ``modelseal_vault_http_request_duration_seconds{route, method}`` (histogram)
- ``modelseal_vault_key_releases_granted_total``
- ``modelseal_vault_key_releases_refused_total{code}``

``route`` is the route's path template (``/v1/licenses/{license_id}``), never the raw path, so an
unknown path cannot grow the label set: requests that match no route count as ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Final

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE", "MetricsMiddleware", "VaultMetrics", "metrics_router"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
_UNMATCHED: Final = "unmatched"
# Key releases take milliseconds; a slow database or an HSM can take seconds.
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class VaultMetrics:
    """The counters and histograms of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelseal_vault_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelseal_vault_http_request_duration_seconds",
            "Time from receiving a request to sending the end of its response.",
            ("route", "method"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.granted = Counter(
            "modelseal_vault_key_releases_granted",
            "Key releases that returned a sealed data key.",
            registry=self.registry,
        )
        self.refused = Counter(
            "modelseal_vault_key_releases_refused",
            "Key releases refused, by refusal code.",
            ("code",),
            registry=self.registry,
        )

    def release_granted(self) -> None:
        self.granted.inc()

    def release_refused(self, code: str) -> None:
        self.refused.labels(code).inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request (ASGI; the response is passed through untouched)."""

    def __init__(self, app: ASGIApp, metrics: VaultMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app fails before answering, the server answers 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or _UNMATCHED
            method = scope["method"]
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - start)


def metrics_router(metrics: VaultMetrics) -> APIRouter:
    """``GET /metrics``: the Prometheus text format, open like ``/healthz``."""
    router = APIRouter(tags=["public"])

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics",
    )
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return router
