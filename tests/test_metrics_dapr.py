"""The metrics plugin on a function without an HTTP trigger: deliveries over the AppCallback gRPC
API (official stubs, as daprd calls it), outputs to the Dapr API protocol fake, and the counts on
the HTTP port's metrics path, whichever worker answers the scrape."""

from __future__ import annotations

import json

import grpc
import pytest
import requests
from dapr.proto import appcallback_service_v1, appcallback_v1

from tests.metrics_support import scrape, scrape_until
from tests.support import write_function
from tests.test_dapr_runtime import DROP, RETRY, SUCCESS, dapr_port

FUNCTION = """
import functions_framework as ff

def handler(context, event):
    data = event.data
    action = data.get("action") if isinstance(data, dict) else None
    if action == "retry":
        raise ff.Retry()
    if action == "drop":
        raise ff.Drop()
    if action == "send":
        context.send(data, output="next")
    return None
"""

CONTEXT = """
name: async-counted
metrics: {enabled: true, path: /prom}
triggers:
  dapr:
    - {name: msg, type: pubsub.redis, topic: orders}
    - {name: cron, type: bindings.cron}
outputs:
  next: {componentName: msg, componentType: pubsub.redis, topic: processed}
"""


def topic_event(data, content_type="application/json"):
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return appcallback_v1.TopicEventRequest(
        id="e",
        source="tests",
        type="t",
        spec_version="1.0",
        data_content_type=content_type,
        data=body,
        topic="orders",
        pubsub_name="msg",
    )


@pytest.fixture
def app(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    server = funcd(
        str(folder),
        "--dapr-port",
        "0",
        "--dapr-address",
        dapr_api.address,
        "--max-body",
        "4KiB",
        env={**dapr_api.env(), "TMPDIR": str(tmp_path)},  # the metrics directory
        workers="2",
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{dapr_port(server)}")
    grpc.channel_ready_future(channel).result(timeout=10)
    yield server, appcallback_service_v1.AppCallbackStub(channel)
    channel.close()


def test_acks_sends_and_refusals_are_counted(app, dapr_api):
    server, stub = app
    scrape_until(server.url, lambda s: s.total("funcd_cold_start_seconds_count") == 2, path="/prom")
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
    assert requests.get(server.url + "/metrics", timeout=5).status_code == 404  # the path is /prom

    expected = {SUCCESS: 0, RETRY: 0, DROP: 0}

    def deliver(data, ack, content_type="application/json"):
        assert stub.OnTopicEvent(topic_event(data, content_type)).status == ack
        expected[ack] += 1

    for _ in range(5):
        deliver({"n": 1}, SUCCESS)
    for _ in range(3):
        deliver({"action": "retry"}, RETRY)
    for _ in range(2):
        deliver({"action": "drop"}, DROP)
    for _ in range(2):
        deliver({"action": "send"}, SUCCESS)
    dapr_api.fail_next("PublishEvent", grpc.StatusCode.UNAVAILABLE)  # temporary: RETRY
    deliver({"action": "send"}, RETRY)
    dapr_api.fail_next("PublishEvent", grpc.StatusCode.INVALID_ARGUMENT)  # permanent: DROP
    deliver({"action": "send"}, DROP)
    deliver(b"{not json", DROP)  # the handler reads event.data: an invocation answered DROP
    assert stub.OnTopicEvent(topic_event(b"x" * 5000, "application/octet-stream")).status == DROP  # refused
    stub.OnBindingEvent(appcallback_v1.BindingEventRequest(name="cron", data=b""))
    assert len(dapr_api.published) == 2

    # A worker's counts reach the other worker's scrape within the flush interval: wait for all 16
    # calls, then scrapes answered by either worker are the same.
    scrape_until(server.url, lambda s: s.total("funcd_invocations_total") == 16, path="/prom", timeout=10)
    scrapes = [scrape(server.url, "/prom") for _ in range(10)]  # from the HTTP port, any worker
    assert all(s.samples == scrapes[0].samples for s in scrapes), "scrapes of the workers differ"
    s = scrapes[0]
    fn = ("function", "async-counted")
    names = {SUCCESS: "SUCCESS", RETRY: "RETRY", DROP: "DROP"}
    assert expected == {SUCCESS: 7, RETRY: 4, DROP: 4}
    assert s.series("funcd_invocations_total") == {
        **{(fn, ("outcome", names[a]), ("trigger", "pubsub:msg")): float(n) for a, n in expected.items()},
        (fn, ("outcome", "SUCCESS"), ("trigger", "binding:cron")): 1.0,
    }, s.text
    assert s.total("funcd_invocation_duration_seconds_count", trigger="pubsub:msg") == 15
    assert s.total("funcd_invocation_duration_seconds_count", trigger="binding:cron") == 1
    assert s.total("funcd_rejected_total", reason="too_large") == 1
    assert s.total("funcd_rejected_total", reason="invalid_delivery") == 0
    sends = s.series("funcd_output_sends_total")
    assert sends == {
        (fn, ("outcome", "permanent_error"), ("output", "next")): 1.0,
        (fn, ("outcome", "success"), ("output", "next")): 2.0,
        (fn, ("outcome", "temporary_error"), ("output", "next")): 1.0,
    }, s.text
    assert s.total("funcd_in_flight") == 0
    assert s.total("funcd_cold_start_seconds_count") == 2


def test_http_app_protocol_deliveries_over_every_worker_add_up(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    env = {**dapr_api.env(), "TMPDIR": str(tmp_path)}  # the metrics directory
    server = funcd(str(folder), "--app-protocol", "http", env=env, workers="2")
    scrape_until(server.url, lambda s: s.total("funcd_cold_start_seconds_count") == 2, path="/prom")
    headers = {"content-type": "application/cloudevents+json"}
    plan = ["ok"] * 60 + ["retry"] * 25 + ["drop"] * 15
    acks = {"ok": "SUCCESS", "retry": "RETRY", "drop": "DROP"}
    for i, action in enumerate(plan):  # a new connection each: daprd's pool spreads over the workers
        ce = {"specversion": "1.0", "id": f"h{i}", "source": "s", "type": "t", "topic": "orders"}
        ce |= {"pubsubname": "msg", "datacontenttype": "application/json", "data": {"action": action}}
        r = requests.post(server.url + "/dapr/topics/msg", data=json.dumps(ce), headers=headers, timeout=10)
        assert r.json() == {"status": acks[action]}
    for _ in range(2):  # not a CloudEvent: refused before the handler
        r = requests.post(server.url + "/dapr/topics/msg", data=b"{oops", headers=headers, timeout=10)
        assert r.json() == {"status": "DROP"}

    # every worker's counts arrive within its flush interval
    s = scrape_until(
        server.url, lambda s: s.total("funcd_invocations_total") == 100, path="/prom", timeout=10
    )
    fn, trigger = ("function", "async-counted"), ("trigger", "pubsub:msg")
    assert s.series("funcd_invocations_total") == {
        (fn, ("outcome", "SUCCESS"), trigger): 60.0,
        (fn, ("outcome", "RETRY"), trigger): 25.0,
        (fn, ("outcome", "DROP"), trigger): 15.0,
    }, s.text
    assert s.total("funcd_invocation_duration_seconds_count", trigger="pubsub:msg") == 100
    assert s.total("funcd_rejected_total", reason="invalid_delivery") == 2
    assert s.total("funcd_in_flight") == 0
