"""Bulk subscribe and ``@batch`` handlers, fast tier: the model's bulk settings, the batch result
shapes (through ``functions_framework.testing``), and both Dapr app protocols driven with the
official AppCallback stubs and plain HTTP against a running ``funcd run``."""

from __future__ import annotations

import base64
import json
import threading
import time

import grpc
import pytest
import requests
from dapr.proto import appcallback_service_v1, appcallback_v1
from google.protobuf import empty_pb2

import functions_framework as ff
from functions_framework import testing
from functions_framework.errors import ContextError, SignatureError
from functions_framework.event import Trigger
from functions_framework.loader import load_function
from functions_framework.model import parse_context_text, parse_function
from functions_framework.model.bulk import BulkSubscribe, bulk_subscribe
from tests.support import write_function
from tests.test_dapr_runtime import dapr_port

SUCCESS = appcallback_v1.TopicEventResponse.SUCCESS
RETRY = appcallback_v1.TopicEventResponse.RETRY
DROP = appcallback_v1.TopicEventResponse.DROP

BATCH = """
import functions_framework as ff

CALLS = []

@ff.batch
def handler(context, events):
    CALLS.append(len(events))
    actions = {e.id: (e.data or {}).get("action") for e in events}
    if "raise" in actions.values():
        raise ff.Drop("the whole batch")
    if "shape" in actions.values():
        return [None]  # one outcome for a bigger batch: funcd refuses it
    out = {}
    for event_id, action in actions.items():
        if action == "retry":
            out[event_id] = ff.Retry
        elif action == "drop":
            out[event_id] = "DROP"
        elif action == "boom":
            out[event_id] = RuntimeError("this one failed")
        elif action == "send":
            context.send({"batch": len(events)}, output="next")
    return out
"""

CONTEXT = """
name: bulk-test
triggers:
  dapr:
    - name: msg
      type: pubsub.redis
      topic: orders
      metadata:
        bulkSubscribe: "true"
        maxBulkSubCount: "50"
        maxBulkSubAwaitDurationMs: "200"
        rawPayload: "false"
    - {name: single, type: pubsub.redis, topic: singles}
outputs:
  next: {componentName: msg, componentType: pubsub.redis, topic: processed}
"""

PUBSUB = Trigger("pubsub", "msg")
CE = "application/cloudevents+json"


def event(data, event_id):
    return testing.make_event(data, trigger=PUBSUB, id=event_id, topic="orders", pubsub_name="msg")


# --- the model -------------------------------------------------------------------------------------


def test_bulk_settings_are_read_with_dapr_defaults():
    assert bulk_subscribe({}) is None
    assert bulk_subscribe({"bulkSubscribe": "false", "maxBulkSubCount": "5"}) is None
    assert bulk_subscribe({"bulkSubscribe": "true"}) == BulkSubscribe(100, 1000)
    assert bulk_subscribe({"bulkSubscribe": "True", "maxBulkSubCount": "7"}) == BulkSubscribe(7, 1000)
    ctx = parse_context_text(CONTEXT, "function.yaml")
    assert bulk_subscribe(ctx.inputs["msg"].metadata) == BulkSubscribe(50, 200)
    assert bulk_subscribe(ctx.inputs["single"].metadata) is None


def test_bad_bulk_settings_are_reported_with_key_expected_found_and_where():
    text = """
name: bad
triggers:
  dapr:
    - {name: msg, type: pubsub.redis, topic: t, metadata: {bulkSubscribe: "yes", maxBulkSubCount: "0"}}
    - {name: cron, type: bindings.cron, metadata: {bulkSubscribe: "true"}}
    - name: m2
      type: pubsub.redis
      topic: u
      metadata: {bulkSubscribe: true, maxBulkSubAwaitDurationMs: 1.5}
"""
    with pytest.raises(ContextError) as info:
        parse_context_text(text, "function.yaml")
    assert info.value.problems == [
        'triggers.dapr[0].metadata.bulkSubscribe: expected "true" or "false", got "yes"',
        "triggers.dapr[0].metadata.maxBulkSubCount: expected a whole number 1-2147483647 (as a string), "
        'got "0"',
        "triggers.dapr[1].metadata.bulkSubscribe: expected bulk subscribe settings on a pub/sub input "
        "only, got them on a bindings.cron input",
        "triggers.dapr[2].metadata.maxBulkSubAwaitDurationMs: expected a whole number 1-2147483647 "
        '(as a string), got "1.5"',
    ]


