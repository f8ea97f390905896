from __future__ import annotations

import json

import pytest

from functions_framework.context import (
    Component,
    FunctionContext,
    detect_layout,
    dump_context,
    parse_context,
    parse_context_text,
)
from functions_framework.errors import ContextError

V1BETA1 = {
    "name": "orders",
    "version": "v1.0.0",
    "runtime": "Async",
    "port": "50055",
    "inputs": {
        "cron": {"uri": "cron_input", "componentName": "cron_input", "componentType": "bindings.cron"},
        "orders": {
            "uri": "orders",
            "componentName": "msg",
            "componentType": "pubsub.redis",
            "metadata": {"rawPayload": "true"},
        },
    },
    "outputs": {
        "sink": {
            "uri": "sink",
            "componentName": "sink",
            "componentType": "bindings.localstorage",
            "operation": "create",
            "metadata": {"fileName": "out.json"},
        },
        "next": {"uri": "next-topic", "componentName": "msg", "componentType": "pubsub.redis"},
    },
    "states": {"counts": {"componentName": "statestore", "componentType": "state.redis"}},
    "prePlugins": ["duration", "plgB"],
    "postPlugins": ["plgB", "duration"],
    "pluginsTracing": {
        "enabled": True,
        "provider": {"name": "skywalking", "oapServer": "oap:11800"},
        "tags": {"layer": "faas"},
        "baggage": {"key": "sw8-correlation", "value": "base64"},
    },
}

V1BETA2 = {
    "name": "orders",
    "version": "v2.0.0",
    "triggers": {
        "http": {"port": 8081},
        "dapr": [
            {"name": "msg", "type": "pubsub.redis", "topic": "orders", "deadLetterTopic": "orders-dead"},
            {"name": "cron_input", "type": "bindings.cron", "inputName": "cron"},
        ],
    },
    "outputs": {
        "sink": {
            "componentName": "sink",
            "componentType": "bindings.localstorage",
            "operation": "create",
            "metadata": {"fileName": "out.json"},
        },
        "next": {"componentName": "msg", "componentType": "pubsub.redis", "topic": "next-topic"},
    },
    "states": {"counts": {"componentName": "statestore", "componentType": "state.redis"}},
    "preHooks": ["duration"],
    "postHooks": ["duration"],
    "tracing": {
        "enabled": True,
        "provider": {
            "name": "opentelemetry",
            "exporter": {"name": "otlp", "endpoint": "localhost:4317", "protocol": "grpc"},
        },
        "tags": {"team": "a"},
        "baggage": {},
    },
}


def test_v1beta1_layout():
    ctx = parse_context(V1BETA1)
    assert detect_layout(V1BETA1) == "v1beta1"
    assert ctx.name == "orders" and ctx.version == "v1.0.0"
    assert ctx.http_port is None and ctx.dapr_port == 50055
    assert ctx.inputs["orders"] == Component(
        "orders", "msg", "pubsub.redis", topic="orders", metadata={"rawPayload": "true"}
    )
    assert ctx.inputs["cron"].kind == "bindings" and ctx.inputs["cron"].topic == ""
    assert ctx.outputs["sink"].operation == "create"
    assert ctx.outputs["next"].topic == "next-topic"
    assert ctx.states["counts"].component_name == "statestore"
    assert ctx.pre_hooks == ("duration", "plgB") and ctx.post_hooks == ("plgB", "duration")
    assert ctx.tracing is not None and ctx.tracing.provider == "skywalking"
    assert ctx.tracing.oap_server == "oap:11800" and ctx.tracing.tags == {"layer": "faas"}


def test_v1beta1_knative_runtime_is_http():
    ctx = parse_context({"name": "f", "version": "v1", "runtime": "Knative", "port": "8089"})
    assert ctx.http_port == 8089 and not ctx.inputs


def test_v1beta2_layout():
    ctx = parse_context(V1BETA2)
    assert detect_layout(V1BETA2) == "v1beta2"
    assert ctx.http_port == 8081
    assert set(ctx.inputs) == {"msg", "cron"}
    assert ctx.inputs["msg"].dead_letter_topic == "orders-dead"
    assert ctx.inputs["cron"].component_name == "cron_input"
    assert ctx.outputs["sink"].metadata == {"fileName": "out.json"}
    assert ctx.tracing is not None and ctx.tracing.exporter is not None
    assert ctx.tracing.exporter.endpoint == "localhost:4317"


def test_empty_context_is_an_http_function():
    ctx = parse_context({})
    assert ctx == FunctionContext() and ctx.http_port == 8080


def test_async_only_v1beta2_has_no_http():
    ctx = parse_context(
        {"name": "f", "triggers": {"dapr": [{"name": "p", "type": "pubsub.redis", "topic": "t"}]}}
    )
    assert ctx.http_port is None and ctx.uses_dapr


