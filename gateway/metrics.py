"""Prometheus metrics of the gateway: requests and total latency per route/backend/status, upstream apart."""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import REQUEST_ID, event, request_id

BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 5.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests",
            "Requests answered by the gateway",
            ["route", "backend", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Total time in the gateway, upstream included",
            ["route", "backend", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.shed = Counter(
            "gateway_shed_requests",
            "Requests refused with 503 because the gateway's concurrency limit per backend was reached",
            ["backend"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "gateway_upstream_in_flight",
            "Requests in flight to each backend",
            ["backend"],
            registry=self.registry,
            multiprocess_mode="livesum",  # with several workers: the sum over the live ones
        )
        self.upstream = Histogram(
            "gateway_upstream_duration_seconds",
            "Time waiting for the backend",
            ["backend", "outcome"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], tuple[Any, ...]] = {}

    def exposition(self) -> bytes:
        """The text format: this process's metrics, or, with several workers (PROMETHEUS_MULTIPROC_DIR set by
        `python -m gateway`), every worker's summed, whichever worker answers the scrape."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))

    def observe_request(self, route: str, backend: str, status: str, seconds: float) -> None:
        """Label lookups are cached: prometheus_client's labels() costs more than the observation itself."""
        key = ("r", route, backend, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, backend, status),
                self.latency.labels(route, backend, status),
            )
        children[0].inc()
        children[1].observe(seconds)

    def upstream_observe(self, backend: str, outcome: str, seconds: float) -> None:
        key = ("u", backend, outcome)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.upstream.labels(backend, outcome),)
        children[0].observe(seconds)


KNOWN_ROUTES = {
    "/predict", "/predict/tf", "/predict/torch", "/compare", "/healthz", "/readyz", "/metrics", "/models",
    "/models/{model}/predict", "/models/{model}/predict/tf", "/models/{model}/predict/torch", "/models/{model}/compare",
}  # fmt: skip


class MetricsMiddleware:
    """Pure ASGI, so it adds no per-request task; the route sets `state.backend` for the label. It also gives each
    request its id (X-Request-Id, gateway/logs.py), returns it, and writes the access log line when that is on."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        rid = request_id(scope["headers"])
        REQUEST_ID.set(rid)  # the request's own task: no reset needed
        rid_header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope["path"]
            if path.startswith("/models/"):  # one label per route, not per model name a client makes up
                _, _, rest = path[len("/models/") :].partition("/")
                path = "/models/{model}/" + rest
            route = path if path in KNOWN_ROUTES else "other"
            backend = scope.get("state", {}).get("backend", "none")
            seconds = time.perf_counter() - start
            self.metrics.observe_request(route, backend, str(status), seconds)
            if self.access_log:
                event(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round(seconds * 1000.0, 3),
                    backend=backend,
                )