def test_the_function_resource_reports_bulk_problems_at_their_real_path():
    resource = {
        "apiVersion": "core.funcd.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "f"},
        "spec": {
            "image": "example/f:1",
            "serving": {
                "triggers": {
                    "dapr": [
                        {
                            "name": "q",
                            "type": "pubsub.redis",
                            "topic": "t",
                            "metadata": {"maxBulkSubCount": "x"},
                        }
                    ]
                }
            },
        },
    }
    with pytest.raises(ContextError) as info:
        parse_function(resource)
    assert any(
        p.startswith("spec.serving.triggers.dapr[0].metadata.maxBulkSubCount: expected a whole number")
        for p in info.value.problems
    ), info.value.problems


# --- batch results, through functions_framework.testing --------------------------------------------


def outcomes_of(handler, events):
    return testing.call_bulk(handler, events).acks


def test_a_batch_handler_gets_the_whole_bulk_in_one_call():
    calls = []

    @ff.batch
    def handler(context, events):
        calls.append([e.id for e in events])

    result = testing.call_bulk(handler, [event({"n": i}, f"e{i}") for i in range(3)])
    assert calls == [["e0", "e1", "e2"]]
    assert result.acks == ["SUCCESS"] * 3
    (outcome,) = result.outcomes
    assert [e.reply for e in outcome.entries] == ["SUCCESS"] * 3
    # A single delivery arrives as a list of one.
    single = testing.call(handler, event({"n": 9}, "x"))
    assert calls[-1] == ["x"] and single.ack == "SUCCESS"


@pytest.mark.parametrize(
    ("result", "acks"),
    [
        (None, ["SUCCESS", "SUCCESS", "SUCCESS"]),
        ([None, ff.Retry(), ff.Drop()], ["SUCCESS", "RETRY", "DROP"]),
        (("SUCCESS", "RETRY", "DROP"), ["SUCCESS", "RETRY", "DROP"]),
        ([ff.Drop, ff.Retry, ValueError("bad")], ["DROP", "RETRY", "RETRY"]),
        ({"e1": "DROP"}, ["SUCCESS", "DROP", "SUCCESS"]),
        ({"e0": ff.Retry("later"), "e2": None}, ["RETRY", "SUCCESS", "SUCCESS"]),
    ],
)
def test_batch_result_shapes(result, acks):
    @ff.batch
    def handler(context, events):
        return result

    assert outcomes_of(handler, [event({"n": i}, f"e{i}") for i in range(3)]) == acks


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([None], "expected 3 outcome(s), one per event, got 1"),
        ({"nope": "DROP"}, "expected the ids of this batch's events as keys, got 1 unknown: 'nope'"),
        ([None, "retry", None], "the outcome of event 1 ('e1'): expected None, \"SUCCESS\""),
        ([None, True, None], "the outcome of event 1 ('e1'): expected None"),
        (
            "SUCCESS",
            "expected None, a list of one outcome per event or a dict of event id to outcome, got str",
        ),
    ],
)
def test_a_bad_batch_result_is_an_error_and_every_entry_gets_the_error_ack(result, message, caplog):
    @ff.batch
    def handler(context, events):
        return result

    res = testing.call_bulk(handler, [event({"n": i}, f"e{i}") for i in range(3)])
    assert res.acks == ["RETRY"] * 3  # on_error's default
    (outcome,) = res.outcomes
    assert outcome.status is ff.Status.ERROR
    assert isinstance(outcome.error, ff.BatchResultError)
    assert message in str(outcome.error)
    assert message in caplog.text


@pytest.mark.parametrize(("exc", "ack"), [(ff.Retry, "RETRY"), (ff.Drop, "DROP"), (KeyError, "RETRY")])
def test_a_raising_batch_handler_gives_every_entry_the_error_ack(exc, ack):
    @ff.batch
    def handler(context, events):
        raise exc("all of them")

    assert outcomes_of(handler, [event({"n": i}, f"e{i}") for i in range(4)]) == [ack] * 4


def test_an_async_batch_handler():
    @ff.batch
    async def handler(context, events):
        return [None if e.data["ok"] else "DROP" for e in events]

    assert outcomes_of(handler, [event({"ok": True}, "a"), event({"ok": False}, "b")]) == ["SUCCESS", "DROP"]


