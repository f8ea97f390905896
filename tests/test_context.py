from __future__ import annotations

import json

import pytest

from functions_framework.errors import ContextError
from functions_framework.model import (
    Component,
    Exporter,
    FunctionContext,
    StateStore,
    Tracing,
    detect_layout,
    dump_context,
    parse_context,
    parse_context_text,
)

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
    assert "inputs.orders.componentType: expected 'pubsub.*' or 'bindings.*', got \"kafka\"" in problems
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
    assert info.value.problems == [
        "spec.serving.pubsub.kafka-server.type: expected 'pubsub.*', got \"kafka\""
    ]


# ---------------------------------------------------------------- the round trip the controller relies on

RICH_CONTEXT = FunctionContext(
    name="orders",
    version="v3",
    http_port=0,
    dapr_port=0,
    app_protocol="http",
    inputs={
        "orders": Component(
            "orders", "msg", "pubsub.redis", topic="orders", metadata={"rawPayload": "true"},
            dead_letter_topic="orders-dead",
        ),
        "tick": Component("tick", "cron", "bindings.cron"),
    },
    outputs={
        "sink": Component("sink", "store", "bindings.localstorage", operation="create", metadata={"a": "1"}),
        "next": Component("next", "msg", "pubsub.redis", topic="next"),
    },
    states={"totals": StateStore("totals", "redis-state", "state.redis")},
    pre_hooks=("duration", "tracing"),
    post_hooks=("tracing", "duration"),
    tracing=Tracing(
        enabled=True,
        provider="skywalking",
        oap_server="oap:11800",
        exporter=Exporter("otlp", "collector:4317", "http/protobuf", "k=v", "gzip", "10s"),
        tags={"layer": "faas"},
        baggage={"key": "sw8-correlation"},
    ),
)  # fmt: skip


@pytest.mark.parametrize(
    "ctx",
    [
        RICH_CONTEXT,
        FunctionContext(),
        FunctionContext(http_port=None, inputs={"t": Component("t", "c", "bindings.cron")}),
        FunctionContext(http_port=None),
        FunctionContext(tracing=Tracing()),
    ],
)
def test_parse_of_dump_is_the_context(ctx):
    assert parse_context(json.loads(json.dumps(dump_context(ctx)))) == ctx


def test_dump_of_parse_is_the_data():
    data = json.loads(json.dumps(dump_context(RICH_CONTEXT)))
    assert dump_context(parse_context(data)) == data


# ---------------------------------------------------------------- ports


def test_context_port_0_stays_0():
    assert parse_context({"triggers": {"http": {"port": 0}}, "daprPort": 0}).dapr_port == 0
    assert parse_context({"triggers": {"http": {"port": 0}}}).http_port == 0
    assert parse_context({"runtime": "Knative", "port": "0"}).http_port == 0
    assert parse_context({"runtime": "Async", "port": "0"}).dapr_port == 0
    assert parse_context({"daprPort": 50052}).dapr_port == 50052
    assert parse_context({}).dapr_port == 50051


# ---------------------------------------------------------------- unknown keys


def test_unknown_context_keys_have_a_did_you_mean():
    bad = {
        "trigers": {},
        "triggers": {"dapr": [{"name": "m", "type": "pubsub.redis", "topc": "t"}]},
        "outputs": {"sink": {"componentNmae": "s", "componentType": "bindings.http"}},
        "tracing": {"enable": True},
        "whatever": 1,
    }
    with pytest.raises(ContextError) as info:
        parse_context(bad)
    problems = info.value.problems
    assert "trigers: unknown field; did you mean 'triggers'?" in problems
    assert "triggers.dapr[0].topc: unknown field; did you mean 'topic'?" in problems
    assert "outputs.sink.componentNmae: unknown field; did you mean 'componentName'?" in problems
    assert "tracing.enable: unknown field; did you mean 'enabled'?" in problems
    assert any(
        p.startswith("whatever: unknown field; expected one of 'accessLog', 'appProtocol',") for p in problems
    )
    v1beta1 = {"runtime": "Async", "port": "8080", "prePlugin": ["x"]}
    with pytest.raises(ContextError) as info:
        parse_context(v1beta1)
    assert info.value.problems == ["prePlugin: unknown field; did you mean 'prePlugins'?"]


# ---------------------------------------------------------------- what OpenFunction's controller writes

