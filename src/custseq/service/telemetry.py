"""Prometheus metrics of one app (its own registry: two apps in one process never share counts)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Telemetry:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    errors: Counter
    customers_scored: Counter

    @classmethod
    def create(cls) -> Telemetry:
        registry = CollectorRegistry()
        return cls(
            registry,
            Counter("custseq_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                    registry=registry),
            Histogram("custseq_request_seconds", "Request latency by endpoint", ["endpoint"], buckets=LATENCY_BUCKETS,
                      registry=registry),
            Counter("custseq_errors", "Failed requests by endpoint and kind (client, server, timeout)",
                    ["endpoint", "kind"], registry=registry),
            Counter("custseq_customers_scored", "Customers scored or embedded", registry=registry),
        )  # fmt: skip

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            kind = "timeout" if status == 503 else "server" if status >= 500 else "client"
            self.errors.labels(endpoint, kind).inc()
