"""The context's ``tracing.samplingRate`` is the tracing plugin's sampler (the function's daprd gets the
same rate from render: tests/test_render_observability.py); ``OTEL_TRACES_SAMPLER*`` still win."""

from __future__ import annotations

from funcd_tracing.config import from_sources
from funcd_tracing.export import sampler

from functions_framework.model import parse_context


def context(rate: float | None) -> dict[str, object]:
    tracing: dict[str, object] = {"enabled": True, "provider": {"name": "opentelemetry"}}
    if rate is not None:
        tracing["samplingRate"] = rate
    return {"name": "f", "tracing": tracing}


def test_a_sampling_rate_below_one_samples_that_share_of_new_traces_and_follows_parents() -> None:
    config = from_sources(parse_context(context(0.25)), {})
    assert (config.sampler, config.sampler_arg) == ("parentbased_traceidratio", 0.25)
    description = sampler(config).get_description()
    assert description.startswith("ParentBased{root:TraceIdRatioBased{0.25}"), description


def test_every_trace_by_default_and_the_environment_wins() -> None:
    for rate in (None, 1):
        config = from_sources(parse_context(context(rate)), {})
        assert config.sampler == "parentbased_always_on"
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    config = from_sources(parse_context(context(0.25)), env)
    assert (config.sampler, config.sampler_arg) == ("traceidratio", 0.5)
    config = from_sources(parse_context(context(0.25)), {"OTEL_TRACES_SAMPLER": "always_on"})
    assert config.sampler == "always_on"
