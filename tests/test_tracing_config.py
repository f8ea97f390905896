"""The tracing plugin's settings: context, OTEL_* overrides, resource attributes, and start-up errors."""

from __future__ import annotations

import os
import socket

import pytest
from funcd_tracing.config import from_sources

from functions_framework.errors import PluginLoadError
from functions_framework.model import parse_context_text
from tests.support import run_cli, write_function

CONTEXT = """
name: orders
version: "1.2"
tracing:
  enabled: true
  provider:
    name: opentelemetry
    exporter:
      endpoint: "jaeger.obs:4317"
      protocol: grpc
      headers: "authorization=Bearer abc,x-tenant=acme"
      compression: gzip
      timeout: 2s
  tags: {team: payments}
  baggage: {tenant: acme}
"""


def ctx(text: str = CONTEXT):
    return parse_context_text(text, "test")


def test_settings_from_the_context():
    c = from_sources(ctx(), {"POD_NAME": "orders-7d9-abc", "POD_NAMESPACE": "shop"})
    assert c.enabled and c.provider == "opentelemetry"
    assert (c.endpoint, c.protocol, c.compression, c.timeout) == (
        "http://jaeger.obs:4317",
        "grpc",
        "gzip",
        2.0,
    )
    assert c.headers == {"authorization": "Bearer abc", "x-tenant": "acme"}
    assert c.tags == {"team": "payments"} and c.baggage == {"tenant": "acme"}
    assert c.resource == {
        "service.name": "orders",
        "service.version": "1.2",
        "faas.name": "orders",
        "faas.version": "1.2",
        "faas.instance": "orders-7d9-abc",
        "service.instance.id": f"orders-7d9-abc-{os.getpid()}",
        "k8s.pod.name": "orders-7d9-abc",
        "k8s.namespace.name": "shop",
    }


def test_without_a_pod_the_instance_is_host_and_pid():
    c = from_sources(ctx("name: f\n"), {})
    assert c.resource["faas.instance"] == f"{socket.gethostname()}-{os.getpid()}"
    assert (c.endpoint, c.protocol, c.timeout) == ("", "grpc", 5.0)  # no collector named: none


def test_otel_environment_overrides_the_context():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%20ecret",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "750",
        "OTEL_SERVICE_NAME": "orders-svc",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.version=9",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    c = from_sources(ctx(), env)
    assert (c.endpoint, c.protocol, c.compression, c.timeout) == (
        "https://collector:4318/v1/traces",
        "http/protobuf",
        "",
        0.75,
    )
    assert c.headers == {"api-key": "s ecret"}
    assert c.resource["service.name"] == "orders-svc" and c.resource["faas.name"] == "orders"
    assert c.resource["deployment.environment"] == "prod" and c.resource["service.version"] == "9"
    assert (c.sampler, c.sampler_arg) == ("parentbased_traceidratio", 0.25)
    traces = from_sources(ctx(), {**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/custom"})
    assert traces.endpoint == "http://t:1/custom"
    assert not from_sources(ctx(), {"OTEL_SDK_DISABLED": "true"}).enabled


def test_skywalking_oap_address():
    sw = "name: f\ntracing: {enabled: true, provider: {name: skywalking, oapServer: 'oap:11800'}}\n"
    assert from_sources(ctx(sw), {}).endpoint == "http://oap:11800"
    bare = "name: f\ntracing: {enabled: true, provider: {name: skywalking}}\n"
    c = from_sources(ctx(bare), {"SW_AGENT_COLLECTOR_BACKEND_SERVICES": "oap.sw", "SW_AGENT_NAME": "billing"})
    assert c.endpoint == "http://oap.sw:11800" and c.service_name == "billing"
    assert c.resource["service.instance.id"].endswith(f"-{os.getpid()}")
    with pytest.raises(PluginLoadError, match=r"tracing.provider.oapServer: expected .* found nothing"):
        from_sources(ctx(bare), {})


@pytest.mark.parametrize(
    ("replace", "env", "message"),
    [
        (
            ("protocol: grpc", "protocol: thrift"),
            {},
            "tracing.provider.exporter.protocol: expected one of grpc, http/protobuf, found 'thrift'",
        ),
        (
            ("timeout: 2s", "timeout: soon"),
            {},
            "tracing.provider.exporter.timeout: expected a duration such as '10s' or '500ms', found 'soon'",
        ),
        (
            ("x-tenant=acme", "x-tenant"),
            {},
            "tracing.provider.exporter.headers: expected 'key=value' pairs separated by ',', "
            "found 'x-tenant'",
        ),
        (
            ("compression: gzip", "compression: zstd"),
            {},
            "tracing.provider.exporter.compression: expected 'gzip' or 'none', found 'zstd'",
        ),
        (
            None,
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: expected one of grpc, http/protobuf, found 'http/json'",
        ),
        (
            None,
            {"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"},
            "OTEL_EXPORTER_OTLP_TIMEOUT: expected milliseconds (e.g. 10000), found '10s'",
        ),
        (
            None,
            {"OTEL_EXPORTER_OTLP_HEADERS": "=x"},
            "OTEL_EXPORTER_OTLP_HEADERS: expected 'key=value' pairs",
        ),
        (None, {"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER: expected one of always_on"),
        (
            None,
            {"OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG: expected a ratio from 0 to 1, found '2'",
        ),
    ],
)
def test_bad_settings_name_the_key_expected_and_found(replace, env, message):
    text = CONTEXT.replace(*replace) if replace else CONTEXT
    with pytest.raises(PluginLoadError) as info:
        from_sources(ctx(text), env)
    assert message in str(info.value)


def test_bad_settings_fail_the_server_at_start_up(tmp_path):
    folder = write_function(tmp_path / "f", "def handler(context, event):\n    return 'ok'\n", CONTEXT)
    result = run_cli("run", str(folder), "--port", "0", env={"OTEL_EXPORTER_OTLP_PROTOCOL": "udp"})
    assert result.returncode == 1
    assert "plugin 'tracing': tracing: OTEL_EXPORTER_OTLP_PROTOCOL" in result.stderr
    assert "OTEL_EXPORTER_OTLP_PROTOCOL: expected one of grpc, http/protobuf, found 'udp'" in result.stderr
    assert "Traceback" not in result.stderr


def test_batch_processor_settings_come_from_otel_bsp_variables():
    default = from_sources(ctx(), {})
    assert (default.schedule_delay_ms, default.max_queue, default.max_batch) == (1000, 2048, 512)
    env = {
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BSP_MAX_QUEUE_SIZE": "64",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512",
    }
    config = from_sources(ctx(), env)
    assert (config.schedule_delay_ms, config.max_queue, config.max_batch) == (100, 64, 64)
    with pytest.raises(
        PluginLoadError, match=r"OTEL_BSP_SCHEDULE_DELAY: expected a whole number above 0, found '1s'"
    ):
        from_sources(ctx(), {"OTEL_BSP_SCHEDULE_DELAY": "1s"})
