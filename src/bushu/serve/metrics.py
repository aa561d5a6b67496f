"""Prometheus metrics with Triton's names, read from the models' statistics at scrape time (so the
request path pays nothing for them), plus process CPU/memory; served on their own port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from .core import ModelManager

__all__ = ["start_metrics_server"]

# Triton metric name -> (stats key, "count" or "us", help)
_COUNTERS = {
    "nv_inference_request_success": ("success", "count", "Number of successful inference requests"),
    "nv_inference_request_failure": ("fail", "count", "Number of failed inference requests"),
    "nv_inference_request_duration_us": ("success", "us", "Cumulative inference request duration in microseconds"),
    "nv_inference_queue_duration_us": ("queue", "us", "Cumulative inference queuing duration in microseconds"),
    "nv_inference_compute_input_duration_us": (
        "compute_input",
        "us",
        "Cumulative compute input duration in microseconds",
    ),
    "nv_inference_compute_infer_duration_us": (
        "compute_infer",
        "us",
        "Cumulative compute inference duration in microseconds",
    ),
    "nv_inference_compute_output_duration_us": (
        "compute_output",
        "us",
        "Cumulative compute output duration in microseconds",
    ),
}


class _ModelCollector:
    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def collect(self):
        labels = ["model", "version"]
        # "unknown", not "counter": prometheus_client would print counters as *_total, Triton does not
        fams = {n: Metric(n, h, "unknown") for n, (_, _, h) in _COUNTERS.items()}
        count = Metric("nv_inference_count", "Number of inferences performed (batch elements)", "unknown")
        execs = Metric("nv_inference_exec_count", "Number of model executions performed", "unknown")
        pending = GaugeMetricFamily(
            "nv_inference_pending_request_count", "Requests waiting in the queue", labels=labels
        )
        for m in self.manager.loaded():
            lv = {"model": m.name, "version": m.version}
            s = m.stats
            # Triton's counters carry no _total suffix: add the samples under the exact names
            for n, (key, unit, _) in _COUNTERS.items():
                fams[n].add_sample(n, lv, s.count[key] if unit == "count" else s.ns[key] / 1000)
            count.add_sample("nv_inference_count", lv, s.inference_count)
            execs.add_sample("nv_inference_exec_count", lv, s.execution_count)
            pending.add_metric([m.name, m.version], m.batcher.pending)
        yield from fams.values()
        yield from (count, execs, pending)


def start_metrics_server(manager: ModelManager, host: str, port: int):
    """Start the /metrics endpoint in a thread; returns (server, port)."""
    registry = CollectorRegistry()
    registry.register(_ModelCollector(manager))
    ProcessCollector(registry=registry)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, server.server_port