# FUNC_CONTEXT and FUNC_CONTEXT_V1BETA2 as OpenFunction's controller serializes them (its
# functionContextV1beta1/V1beta2 structs; real component names carry the serving's prefix and a suffix).
OF_ASYNC_V1BETA1 = json.dumps(
    {
        "name": "autoscaling-subscriber",
        "version": "v2.0.0",
        "inputs": {
            "producer": {
                "uri": "sample-topic",
                "componentName": "serving-8x7lm-pubsub-kafka-server-q2wz5",
                "componentType": "pubsub.kafka",
            }
        },
        "runtime": "Async",
        "port": "8080",
        "prePlugins": ["plugin-example"],
        "postPlugins": ["plugin-example"],
        "pluginsTracing": {
            "enabled": True,
            "provider": {"name": "skywalking", "oapServer": "skywalking-oap.default:11800"},
            "tags": {"func": "sub", "layer": "faas"},
            "baggage": None,
        },
    }
)
OF_ASYNC_V1BETA2 = json.dumps(
    {
        "name": "autoscaling-subscriber",
        "version": "v2.0.0",
        "triggers": {
            "dapr": [
                {
                    "name": "serving-8x7lm-pubsub-kafka-server-q2wz5",
                    "type": "pubsub.kafka",
                    "topic": "sample-topic",
                    "inputName": "producer",
                }
            ],
            "inputs": [{"dapr": {"name": "cache", "type": "state.redis"}}],
        },
        "inputs": {
            "cache": {"componentName": "serving-8x7lm-state-cache-k4d9x", "componentType": "state.redis"}
        },
        "states": {
            "cache": {"componentName": "serving-8x7lm-state-cache-k4d9x", "componentType": "state.redis"}
        },
        "preHooks": ["plugin-example"],
        "postHooks": ["plugin-example"],
        "tracing": {"enabled": True, "provider": None},
    }
)
OF_HTTP_V1BETA1 = json.dumps(
    {
        "name": "function-front",
        "version": "v1.0.0",
        "outputs": {
            "kafka-server": {
                "uri": "kafka-server",
                "componentName": "serving-t6f2b-bindings-kafka-server-n8c4j",
                "componentType": "bindings.kafka",
                "operation": "create",
            }
        },
        "runtime": "Knative",
        "port": "8080",
    }
)
OF_HTTP_V1BETA2 = json.dumps(
    {
        "name": "function-front",
        "version": "v1.0.0",
        "triggers": {
            "http": {
                "port": 8080,
                "route": {
                    "gatewayRef": {"name": "openfunction", "namespace": "openfunction"},
                    "hostnames": ["front.example.com"],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/front"}}]}],
                },
                "engine": "knative",
            }
        },
        "outputs": {
            "kafka-server": {
                "componentName": "serving-t6f2b-bindings-kafka-server-n8c4j",
                "componentType": "bindings.kafka",
                "operation": "create",
            }
        },
        "preHooks": ["plugin-custom", "plugin-example"],
        "postHooks": ["plugin-example", "plugin-custom"],
        "tracing": {
            "enabled": True,
            "provider": {
                "name": "opentelemetry",
                "exporter": {"name": "otlp", "endpoint": "otel:4317", "protocol": "grpc"},
            },
            "tags": {"func": "function-front"},
            "baggage": {"key": "opentelemetry", "value": "v1"},
        },
    }
)


def test_openfunction_async_contexts_read_without_problems():
    old, new = parse_context_text(OF_ASYNC_V1BETA1), parse_context_text(OF_ASYNC_V1BETA2)
    for ctx in (old, new):
        assert ctx.name == "autoscaling-subscriber" and ctx.http_port is None
        assert ctx.inputs == {
            "producer": Component(
                "producer", "serving-8x7lm-pubsub-kafka-server-q2wz5", "pubsub.kafka", topic="sample-topic"
            )
        }
        assert ctx.pre_hooks == ("plugin-example",) and ctx.tracing is not None and ctx.tracing.enabled
    assert old.dapr_port == 8080 and old.tracing is not None and old.tracing.provider == "skywalking"
    # The state input is written twice (triggers.inputs and inputs) and once more in states: one store.
    assert new.states == {"cache": StateStore("cache", "serving-8x7lm-state-cache-k4d9x", "state.redis")}


def test_openfunction_http_contexts_read_without_problems():
    old, new = parse_context_text(OF_HTTP_V1BETA1), parse_context_text(OF_HTTP_V1BETA2)
    for ctx in (old, new):
        assert ctx.http_port == 8080 and not ctx.inputs
        assert ctx.outputs["kafka-server"] == Component(
            "kafka-server", "serving-t6f2b-bindings-kafka-server-n8c4j", "bindings.kafka", operation="create"
        )
    assert new.tracing is not None and new.tracing.exporter == Exporter("otlp", "otel:4317", "grpc")


def test_keys_openfunction_declares_and_funcd_ignores_are_accepted():
    ctx = parse_context({"runtime": "Knative", "port": "8080", "state": None, "httpPattern": "/hello"})
    assert ctx.http_port == 8080
