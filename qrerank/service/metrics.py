"""Prometheus metrics, one registry per app (so several apps in one process never collide)."""

from __future__ import annotations

from collections.abc import Callable

from qrerank._optional import require

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class ServiceMetrics:
    """Request counts and latencies per route, batch sizes and encode time, queue depth."""

    def __init__(self, queue_depth: Callable[[], float] | None = None) -> None:
        prom = require("prometheus_client", "service")
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self.requests = prom.Counter(
            "qrerank_requests",
            "HTTP requests by route, method and status code.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = prom.Histogram(
            "qrerank_request_latency_seconds",
            "HTTP request latency by route.",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = prom.Histogram(
            "qrerank_batch_requests",
            "Requests encoded together in one micro-batch.",
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_texts = prom.Histogram(
            "qrerank_batch_texts",
            "Distinct texts encoded in one micro-batch.",
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.encode_seconds = prom.Histogram(
            "qrerank_encode_seconds",
            "Time to encode one micro-batch.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejected = prom.Counter(
            "qrerank_rejected",
            "Requests refused with 429 because the batch queue was full.",
            registry=self.registry,
        )
        self.queue_depth = prom.Gauge(
            "qrerank_queue_depth", "Requests waiting for the encoder.", registry=self.registry
        )
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)
        self._latest = prom.generate_latest
        self.content_type = prom.CONTENT_TYPE_LATEST

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, n_requests: int, n_texts: int, seconds: float) -> None:
        self.batch_requests.observe(n_requests)
        self.batch_texts.observe(n_texts)
        self.encode_seconds.observe(seconds)

    def render(self) -> bytes:
        return bytes(self._latest(self.registry))
