"""The Function resource: read with its real paths, checked as a whole, turned into a FunctionContext."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from functions_framework.errors import ContextError
from functions_framework.model import (
    Component,
    Exporter,
    FunctionContext,
    StateStore,
    Tracing,
    function_context,
    parse_context_text,
    parse_function,
)
from functions_framework.model.spec import MetadataItem, SecretKeyRef

FIXTURES = Path(__file__).parent / "fixtures"


def problems_of(data: Any) -> list[str]:
    with pytest.raises(ContextError) as info:
        parse_function(data)
    return info.value.problems


RICH = yaml.safe_load(
    """
apiVersion: funcd.dev/v1alpha1
kind: Function
metadata: {name: orders, namespace: shop, labels: {team: a}, generation: 3, uid: u-1}
spec:
  version: v1.2.0
  image: registry.local/orders:v1
  imageCredentials: {name: push-secret}
  build: {builder: funcd/builder, srcRepo: {url: "https://example.com/orders.git"}}
  serving:
    triggers:
      http:
        port: 8081
        engine: keda
        route:
          gatewayRef: {name: gw, namespace: ingress}
          hostnames: [orders.example.com]
          rules: [{matches: [{path: {type: PathPrefix, value: /orders}}]}]
      dapr:
        - {name: msg, topic: orders, inputName: orders, deadLetterTopic: orders-dead,
           metadata: {rawPayload: true}}
        - {name: ticker}
      inputs:
        - dapr: {name: store}
    outputs:
      - dapr: {name: msg, topic: processed, outputName: processed}
      - dapr: {name: sink, operation: create, metadata: {fileName: out.json}}
    bindings:
      ticker: {type: bindings.cron, version: v1, metadata: [{name: schedule, value: "@every 2s"}]}
      sink: {type: bindings.localstorage, version: v1, initTimeout: 5s,
             metadata: [{name: rootPath, envRef: OUT_DIR}]}
    pubsub:
      msg:
        type: pubsub.redis
        version: v1
        ignoreErrors: true
        metadata:
          - {name: redisHost, value: "redis:6379"}
          - {name: redisPassword, secretKeyRef: {name: redis, key: password}}
    states:
      store: {spec: {type: state.redis, version: v1, metadata: [{name: redisHost, value: "redis:6379"}]}}
      cache: {}
    scaleOptions:
      minReplicas: 1
      maxReplicas: 5
      keda:
        scaledObject: {pollingInterval: 15, cooldownPeriod: 60, fallback: {failureThreshold: 3, replicas: 2}}
        triggers:
          - type: redis
            name: backlog
            metadata: {listName: orders, listLength: "5"}
            authenticationRef: {name: redis-auth}
            metricType: AverageValue
    hooks: {pre: [duration], post: [duration], policy: Override}
    tracing:
      enabled: true
      provider: {name: opentelemetry, exporter: {name: otlp, endpoint: "jaeger:4317"}}
      tags: {layer: faas}
    params: {GREETING: hello, RETRIES: 3}
    labels: {tier: backend}
    annotations: {dapr.io/app-protocol: http, dapr.io/log-level: debug}
    template: {containers: [{name: function, resources: {limits: {memory: 256Mi}}}]}
    timeout: 5m
    workloadType: StatefulSet
    dapr: {mode: container}
