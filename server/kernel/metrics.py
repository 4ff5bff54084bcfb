"""Prometheus metrics, one registry per app (so several apps in one test process never clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "onedoor_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "onedoor_http_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
        )
        self.app_errors = Counter(
            "onedoor_app_errors", "Errors returned to clients", ["code"], registry=self.registry
        )
        self.websockets = Gauge(
            "onedoor_websockets", "Open WebSocket connections", registry=self.registry
        )
        self.background_failures = Counter(
            "onedoor_background_failures",
            "Background job failures",
            ["job"],
            registry=self.registry,
        )

        self.jobs_backlog = Gauge(
            "onedoor_jobs_backlog",
            "Persisted jobs pending more than five minutes past their time, per job table",
            ["queue"],
            registry=self.registry,
        )
        self.jobs_backlog_alerts = Counter(
            "onedoor_jobs_backlog_alerts",
            "Job runner rounds that found a backlog",
            ["queue"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
