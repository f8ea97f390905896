"""One TracerProvider per worker process: resource, sampler, and a batch processor over OTLP.

A slow or dead collector never holds up a call: spans are queued (bounded; dropped when full) and
exported by the processor's thread, each export bounded by the configured timeout. ``shutdown`` flushes
within a bounded wait and leaves the exporter behind when the collector does not answer in time.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from .config import TracingConfig

log = logging.getLogger("funcd_tracing")


def root_rate(config: TracingConfig) -> float | None:
    """The share of root calls the plugin samples itself, before asking the SDK for a span; None when
    the sampler is not parent-based (the SDK then decides every span)."""
    if not config.sampler.startswith("parentbased_"):
        return None
    return {"parentbased_always_on": 1.0, "parentbased_always_off": 0.0}.get(
        config.sampler, config.sampler_arg
    )


def sampler(config: TracingConfig) -> Sampler:
    """The provider's sampler. With a parent-based ratio the plugin draws the root decision itself
    (``root_rate``), so the provider samples the roots it is asked for."""
    if config.sampler == "parentbased_traceidratio":
        return ParentBased(ALWAYS_ON)
    base: Sampler
    name = config.sampler.removeprefix("parentbased_")
    if name == "always_on":
        base = ALWAYS_ON
    elif name == "always_off":
        base = ALWAYS_OFF
    else:
        base = TraceIdRatioBased(config.sampler_arg)
    return ParentBased(base) if config.sampler.startswith("parentbased_") else base


def otlp_exporter(config: TracingConfig) -> SpanExporter:
    """The OTLP exporter the config names (gRPC or HTTP/protobuf), every setting passed explicitly."""
    if config.protocol == "grpc":
        from grpc import Compression as GrpcCompression
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(
            endpoint=config.endpoint,
            insecure=config.endpoint.startswith("http://"),
            headers=dict(config.headers),
            timeout=config.timeout,
            compression=(
                GrpcCompression.Gzip if config.compression == "gzip" else GrpcCompression.NoCompression
            ),
        )
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(
        endpoint=config.endpoint,
        headers=dict(config.headers),
        timeout=config.timeout,
        compression=HttpCompression.Gzip if config.compression == "gzip" else HttpCompression.NoCompression,
    )


def build_provider(
    config: TracingConfig, processor: SpanProcessor | None = None, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider exporting through ``processor`` if given, else a batch processor over ``exporter``
    (default: the OTLP exporter the config names)."""
    provider = TracerProvider(resource=Resource.create(dict(config.resource)), sampler=sampler(config))
    if processor is not None or exporter is not None or config.endpoint:
        provider.add_span_processor(processor or batch_processor(exporter or otlp_exporter(config), config))
    return provider


def shutdown(provider: TracerProvider, wait: float) -> bool:
    """Flush and shut the provider down within ``wait`` seconds; False when it did not finish in time."""

    def run() -> None:
        try:
            provider.force_flush(int(wait * 1000))
            provider.shutdown()
        except Exception:
            log.exception("tracing: flushing spans failed")

    thread = threading.Thread(target=run, name="funcd-tracing-shutdown", daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        log.warning("tracing: spans not flushed within %gs; the collector did not answer", wait)
        return False
    return True


def batch_processor(exporter: SpanExporter, config: TracingConfig) -> BatchSpanProcessor:
    return BatchSpanProcessor(
        exporter,
        max_queue_size=config.max_queue,
        max_export_batch_size=config.max_batch,
        schedule_delay_millis=config.schedule_delay_ms,
        export_timeout_millis=config.timeout * 1000,
    )