"""
)


def test_rich_function_reads_whole_spec():
    fn = parse_function(RICH, "orders.yaml")
    assert fn.metadata.name == "orders" and fn.metadata.generation == 3 and fn.metadata.uid == "u-1"
    spec = fn.spec
    assert spec.image == "registry.local/orders:v1" and spec.image_credentials == "push-secret"
    assert spec.build == RICH["spec"]["build"]
    serving = spec.serving
    assert serving is not None
    http = serving.triggers.http
    assert http is not None and http.port == 8081 and http.engine == "keda"
    assert http.route is not None and http.route.gateway_ref is not None
    assert http.route.gateway_ref.namespace == "ingress" and http.route.hostnames == ("orders.example.com",)
    assert serving.triggers.dapr[0].metadata == {"rawPayload": "true"}
    assert serving.pubsub["msg"].ignore_errors is True
    assert serving.pubsub["msg"].metadata[1] == MetadataItem(
        "redisPassword", secret_key_ref=SecretKeyRef("redis", "password")
    )
    assert serving.bindings["sink"].metadata[0].env_ref == "OUT_DIR"
    assert serving.states["cache"].spec is None
    scale = serving.scale_options
    assert scale is not None and scale.keda is not None and scale.keda.scaled_object is not None
    assert scale.keda.scaled_object.fallback == {"failureThreshold": 3, "replicas": 2}
    assert scale.keda.triggers[0].authentication_ref is not None
    assert serving.hooks is not None and serving.hooks.policy == "Override"
    assert serving.params == {"GREETING": "hello", "RETRIES": "3"}
    assert serving.template == {
        "containers": [{"name": "function", "resources": {"limits": {"memory": "256Mi"}}}]
    }
    assert (
        serving.timeout == "5m"
        and serving.workload_type == "StatefulSet"
        and serving.dapr.mode == "container"
    )


def test_function_context_of_rich_function():
    assert function_context(parse_function(RICH)) == FunctionContext(
        name="orders",
        version="v1.2.0",
        http_port=8081,
        app_protocol="http",
        inputs={
            "orders": Component(
                "orders", "msg", "pubsub.redis", topic="orders", metadata={"rawPayload": "true"},
                dead_letter_topic="orders-dead",
            ),
            "ticker": Component("ticker", "ticker", "bindings.cron"),
        },
        outputs={
            "processed": Component("processed", "msg", "pubsub.redis", topic="processed"),
            "sink": Component(
                "sink", "sink", "bindings.localstorage", operation="create", metadata={"fileName": "out.json"}
            ),
        },
        states={
            "store": StateStore("store", "store", "state.redis"),
            "cache": StateStore("cache", "cache", ""),
        },
        pre_hooks=("duration",),
        post_hooks=("duration",),
        tracing=Tracing(
            enabled=True,
            provider="opentelemetry",
            exporter=Exporter(name="otlp", endpoint="jaeger:4317"),
            tags={"layer": "faas"},
        ),
    )  # fmt: skip


def test_openfunction_subscriber_sample_reads_without_problems():
    data = yaml.safe_load((FIXTURES / "openfunction-subscriber.yaml").read_text())
    for api_version in ("funcd.dev/v1alpha1", "core.openfunction.io/v1beta2"):
        fn = parse_function({**data, "apiVersion": api_version})
        serving = fn.spec.serving
        assert serving is not None and serving.scale_options is not None
        keda = serving.scale_options.keda
        assert keda is not None and keda.triggers[0].type == "kafka"
        assert serving.scale_options.min_replicas == 0 and serving.scale_options.max_replicas == 10
        assert fn.spec.workload_runtime == "OCIContainer"
        ctx = function_context(fn)
        assert ctx.http_port is None
        assert ctx.inputs == {
            "kafka-server": Component("kafka-server", "kafka-server", "pubsub.kafka", topic="sample-topic")
        }


def test_a_function_without_triggers_is_an_http_function():
    ctx = function_context(parse_function({"apiVersion": "funcd.dev/v1alpha1", "kind": "Function",
                                           "metadata": {"name": "f"}, "spec": {"serving": {}}}))  # fmt: skip
    assert ctx.http_port == 8080 and not ctx.inputs


def test_http_port_0_stays_0():
    data = copy.deepcopy(RICH)
    data["spec"]["serving"]["triggers"]["http"]["port"] = 0
    assert function_context(parse_function(data)).http_port == 0


def test_unknown_fields_have_a_did_you_mean_at_their_exact_paths():
    data = copy.deepcopy(RICH)
    data["spce"] = data.pop("spec")  # top level
    data["spce"]["serving"]["trigers"] = data["spce"]["serving"].pop("triggers")  # nested
    problems = problems_of(data)
    assert "spce: unknown field; did you mean 'spec'?" in problems
    data = copy.deepcopy(RICH)
    serving = data["spec"]["serving"]
    serving["trigers"] = serving.pop("triggers")
    serving["outputs"][1]["dapr"]["opration"] = "create"  # in a list
    serving["pubsub"]["msg"]["metadata"][0]["vaule"] = "x"  # in a list in a map
    serving["scaleOptions"]["keda"]["scaledobject"] = serving["scaleOptions"]["keda"].pop("scaledObject")
    serving["bogus"] = 1
    problems = problems_of(data)
    assert "spec.serving.trigers: unknown field; did you mean 'triggers'?" in problems
    assert "spec.serving.outputs[1].dapr.opration: unknown field; did you mean 'operation'?" in problems
    assert "spec.serving.pubsub.msg.metadata[0].vaule: unknown field; did you mean 'value'?" in problems
    assert (
        "spec.serving.scaleOptions.keda.scaledobject: unknown field; did you mean 'scaledObject'?" in problems
    )
    assert any(
        p.startswith("spec.serving.bogus: unknown field; expected one of 'annotations',") for p in problems
    )


def test_a_bad_output_type_is_reported_at_its_exact_path():
    data = copy.deepcopy(RICH)
    data["spec"]["serving"]["outputs"][0]["dapr"]["type"] = "foo"
    assert problems_of(data) == [
        "spec.serving.outputs[0].dapr.type: expected 'pubsub.*' or 'bindings.*', got \"foo\""
    ]


def test_every_problem_is_reported_at_once():
    data = copy.deepcopy(RICH)
    data["apiVersion"] = "funcd.dev/v1"
    del data["metadata"]["name"]
    serving = data["spec"]["serving"]
    serving["triggers"]["http"]["port"] = 70000
    serving["triggers"]["dapr"].append({"name": "msg", "topic": "again", "inputName": "orders"})
    serving["triggers"]["dapr"].append({"name": "nowhere"})
    serving["outputs"].append({"dapr": {"name": "sink"}})
    serving["outputs"].append({"dapr": {"name": "msg", "outputName": "raw"}})
    serving["outputs"].append({"dapr": {"name": "ticker", "type": "bindings.http"}})
    serving["outputs"].append({"dapr": {"name": "store", "outputName": "st"}})
    serving["bindings"]["dup"] = serving["pubsub"]["dup"] = {"type": "bindings.http"}
    serving["states"]["broken"] = {"spec": {"type": "redis"}}
    serving["scaleOptions"].update(minReplicas=6, maxReplicas=5)
    serving["scaleOptions"]["keda"]["scaledJob"] = {"restartPolicy": "Sometimes"}
    serving["annotations"]["dapr.io/app-protocol"] = "grpcs"
    serving["timeout"] = "soon"
    serving["dapr"]["mode"] = "sidecar"
    serving["hooks"]["pre"] = ["duration", ""]
    assert problems_of(data) == [
        "apiVersion: expected 'funcd.dev/v1alpha1' or 'core.openfunction.io/v1beta2', got \"funcd.dev/v1\"",
        "metadata.name: expected a non-empty string, got nothing",
        "spec.serving.timeout: expected a duration such as '90s' or '5m', got \"soon\"",
        "spec.serving.triggers.http.port: expected a port number 0-65535, got 70000",
        "spec.serving.pubsub.dup.type: expected 'pubsub.*', got \"bindings.http\"",
        "spec.serving.states.broken.spec.type: expected 'state.*', got \"redis\"",
        "spec.serving.scaleOptions.keda.scaledJob.restartPolicy: "
        "expected 'Always' or 'OnFailure' or 'Never', got \"Sometimes\"",
        'spec.serving.hooks.pre[1]: expected a non-empty string, got ""',
        "spec.serving.dapr.mode: expected 'annotations' or 'container', got \"sidecar\"",
        "spec.serving.pubsub.dup: this name is also used in spec.serving.bindings",
        "spec.serving.annotations[\"dapr.io/app-protocol\"]: expected 'grpc' or 'http', got \"grpcs\"",
        "spec.serving.scaleOptions.minReplicas: expected at most maxReplicas (5), got 6",
        "spec.serving.scaleOptions.keda: expected one of httpScaledObject, scaledObject and scaledJob, "
        "got scaledObject and scaledJob",
        "spec.serving.scaleOptions.keda.scaledJob: expected workloadType 'Job' (a ScaledJob scales Jobs), "
        'got "StatefulSet"',
        "spec.serving.triggers.dapr[2].inputName: expected a unique name, got 'orders' a second time "
        "(set inputName)",
        "spec.serving.triggers.dapr[3].name: expected a component defined in "
        'spec.serving.bindings, pubsub or states, or a type for an existing one, got "nowhere"',
        "spec.serving.outputs[2].dapr.name: expected a unique name, got 'sink' a second time "
        "(set outputName)",
        "spec.serving.outputs[3].dapr.topic: expected a topic name for a pub/sub component, got nothing",
        "spec.serving.outputs[4].dapr.type: expected 'bindings.cron', the type of component 'ticker', "
        'got "bindings.http"',
        "spec.serving.outputs[5].dapr.name: expected a component of type 'pubsub.*' or 'bindings.*', "
        'got "store (state.redis)"',
    ]


def test_function_resource_as_context_text():
    text = yaml.safe_dump(RICH)
    assert parse_context_text(text, "orders.yaml") == function_context(parse_function(RICH))
    with pytest.raises(ContextError) as info:
        parse_context_text(text.replace("kind: Function", "kind: Deployment"), "orders.yaml")
    assert info.value.problems == ["kind: expected 'Function', got \"Deployment\""]
    assert "invalid orders.yaml (1 problem(s))" in str(info.value)


def test_a_typed_reference_may_name_an_existing_component():
    data = copy.deepcopy(RICH)
    data["spec"]["serving"]["outputs"].append({"dapr": {"name": "alerts", "type": "bindings.http"}})
    data["spec"]["serving"]["triggers"]["inputs"].append({"dapr": {"name": "shared", "type": "state.redis"}})
    ctx = function_context(parse_function(data))
    assert ctx.outputs["alerts"] == Component("alerts", "alerts", "bindings.http")
    assert ctx.states["shared"] == StateStore("shared", "shared", "state.redis")


def test_tracing_and_metrics_sections_turn_their_plugins_on_around_the_named_hooks() -> None:
    from functions_framework.model import parse_context

    ctx = parse_context(
        {
            "name": "f",
            "triggers": {"http": {"port": 8080}},
            "preHooks": ["duration"],
            "postHooks": ["duration"],
            "tracing": {"enabled": True},
            "metrics": {"enabled": True, "path": "/m"},
        }
    )
    assert ctx.plugin_pre_hooks == ("tracing", "metrics", "duration")
    assert ctx.plugin_post_hooks == ("duration", "metrics", "tracing")
    assert ctx.metrics is not None and ctx.metrics.path == "/m"
    named = parse_context({"name": "f", "postHooks": ["metrics"], "metrics": {"enabled": True}})
    assert named.plugin_pre_hooks == () and named.plugin_post_hooks == ("metrics",)
    off = parse_context({"name": "f", "tracing": {"enabled": False}, "metrics": {"enabled": False}})
    assert off.plugin_pre_hooks == () == off.plugin_post_hooks


def test_a_metrics_path_must_be_absolute() -> None:
    import pytest

    from functions_framework.errors import ContextError
    from functions_framework.model import parse_context

    with pytest.raises(ContextError, match=r"metrics\.path: expected an absolute URL path"):
        parse_context({"name": "f", "metrics": {"enabled": True, "path": "metrics"}})


def test_tracing_sampling_rate_reads_numbers_and_strings_and_round_trips() -> None:
    import pytest

    from functions_framework.errors import ContextError
    from functions_framework.model import dump_context, parse_context

    for given, expected in ((0.25, 0.25), ("0.5", 0.5), (0, 0.0), (1, 1.0), (None, 1.0)):
        tracing = {"enabled": True} if given is None else {"enabled": True, "samplingRate": given}
        ctx = parse_context({"name": "f", "tracing": tracing})
        assert ctx.tracing is not None and ctx.tracing.sampling_rate == expected, given
        assert parse_context(dump_context(ctx)) == ctx
    for bad in (1.5, -0.1, "most", True):
        with pytest.raises(
            ContextError, match=r"tracing\.samplingRate: expected a sampling rate from 0 to 1"
        ):
            parse_context({"name": "f", "tracing": {"enabled": True, "samplingRate": bad}})
