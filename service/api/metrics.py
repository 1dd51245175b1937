"""Prometheus metrics: requests by route and status, their latency, and jobs by status."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.core.jobs.lifecycle import JobStatus


class Metrics:
    def __init__(self) -> None:
        # A registry per app: tests build many apps in one process.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gora_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gora_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        # Counted from the database at each scrape (the /metrics route), not by this process.
        self.jobs = Gauge(
            "gora_jobs", "Fine-tuning jobs by status", ["status"], registry=self.registry
        )

    def exposition(self, job_counts: dict[str, int]) -> bytes:
        for status in JobStatus:
            self.jobs.labels(status.value).set(job_counts.get(status.value, 0))
        return generate_latest(self.registry)


class MetricsMiddleware:
    """A plain ASGI middleware (no per-request task or body buffering, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            # The template ("/v1/fine_tuning/jobs/{job_id}"), never the raw path: bounded labels.
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
