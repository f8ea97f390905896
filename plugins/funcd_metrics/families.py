"""The metric families the plugin serves: names, labels, buckets (see docs/observability.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds, 1 ms to 60 s in 1-2.5-5 steps: a function's calls range from a sub-millisecond reply to a
long batch job, and 15 buckets keep a histogram series small (16 with +Inf) for every trigger."""
COLD_START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds, 50 ms (a forked worker with a light ``init_context``) to 2 minutes (a model load)."""


@dataclass(frozen=True)
class Families:
    """The plugin's metric families, created once per worker process."""

    invocations: Any
    """``funcd_invocations_total{function, trigger, outcome}``: calls that reached the handler."""
    duration: Any
    """``funcd_invocation_duration_seconds{function, trigger}``: hooks, handler and reply."""
    in_flight: Any
    """``funcd_in_flight{function}``: calls running now (summed over live workers)."""
    cold_start: Any
    """``funcd_cold_start_seconds{function}``: a worker's process start to ready, once per worker."""
    rejected: Any
    """``funcd_rejected_total{function, reason}``: requests and deliveries refused before the handler."""
    output_sends: Any
    """``funcd_output_sends_total{function, output, outcome}``: ``context.send`` calls per output."""

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> Families:
        """The families, registered in ``registry`` (``None`` in multiprocess mode: the files are
        what a scrape reads)."""
        return cls(
            invocations=Counter(
                "funcd_invocations_total",
                "Calls of the function, by trigger and reply (HTTP status or Dapr ack).",
                ["function", "trigger", "outcome"],
                registry=registry,
            ),
            duration=Histogram(
                "funcd_invocation_duration_seconds",
                "Duration of a call: plugin hooks, handler and reply.",
                ["function", "trigger"],
                buckets=DURATION_BUCKETS,
                registry=registry,
            ),
            in_flight=Gauge(
                "funcd_in_flight",
                "Calls in flight.",
                ["function"],
                multiprocess_mode="livesum",
                registry=registry,
            ),
            cold_start=Histogram(
                "funcd_cold_start_seconds",
                "Seconds from a worker process's start to its being ready to serve (plugins loaded, "
                "init_context done); one observation per worker.",
                ["function"],
                buckets=COLD_START_BUCKETS,
                registry=registry,
            ),
            rejected=Counter(
                "funcd_rejected_total",
                "Requests and deliveries refused before the handler, by reason.",
                ["function", "reason"],
                registry=registry,
            ),
            output_sends=Counter(
                "funcd_output_sends_total",
                "context.send calls to the Dapr sidecar, by output and outcome.",
                ["function", "output", "outcome"],
                registry=registry,
            ),
        )