def test_per_event_handlers_run_the_entries_of_a_slow_bulk_concurrently():
    barrier = threading.Barrier(4, timeout=10)  # passes only when 4 entries are in the handler at once

    def handler(context, event):
        if event.id == "e0":
            time.sleep(0.01)  # the first call runs alone; it is slow, so the rest run concurrently
            return
        barrier.wait()
        if event.id == "e4":
            raise ff.Drop()

    res = testing.call_bulk(handler, [event({"n": i}, f"e{i}") for i in range(5)])
    assert res.acks == ["SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS", "DROP"]
    assert len(res.outcomes) == 5


def test_a_fast_per_event_handler_runs_the_entries_of_a_bulk_in_order_on_one_thread():
    threads = []

    def handler(context, event):
        threads.append((event.id, threading.get_ident()))

    res = testing.call_bulk(handler, [event({"n": i}, f"e{i}") for i in range(20)])
    assert res.acks == ["SUCCESS"] * 20
    assert [i for i, _ in threads] == [f"e{i}" for i in range(20)]
    assert len({t for _, t in threads}) == 1


def test_a_batch_handler_cannot_serve_the_http_trigger(tmp_path):
    folder = write_function(tmp_path / "f", BATCH, "name: f\ntriggers:\n  http: {port: 8080}\n")
    context = parse_context_text((folder / "function.yaml").read_text())
    with pytest.raises(SignatureError, match="'batch' signature \\(context, events\\), which cannot serve"):
        load_function(folder / "main.py", context=context)


def test_a_batch_handler_must_take_two_parameters():
    @ff.batch
    def handler(events):
        return None

    with pytest.raises(SignatureError, match="takes 2 positional parameter"):
        testing.load(handler)


# --- the AppCallback server ------------------------------------------------------------------------


