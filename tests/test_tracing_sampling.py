"""The context's ``tracing.samplingRate`` is the tracing plugin's sampler (the function's daprd gets the
same rate from render: tests/test_render_observability.py); ``OTEL_TRACES_SAMPLER*`` still win."""

from __future__ import annotations

from typing import Any

from funcd_tracing import TracingPlugin
from funcd_tracing.config import from_sources
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from functions_framework.invocation import Invocation, Outcome, Status
from functions_framework.model import parse_context
from functions_framework.runtime.http import http_event


def context(rate: float | None) -> dict[str, object]:
    tracing: dict[str, object] = {"enabled": True, "provider": {"name": "opentelemetry"}}
    if rate is not None:
        tracing["samplingRate"] = rate
    return {"name": "f", "tracing": tracing}


def test_a_sampling_rate_below_one_samples_that_share_of_new_traces_and_follows_parents() -> None:
    config = from_sources(parse_context(context(0.25)), {})
    assert (config.sampler, config.sampler_arg) == ("parentbased_traceidratio", 0.25)
    exporter = InMemorySpanExporter()
    plugin = TracingPlugin(
        parse_context(context(0.25)),
        environ={},
        span_processor=SimpleSpanProcessor(exporter),
        install_globals=False,
    )

    def call(traceparent: str = "") -> tuple[bool, str]:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}
        if traceparent:
            environ["HTTP_TRACEPARENT"] = traceparent
        invocation = Invocation(None, http_event(environ, b"", "x"), "x")  # type: ignore[arg-type]
        plugin.pre_hook(invocation)
        span = invocation.state["tracing"].span
        recorded, ids = span.is_recording(), span.get_span_context()
        outcome = Outcome(Status.SUCCESS)
        outcome.reply = 200
        plugin.post_hook(invocation, outcome)
        return recorded, f"{ids.trace_id:032x}-{int(ids.trace_flags.sampled):02x}"

    roots = [call() for _ in range(4000)]
    sampled = sum(recorded for recorded, _ in roots)
    assert 850 <= sampled <= 1150, sampled  # 1000 expected; 5 standard deviations is 137
    assert len(exporter.get_finished_spans()) == sampled
    assert all(ids.endswith("-01") == recorded for recorded, ids in roots)  # the flag daprd gets
    assert len({ids for _, ids in roots}) == 4000  # a new trace each
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    followed = [call(f"00-{trace_id}-00f067aa0ba902b7-01") for _ in range(50)]
    assert followed == [(True, f"{trace_id}-01")] * 50  # a sampled parent is always followed
    dropped = [call(f"00-{trace_id}-00f067aa0ba902b7-00") for _ in range(50)]
    assert dropped == [(False, f"{trace_id}-00")] * 50  # an unsampled one never is, and keeps its trace


def test_every_trace_by_default_and_the_environment_wins() -> None:
    for rate in (None, 1):
        config = from_sources(parse_context(context(rate)), {})
        assert config.sampler == "parentbased_always_on"
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    config = from_sources(parse_context(context(0.25)), env)
    assert (config.sampler, config.sampler_arg) == ("traceidratio", 0.5)
    config = from_sources(parse_context(context(0.25)), {"OTEL_TRACES_SAMPLER": "always_on"})
    assert config.sampler == "always_on"


def test_without_a_collector_nothing_is_recorded_and_the_callers_context_is_passed_on() -> None:
    plugin = TracingPlugin(parse_context(context(None)), environ={}, install_globals=False)
    assert plugin.config.endpoint == "" and not plugin.provider._active_span_processor._span_processors

    def span_of(traceparent: str = "") -> Any:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}
        if traceparent:
            environ["HTTP_TRACEPARENT"] = traceparent
        invocation = Invocation(None, http_event(environ, b"", "x"), "x")  # type: ignore[arg-type]
        plugin.pre_hook(invocation)
        span = invocation.state["tracing"].span
        outcome = Outcome(Status.SUCCESS)
        outcome.reply = 200
        plugin.post_hook(invocation, outcome)
        return span

    inbound = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    span = span_of(inbound)
    ids = span.get_span_context()
    assert not span.is_recording()
    assert (f"{ids.trace_id:032x}", f"{ids.span_id:016x}", ids.trace_flags.sampled) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        True,
    )  # daprd continues the caller's trace, as if this function were not traced
    root = span_of().get_span_context()
    assert root.is_valid and not root.trace_flags.sampled and not span_of().is_recording()
