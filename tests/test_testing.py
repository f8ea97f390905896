"""functions_framework.testing: call a handler with no server."""

from __future__ import annotations

import pytest

import functions_framework as ff
from functions_framework import testing
from functions_framework.event import Trigger
from functions_framework.model import parse_context
from tests.support import SAMPLES


def test_call_a_sample_folder():
    result = testing.call(SAMPLES / "hello-http", data={"name": "Ada"})
    assert result.status == 200
    assert result.json == {"message": "Hello, Ada!"}
    assert result.value == {"message": "Hello, Ada!"}


def test_init_context_runs_first():
    result = testing.call(SAMPLES / "json-echo", data={"a": 1}, query_string="status=201")
    assert result.status == 201
    assert result.headers["x-served-by-worker"] == "1"


def test_google_style_handler():
    result = testing.call(SAMPLES / "gcf-http", target="hello", data={"name": "Bob"})
    assert (result.status, result.text) == (200, "Hello Bob!")


def test_outputs_and_state_are_recorded():
    ctx = parse_context(
        {
            "name": "t",
            "outputs": {
                "sink": {
                    "componentName": "s",
                    "componentType": "bindings.localstorage",
                    "operation": "create",
                }
            },
            "states": {"counts": {"componentName": "statestore", "componentType": "state.redis"}},
        }
    )

    def handler(context, event):
        store = context.state("counts")
        store.save("n", store.get("n", 0) + 1)
        context.send({"seen": event.data}, output="sink", metadata={"fileName": "x"})
        return store.get("n")

    result = testing.call(handler, data=[1], context=ctx)
    assert result.value == 1
    assert result.sent == [("sink", {"seen": [1]}, {"fileName": "x"})]
    with pytest.raises(ff.OutputError, match="expected one of sink"):
        result.context.send("x", output="nope")


def test_failures_map_to_statuses():
    def retry(context, event):
        raise ff.Retry()

    def bad_json(context, event):
        return event.data

    assert testing.call(retry).outcome.status is ff.Status.RETRY
    result = testing.call(bad_json, body=b"{", content_type="application/json")
    assert result.status == 400 and result.outcome.status is ff.Status.INVALID


def test_async_handler_and_pubsub_event():
    async def handler(context, event):
        return {"topic": event.topic, "kind": event.trigger.kind}

    ev = testing.make_event({"x": 1}, trigger=Trigger("pubsub", "orders"), topic="orders")
    assert testing.call(handler, ev).value == {"topic": "orders", "kind": "pubsub"}
