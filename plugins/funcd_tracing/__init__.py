"""OpenTelemetry tracing for funcd functions (hook name ``tracing``).

Modules: ``config`` (settings from the context and the ``OTEL_*`` environment), ``export`` (the
TracerProvider and OTLP exporter), ``propagation`` and ``sw8`` (trace context in and out), ``spans``
(names and attributes), ``plugin`` (the hooks).
"""

from __future__ import annotations

from .config import TracingConfig, from_sources
from .plugin import TracingPlugin, active_span_ids, release_globals
from .sw8 import Sw8, Sw8Propagator

__all__ = [
    "Sw8",
    "Sw8Propagator",
    "TracingConfig",
    "TracingPlugin",
    "active_span_ids",
    "from_sources",
    "release_globals",
]
