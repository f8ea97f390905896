"""Functions written for OpenFunction's Python framework run unchanged on a real funcd server.

Each is started the way OpenFunction starts it: its context in ``FUNC_CONTEXT`` (in the layout that
framework reads), ``--target`` naming the function, no signature flag. Outputs go to the Dapr API
protocol fake; async deliveries come over gRPC through the official AppCallback stubs.

Two generations of that framework exist:
- the first (2022, ``runtime: Async`` contexts): ``def f(context, data)``, ``context.send(data, output)``;
- the current one (ofn-functions-framework 0.2.0): ``def f(context: UserContext)`` for HTTP and Dapr
  triggers, ``context.send(output_name, data)`` (note the order), JSON for topics.
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.compat_support import (
    FUNCTIONS,
    SUCCESS,
    binding_event,
    dapr_stub,
    topic_event,
    wait_until,
)


def _env(context: dict, dapr_api=None) -> dict[str, str]:
    env = {"FUNC_CONTEXT": json.dumps(context)}
    if dapr_api is not None:
        env.update(dapr_api.env())
    return env


# ---------------------------------------------------------------- HTTP functions taking UserContext


def test_user_context_http_function_as_in_openfunctions_quickstart(funcd, tmp_path):
    """The README's quickstart context: one HTTP trigger, nothing else."""
    context = {"name": "function_name", "version": "v1", "triggers": {"http": {"port": 8080}}}
    server = funcd(
        str(FUNCTIONS / "ofn_http_user_context"), "--target", "hello", env=_env(context), cwd=tmp_path
    )
    r = requests.get(server.url)
    assert (r.status_code, r.text) == (200, "hello world")
    r = requests.get(server.url + "/any/path", params={"name": "ada"})
    assert (r.status_code, r.text) == (200, "hello ada")


def test_user_context_http_function_sends_to_an_output(funcd, tmp_path, dapr_api):
    """``context.send("greetings", data)``: OpenFunction publishes ``json.dumps(data)`` as
    application/json to the output's component and topic."""
    context = {
        "name": "ofn-http",
        "version": "v1",
        "triggers": {"http": {"port": 8080}},
        "outputs": {
            "greetings": {"componentName": "msg", "componentType": "pubsub.redis", "topic": "greetings"}
        },
    }
    server = funcd(
        str(FUNCTIONS / "ofn_http_user_context"),
        "--target",
        "hello",
        "--dapr-address",
        dapr_api.address,
        env=_env(context, dapr_api),
        cwd=tmp_path,
    )
    r = requests.post(server.url + "/orders", params={"name": "bob"})
    assert (r.status_code, r.text) == (200, "hello bob")
    [published] = wait_until(lambda: list(dapr_api.published), "the greeting to reach the sidecar")
    assert (published.pubsub_name, published.topic, published.content_type) == (
        "msg",
        "greetings",
        "application/json",
    )
    assert json.loads(published.data) == {"name": "bob", "via": "/orders"}


# ---------------------------------------------------------------- async (context, data), runtime Async

ASYNC_CONTEXT = {
    "name": "ofn-async",
    "version": "v1",
    "runtime": "Async",
    "port": "50055",
    "inputs": {
        "orders": {"uri": "orders", "componentName": "msg", "componentType": "pubsub.redis"},
        "ticks": {"componentName": "cron", "componentType": "bindings.cron"},
    },
    "outputs": {"processed": {"uri": "processed", "componentName": "msg", "componentType": "pubsub.redis"}},
}


@pytest.fixture
def forward(funcd, tmp_path, dapr_api):
    server = funcd(
        str(FUNCTIONS / "ofn_async_runtime"),
        "--target",
        "forward",
        "--dapr-port",
        "0",
        "--dapr-address",
        dapr_api.address,
        env=_env(ASYNC_CONTEXT, dapr_api),
        cwd=tmp_path,
    )
    channel, stub = dapr_stub(server)
    yield server, stub
    channel.close()


def test_async_function_forwards_a_topic_events_raw_payload(forward, dapr_api):
    """``data`` is the payload's bytes, untouched (the odd spacing would not survive a decode and
    re-encode); ``context.send(data, "processed")`` publishes them to the output's topic."""
    server, stub = forward
    payload = b'{"order":  42, "note": "as sent"}'
    ack = stub.OnTopicEvent(topic_event(payload, event_id="o-42"))
    assert ack.status == SUCCESS, server.output
    [published] = wait_until(lambda: list(dapr_api.published), "the forwarded event to reach the sidecar")
    assert (published.pubsub_name, published.topic, published.data) == ("msg", "processed", payload)


def test_async_function_forwards_a_binding_events_raw_payload(forward, dapr_api):
    """Bytes that are not text survive only if ``data`` is the payload's bytes."""
    server, stub = forward
    payload = b"\x00\xfftick-1"
    stub.OnBindingEvent(binding_event("cron", payload))
    [published] = wait_until(lambda: list(dapr_api.published), "the forwarded tick to reach the sidecar")
    assert (published.pubsub_name, published.topic, published.data) == ("msg", "processed", payload)
    assert "Traceback" not in server.output, server.output


# ---------------------------------------------------------------- Dapr-triggered UserContext functions


def test_user_context_function_on_a_binding_as_in_openfunctions_dapr_example(funcd, tmp_path, dapr_api):
    """OpenFunction 0.2.0's Dapr example: a binding trigger, ``context.get_binding_request().text()``,
    and its context as that example writes it (``triggers.dapr`` plus a top-level ``port``)."""
    context = {
        "name": "ff-python",
        "version": "v1",
        "triggers": {"dapr": [{"name": "cron", "type": "bindings.cron"}]},
        "outputs": {
            "processed": {"componentName": "msg", "componentType": "pubsub.redis", "topic": "processed"}
        },
        "port": 50055,
    }
    server = funcd(
        str(FUNCTIONS / "ofn_async_user_context"),
        "--target",
        "on_tick",
        "--dapr-port",
        "0",
        "--dapr-address",
        dapr_api.address,
        env=_env(context, dapr_api),
        cwd=tmp_path,
    )
    channel, stub = dapr_stub(server)
    try:
        stub.OnBindingEvent(binding_event("cron", b"12:00"))
    finally:
        channel.close()
    [published] = wait_until(lambda: list(dapr_api.published), "the tick to reach the sidecar")
    assert (published.pubsub_name, published.topic, published.content_type) == (
        "msg",
        "processed",
        "application/json",
    )
    assert json.loads(published.data) == {"tick": "12:00"}
