"""Prometheus metrics of the server, on a registry of its own (so two servers in one process,
as in the tests, count apart)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    def __init__(self, queue_length: Callable[[], int], evidence_bytes: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("geosleuth_locate_requests", "Locate requests by outcome",
                                ["outcome"], registry=self.registry)
        self.errors = Counter("geosleuth_errors", "Refusals and failures by kind", ["kind"],
                              registry=self.registry)
        self.stage_seconds = Histogram("geosleuth_stage_seconds", "Time per funnel stage",
                                       ["stage"], buckets=STAGE_BUCKETS_S,
                                       registry=self.registry)
        self.request_seconds = Histogram("geosleuth_request_seconds",
                                         "Locate request time, arrival to answer",
                                         buckets=STAGE_BUCKETS_S, registry=self.registry)
        queue = Gauge("geosleuth_queue_length", "Jobs waiting for the engine worker",
                      registry=self.registry)
        queue.set_function(queue_length)
        kept = Gauge("geosleuth_evidence_bytes", "Bytes of recent photos kept for evidence",
                     registry=self.registry)
        kept.set_function(evidence_bytes)
        self.references = Gauge("geosleuth_index_references", "Reference photos in the index",
                                registry=self.registry)
        self.model = Gauge("geosleuth_model_info", "The backends and the device they run on",
                           ["descriptor", "verifier", "device"], registry=self.registry)

    def refused(self, kind: str, *, locate: bool = True) -> None:
        """A refusal: counted by kind, and as the outcome of a locate request if it was one."""
        self.errors.labels(kind).inc()
        if locate:
            self.requests.labels(kind).inc()