@pytest.fixture
def grpc_app(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", BATCH, CONTEXT)
    server = funcd(
        str(folder), "--dapr-port", "0", "--dapr-address", dapr_api.address, env=dapr_api.env(), workers="1"
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{dapr_port(server)}")
    grpc.channel_ready_future(channel).result(timeout=10)
    yield server, channel
    channel.close()


def ce_entry(entry_id, data, event_id=None):
    return appcallback_v1.TopicEventBulkRequestEntry(
        entry_id=entry_id,
        content_type="application/cloudevents+json",
        cloud_event=appcallback_v1.TopicEventCERequest(
            id=event_id or f"ce-{entry_id}",
            source="tests",
            type="com.example",
            spec_version="1.0",
            data_content_type="application/json",
            data=json.dumps(data).encode(),
        ),
    )


def test_grpc_lists_the_bulk_subscription(grpc_app):
    _, channel = grpc_app
    subs = appcallback_service_v1.AppCallbackStub(channel).ListTopicSubscriptions(empty_pb2.Empty())
    by_topic = {s.topic: s for s in subs.subscriptions}
    bulk = by_topic["orders"]
    assert bulk.bulk_subscribe.enabled
    assert (bulk.bulk_subscribe.max_messages_count, bulk.bulk_subscribe.max_await_duration_ms) == (50, 200)
    assert dict(bulk.metadata) == {"rawPayload": "false"}  # the bulk keys became the config
    assert not by_topic["singles"].HasField("bulk_subscribe")


def test_grpc_bulk_reaches_a_batch_handler_with_a_status_per_entry(grpc_app, dapr_api):
    _, channel = grpc_app
    alpha = appcallback_service_v1.AppCallbackAlphaStub(channel)
    entries = [
        ce_entry("a", {"action": "send"}),
        ce_entry("b", {"action": "retry"}),
        ce_entry("c", {"action": "drop"}),
        ce_entry("d", {"action": "boom"}),
        appcallback_v1.TopicEventBulkRequestEntry(
            entry_id="e", bytes=b'{"n": 1}', content_type="application/json"
        ),
    ]
    req = appcallback_v1.TopicEventBulkRequest(
        id="bulk-1", entries=entries, topic="orders", pubsub_name="msg", type="com.dapr.event.sent.bulk"
    )
    resp = alpha.OnBulkTopicEventAlpha1(req)
    assert [(s.entry_id, s.status) for s in resp.statuses] == [
        ("a", SUCCESS),
        ("b", RETRY),
        ("c", DROP),
        ("d", RETRY),
        ("e", SUCCESS),
    ]
    assert [json.loads(p.data) for p in dapr_api.published] == [{"batch": 5}]
    # The whole batch raises Drop; a wrong shape gets the error ack; an unknown topic is dropped.
    raising = [ce_entry("x", {"action": "raise"}), ce_entry("y", {})]
    resp = alpha.OnBulkTopicEventAlpha1(
        appcallback_v1.TopicEventBulkRequest(id="2", entries=raising, topic="orders", pubsub_name="msg")
    )
    assert [s.status for s in resp.statuses] == [DROP, DROP]
    shape = [ce_entry("x", {"action": "shape"}), ce_entry("y", {})]
    resp = alpha.OnBulkTopicEventAlpha1(
        appcallback_v1.TopicEventBulkRequest(id="3", entries=shape, topic="orders", pubsub_name="msg")
    )
    assert [s.status for s in resp.statuses] == [RETRY, RETRY]
    resp = alpha.OnBulkTopicEventAlpha1(
        appcallback_v1.TopicEventBulkRequest(id="4", entries=shape, topic="other", pubsub_name="msg")
    )
    assert [s.status for s in resp.statuses] == [DROP, DROP]
    # daprd 1.18 calls the stable AppCallback.OnBulkTopicEvent first (1.15 only the Alpha1 method).
    stable = appcallback_service_v1.AppCallbackStub(channel).OnBulkTopicEvent(
        appcallback_v1.TopicEventBulkRequest(
            id="5",
            entries=[ce_entry("p", {"action": "drop"}), ce_entry("q", {})],
            topic="orders",
            pubsub_name="msg",
        )
    )
    assert [(s.entry_id, s.status) for s in stable.statuses] == [("p", DROP), ("q", SUCCESS)]
    # A single delivery reaches the batch handler as a list of one.
    single = appcallback_service_v1.AppCallbackStub(channel).OnTopicEvent(
        appcallback_v1.TopicEventRequest(
            id="s1",
            source="t",
            type="t",
            spec_version="1.0",
            data_content_type="application/json",
            data=b'{"action": "drop"}',
            topic="singles",
            pubsub_name="msg",
        )
    )
    assert single.status == DROP


# --- the HTTP app protocol -------------------------------------------------------------------------


def test_http_bulk_subscription_and_bulk_post(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", BATCH, CONTEXT)
    server = funcd(
        str(folder), "--app-protocol", "http", "--dapr-address", dapr_api.address, env=dapr_api.env()
    )
    subs = {s["topic"]: s for s in requests.get(server.url + "/dapr/subscribe", timeout=10).json()}
    assert subs["orders"] == {
        "pubsubname": "msg",
        "topic": "orders",
        "route": "/dapr/topics/msg",
        "metadata": {"rawPayload": "false"},
        "bulkSubscribe": {"enabled": True, "maxMessagesCount": 50, "maxAwaitDurationMs": 200},
    }
    assert "bulkSubscribe" not in subs["singles"]

    def ce(event_id, data):
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": "s",
            "type": "t",
            "datacontenttype": "application/json",
            "data": data,
            "topic": "orders",
            "pubsubname": "msg",
        }

    envelope = {
        "id": "bulk-1",
        "type": "com.dapr.event.sent.bulk",
        "topic": "orders",
        "pubsubname": "msg",
        "metadata": {"pubsubName": "msg"},
        "entries": [
            {
                "entryId": "1",
                "event": ce("h1", {"action": "send"}),
                "contentType": "application/cloudevents+json",
                "metadata": {},
            },
            {
                "entryId": "2",
                "event": ce("h2", {"action": "retry"}),
                "contentType": "application/cloudevents+json",
                "metadata": {},
            },
            {
                "entryId": "3",
                "event": ce("h3", {"action": "drop"}),
                "contentType": "application/cloudevents+json",
                "metadata": {},
            },
            {
                "entryId": "4",
                "event": base64.b64encode(b'{"n": 4}').decode(),
                "contentType": "application/json",
                "metadata": {},
            },
            {"entryId": "5", "event": 42, "metadata": {}},
        ],
    }
    r = requests.post(server.url + "/dapr/topics/msg", json=envelope, timeout=10)
    assert r.status_code == 200
    assert r.json() == {
        "statuses": [
            {"entryId": "1", "status": "SUCCESS"},
            {"entryId": "2", "status": "RETRY"},
            {"entryId": "3", "status": "DROP"},
            {"entryId": "4", "status": "SUCCESS"},
            {"entryId": "5", "status": "DROP"},  # refused before the handler: on_invalid
        ]
    }
    assert [json.loads(p.data) for p in dapr_api.published] == [{"batch": 4}]
    deadline = time.monotonic() + 10
    while "bulk entry 4 ('5') on msg/orders: expected a CloudEvent object" not in server.output:
        assert time.monotonic() < deadline, server.output
        time.sleep(0.02)


# --- plugins ---------------------------------------------------------------------------------------

PLUGIN_CONTEXT = """
name: plugged
inputs:
  msg: {componentName: msg, componentType: pubsub.redis, topic: orders}
tracing: {enabled: true}
"""


@ff.batch
def three_outcomes(context, events):
    return [None, "RETRY", "DROP"][: len(events)]


def test_tracing_makes_one_span_per_batch_parented_on_the_first_event():
    from tests.tracing_support import hex_trace, traced

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    t = traced(three_outcomes, PLUGIN_CONTEXT)
    try:
        headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        events = [
            testing.make_event({"n": i}, trigger=PUBSUB, id=f"e{i}", topic="orders", headers=headers)
            for i in range(3)
        ]
        comp = t.router.context.inputs["msg"]
        assert t.router.deliver_bulk(comp, events, "on msg/orders") == ["SUCCESS", "RETRY", "DROP"]
        [span] = t.spans("orders process")
        assert hex_trace(span) == trace_id
        attrs = dict(span.attributes)
        assert attrs["messaging.batch.message_count"] == 3
        assert (attrs["funcd.batch.success"], attrs["funcd.batch.retry"], attrs["funcd.batch.drop"]) == (
            1,
            1,
            1,
        )
        assert attrs["funcd.reply"] == "RETRY"  # the most severe
    finally:
        t.close()


def test_metrics_count_each_event_of_a_batch():
    from funcd_metrics import MetricsPlugin
    from prometheus_client.parser import text_string_to_metric_families
    from werkzeug.test import Client

    from functions_framework.invocation import Invoker
    from functions_framework.model.context import Metrics
    from functions_framework.plugins import load_plugins
    from functions_framework.runtime.delivery import Router
    from functions_framework.runtime.http import HttpApp
    from functions_framework.runtime.lifecycle import Lifecycle
    from functions_framework.runtime_context import RuntimeContext
    from functions_framework.settings import Settings

    base = parse_context_text(PLUGIN_CONTEXT.replace("tracing: {enabled: true}\n", ""), "test")
    context = ff.FunctionContext(name="plugged", inputs=base.inputs, metrics=Metrics(enabled=True))
    hooks = load_plugins(context, extra={"metrics": MetricsPlugin})
    loaded, _ = testing.load(three_outcomes)
    invoker = Invoker(loaded.adapter, RuntimeContext(context), hooks)
    router = Router(context, invoker, Settings(workers=1), Lifecycle())
    events = [event({"n": i}, f"e{i}") for i in range(3)]
    router.deliver_bulk(context.inputs["msg"], events, "on msg/orders")
    router.deliver_bulk(context.inputs["msg"], events[:1], "on msg/orders")
    client = Client(HttpApp(invoker, Settings(), Lifecycle(), routes=hooks.routes()))
    text = client.get("/metrics").get_data(as_text=True)
    counts = {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "funcd_invocations_total"
    }
    assert counts == {"SUCCESS": 2, "RETRY": 1, "DROP": 1}


def test_http_bulk_entries_over_the_body_limit_are_refused_one_by_one(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", BATCH, CONTEXT)
    server = funcd(
        str(folder),
        "--app-protocol",
        "http",
        "--max-body",
        "1KiB",
        "--dapr-address",
        dapr_api.address,
        env=dapr_api.env(),
    )

    def entry(entry_id, data):
        ce = {"specversion": "1.0", "id": entry_id, "source": "s", "type": "t", "data": data}
        ce["datacontenttype"] = "application/json"
        return {"entryId": entry_id, "event": ce, "contentType": CE, "metadata": {}}

    envelope = {"id": "b", "type": "com.dapr.event.sent.bulk", "topic": "orders", "pubsubname": "msg"}
    envelope["entries"] = [entry("small", {"n": 1}), entry("big", {"pad": "x" * 2000})]
    r = requests.post(server.url + "/dapr/topics/msg", json=envelope, timeout=10)
    assert r.json() == {
        "statuses": [{"entryId": "small", "status": "SUCCESS"}, {"entryId": "big", "status": "DROP"}]
    }
    # More than maxBulkSubCount (50) times a single delivery's body: refused whole, dropped (404) by daprd.
    envelope["entries"] = [entry(f"e{i}", {"pad": "x" * 100_000}) for i in range(40)]
    r = requests.post(server.url + "/dapr/topics/msg", json=envelope, timeout=10)
    assert r.status_code == 404 and "exceeds the limit" in r.json()["error"]
