"""Prometheus metrics of one server app (``GET /metrics``), in a registry of its own.

A registry per app, not prometheus_client's global one: two apps in one process (tests, a host that mounts
several) count separately. Under ``--workers N`` every process has its own numbers; ``/metrics`` shows those
of the process that answers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServeMetrics"]

#: Request latency buckets (seconds): a tiny classifier answers in milliseconds, a generator in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Batch size buckets (inputs, or requests, per model call).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServeMetrics:
    """The server's counters, histograms and gauges, and their text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("nlpkit_requests", "HTTP requests answered, by route and status code.",
                                ["route", "status"], registry=r)
        self.latency = Histogram("nlpkit_request_duration_seconds", "Time from request to the end of the "
                                 "response (a stream's last event), by route.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("nlpkit_batch_size", "Inputs per model call (requests merged by the "
                                    "batcher).", buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("nlpkit_batch_requests", "Requests merged into one model call.",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("nlpkit_queue_depth", "Inputs waiting for the model.", registry=r)
        self.in_flight = Gauge("nlpkit_requests_in_flight", "Requests being served (queued or running).",
                               registry=r)
        self.tokens = Counter("nlpkit_tokens", "Tokens read (input) and written (output) by the model.",
                              ["kind"], registry=r)
        self.rejected = Counter("nlpkit_rejected_requests", "Requests refused before reaching the model, by "
                                "reason.", ["reason"], registry=r)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
