"""Prometheus metrics for funcd functions: hook name ``metrics`` (``metrics.enabled`` turns it on).

Served at ``metrics.path`` (default ``/metrics``) on the function's HTTP port, also for functions
without an HTTP trigger. Every metric is labelled by ``function``:

- ``funcd_invocations_total{function, trigger, outcome}``: ``trigger`` is ``http``,
  ``pubsub:<input>`` or ``binding:<input>``; ``outcome`` the HTTP status or the Dapr ack;
- ``funcd_invocation_duration_seconds{function, trigger}``: histogram, 1 ms to 60 s;
- ``funcd_in_flight{function}``: gauge, summed over the live workers;
- ``funcd_cold_start_seconds{function}``: histogram, one observation per worker process: from the
  process's start (the kernel's start time: the worker's fork, or the exec of a single-process
  server) to ``worker_started`` (plugins loaded, ``init_context`` done, about to serve);
- ``funcd_rejected_total{function, reason}``: ``too_large``, ``bad_cloudevent``, ``invalid_delivery``;
- ``funcd_output_sends_total{function, output, outcome}``: ``success``, ``temporary_error``,
  ``permanent_error``.

Worker processes share one prometheus_client multiprocess directory (``multiprocess.py``).

A call only adds to its worker's plain-Python tallies (``tally.py``); a worker flushes them into the
metrics right before it answers a scrape, every ``MetricsPlugin.flush_interval`` (0.5 s) from a
background thread in multiprocess mode, and when it stops. So a scrape shows all the calls of the
worker answering it, and lags the other workers' calls by at most the flush interval.
"""

from __future__ import annotations

from .families import COLD_START_BUCKETS, DURATION_BUCKETS, Families
from .plugin import MetricsPlugin, process_age, trigger_label

__all__ = [
    "COLD_START_BUCKETS",
    "DURATION_BUCKETS",
    "Families",
    "MetricsPlugin",
    "process_age",
    "trigger_label",
]
