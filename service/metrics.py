"""Prometheus metrics: requests by route and status, their latency, and jobs by status."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.db import Database
from service.jobs import repository as jobs_repository
from service.jobs.lifecycle import JobStatus


class JobsByStatus(Collector):
    """Counts jobs per status when scraped, so the numbers come from the database, not this process."""

    def __init__(self, database: Database):
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("gora_jobs", "Fine-tuning jobs by status", labels=["status"])
        with self.database.transaction() as session:
            counts = jobs_repository.count_by_status(session)
        for status in JobStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family


class Metrics:
    def __init__(self, database: Database):
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
        self.registry.register(JobsByStatus(database))

    def exposition(self) -> bytes:
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