@pytest.mark.parametrize("data", [V1BETA1, V1BETA2])
def test_dump_round_trip(data):
    ctx = parse_context(data)
    dumped = dump_context(ctx)
    assert detect_layout(dumped) == "v1beta2"
    assert parse_context(json.loads(json.dumps(dumped))) == ctx


def test_dump_is_pinned():
    assert dump_context(parse_context(V1BETA2)) == {
        "name": "orders",
        "version": "v2.0.0",
        "triggers": {"http": {"port": 8081}},
        "inputs": {
            "msg": {
                "componentName": "msg",
                "componentType": "pubsub.redis",
                "topic": "orders",
                "deadLetterTopic": "orders-dead",
            },
            "cron": {"componentName": "cron_input", "componentType": "bindings.cron"},
        },
        "outputs": {
            "sink": {
                "componentName": "sink",
                "componentType": "bindings.localstorage",
                "operation": "create",
                "metadata": {"fileName": "out.json"},
            },
            "next": {"componentName": "msg", "componentType": "pubsub.redis", "topic": "next-topic"},
        },
        "states": {"counts": {"componentName": "statestore", "componentType": "state.redis"}},
        "preHooks": ["duration"],
        "postHooks": ["duration"],
        "tracing": {
            "enabled": True,
            "provider": {
                "name": "opentelemetry",
                "exporter": {"name": "otlp", "endpoint": "localhost:4317", "protocol": "grpc"},
            },
            "tags": {"team": "a"},
            "baggage": {},
        },
    }


def test_every_problem_is_listed_with_its_path():
    bad = {
        "name": "f",
        "runtime": "Lambda",
        "port": "eighty",
        "inputs": {
            "orders": {"uri": "o", "componentName": "k", "componentType": "kafka"},
            "empty": {"uri": "x", "componentType": "pubsub.redis"},
        },
        "prePlugins": ["ok", 3],
    }
    with pytest.raises(ContextError) as info:
        parse_context(bad)
    problems = info.value.problems
    assert "runtime: expected 'Knative' or 'Async', got \"Lambda\"" in problems
    assert 'port: expected a port number 0-65535, got "eighty"' in problems
    assert "inputs.orders.componentType: expected 'bindings.*' or 'pubsub.*', got \"kafka\"" in problems
    assert "inputs.empty.componentName: expected a non-empty string, got nothing" in problems
    assert "prePlugins[1]: expected a non-empty string, got 3" in problems
    assert len(problems) == 5
    assert "5 problem(s)" in str(info.value)


def test_pubsub_without_topic_is_an_error():
    with pytest.raises(ContextError) as info:
        parse_context({"triggers": {"dapr": [{"name": "msg", "type": "pubsub.redis"}]}})
    assert info.value.problems == [
        "triggers.dapr[0].topic: expected a topic name for a pub/sub component, got nothing"
    ]


def test_yaml_text_and_syntax_errors():
    ctx = parse_context_text("name: y\ntriggers:\n  http:\n    port: 9000\n")
    assert ctx.name == "y" and ctx.http_port == 9000
    with pytest.raises(ContextError, match="syntax error"):
        parse_context_text("name: [unclosed", "function.yaml")
    with pytest.raises(ContextError, match=r"\(top level\): expected an object, got \[1, 2\]"):
        parse_context_text("[1, 2]")


FUNCTION_CR = """
apiVersion: funcd.dev/v1alpha1
kind: Function
metadata:
  name: consumer
spec:
  version: v1.2.0
  serving:
    triggers:
      dapr:
        - name: kafka-server
          topic: sample-topic
    outputs:
      - dapr:
          name: sink
          operation: create
          metadata: {path: out}
    bindings:
      sink:
        type: bindings.localstorage
        version: v1
    pubsub:
      kafka-server:
        type: pubsub.kafka
        version: v1
    states:
      store:
        spec: {type: state.redis, version: v1}
    hooks:
      pre: [duration]
      post: [duration]
"""


def test_function_resource_spec_serving():
    ctx = parse_context_text(FUNCTION_CR, "function.yaml")
    assert ctx.name == "consumer" and ctx.version == "v1.2.0"
    assert ctx.http_port is None
    assert ctx.inputs["kafka-server"].component_type == "pubsub.kafka"
    assert ctx.inputs["kafka-server"].topic == "sample-topic"
    assert ctx.outputs["sink"].component_type == "bindings.localstorage"
    assert ctx.outputs["sink"].metadata == {"path": "out"}
    assert ctx.states["store"].component_type == "state.redis"
    assert ctx.pre_hooks == ("duration",)


def test_function_resource_errors_carry_spec_paths():
    text = FUNCTION_CR.replace("type: pubsub.kafka", "type: kafka")
    with pytest.raises(ContextError) as info:
        parse_context_text(text)
    assert any(p.startswith("spec.serving.triggers.dapr[0].type: expected") for p in info.value.problems)
