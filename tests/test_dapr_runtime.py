"""The Dapr runtime, fast tier: the AppCallback server and the HTTP app protocol, driven through the
official gRPC stubs and plain HTTP, with outputs captured by the Dapr API protocol fake."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import grpc
import pytest
import requests
from dapr.proto import appcallback_service_v1, appcallback_v1
from google.protobuf import empty_pb2

from tests.support import write_function

SUCCESS = appcallback_v1.TopicEventResponse.SUCCESS
RETRY = appcallback_v1.TopicEventResponse.RETRY
DROP = appcallback_v1.TopicEventResponse.DROP

FUNCTION = """
import time
import functions_framework as ff

def init_context(context):
    context.user_data.seen = 0

def handler(context, event):
    data = event.data
    if event.trigger.kind == "binding":
        context.send({"tick": event.binding, "meta": dict(event.metadata)}, output="sink")
        return None
    if event.trigger.kind == "http":
        return {"http": True, "data": data}
    action = data.get("action") if isinstance(data, dict) else None
    if action == "retry": raise ff.Retry()
    if action == "drop": raise ff.Drop()
    if action == "boom": raise RuntimeError("handler failure")
    if action == "slow": time.sleep(data.get("s", 1))
    context.send({"seen": data, "topic": event.topic, "input": event.trigger.name}, output="next")
    return {"ok": True}
"""

CONTEXT = """
name: dapr-test
triggers:
  http: {port: 8080}
  dapr:
    - {name: msg, type: pubsub.redis, topic: orders, deadLetterTopic: orders-dead}
    - {name: cron, type: bindings.cron}
outputs:
  next: {componentName: msg, componentType: pubsub.redis, topic: processed}
  sink: {componentName: sink, componentType: bindings.localstorage, operation: create}
"""

_DAPR_LINE = re.compile(r"serving Dapr app callbacks for .* on grpc://127\.0\.0\.1:(\d+)")


def dapr_port(server) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in server.lines:
            m = _DAPR_LINE.search(line)
            if m:
                return int(m.group(1))
        time.sleep(0.02)
    raise AssertionError(server.output)


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
        "64KiB",
        "--threads",
        "8",  # so that calls made while the slow ones run are not queued behind them
        env=dapr_api.env(),
        workers="2",
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{dapr_port(server)}")
    grpc.channel_ready_future(channel).result(timeout=10)
    yield server, appcallback_service_v1.AppCallbackStub(channel), channel
    channel.close()


def topic_event(data, event_id="e1", content_type="application/json", topic="orders"):
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return appcallback_v1.TopicEventRequest(
        id=event_id,
        source="tests",
        type="com.example",
        spec_version="1.0",
        data_content_type=content_type,
        data=body,
        topic=topic,
        pubsub_name="msg",
    )


def test_subscriptions_and_bindings_are_listed(app):
    _, stub, _ = app
    subs = stub.ListTopicSubscriptions(empty_pb2.Empty()).subscriptions
    assert [(s.pubsub_name, s.topic, s.dead_letter_topic) for s in subs] == [("msg", "orders", "orders-dead")]
    assert list(stub.ListInputBindings(empty_pb2.Empty()).bindings) == ["cron"]


def test_topic_event_reaches_the_handler_and_sends_an_output(app, dapr_api):
    _, stub, _ = app
    assert stub.OnTopicEvent(topic_event({"n": 1})).status == SUCCESS
    deadline = time.monotonic() + 5
    while not dapr_api.published and time.monotonic() < deadline:
        time.sleep(0.01)
    [published] = dapr_api.published
    assert (published.pubsub_name, published.topic, published.content_type) == (
        "msg",
        "processed",
        "application/json",
    )
    assert json.loads(published.data) == {"seen": {"n": 1}, "topic": "orders", "input": "msg"}


@pytest.mark.parametrize(("action", "status"), [("retry", RETRY), ("drop", DROP), ("boom", RETRY)])
def test_ack_mapping(app, action, status):
    _, stub, _ = app
    assert stub.OnTopicEvent(topic_event({"action": action})).status == status
    assert stub.OnTopicEvent(topic_event({"n": 2})).status == SUCCESS


def test_bad_input_is_logged_and_dropped_and_serving_goes_on(app):
    server, stub, _ = app
    assert stub.OnTopicEvent(topic_event(b"{not json", event_id="bad-json")).status == DROP
    assert (
        stub.OnTopicEvent(topic_event(b"\xff\xfe", event_id="bad-text", content_type="text/plain")).status
        == DROP
    )
    assert (
        stub.OnTopicEvent(
            topic_event(b"x" * (65 * 1024), event_id="too-big", content_type="application/octet-stream")
        ).status
        == DROP
    )
    assert stub.OnTopicEvent(topic_event({"n": 3}, topic="unknown")).status == DROP
    assert stub.OnTopicEvent(topic_event({"n": 3})).status == SUCCESS
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "too-big" not in server.output:
        time.sleep(0.02)
    warnings = [x["message"] for x in server.json_logs() if x.get("level") == "warning"]
    assert any("bad-json" in m and "malformed JSON body" in m and "ack DROP" in m for m in warnings), warnings
    assert any("bad-text" in m and "does not decode" in m for m in warnings), warnings
    assert any("too-big" in m and "exceeds the limit of 65536 bytes" in m for m in warnings), warnings


def test_bulk_deliveries_get_a_status_per_entry(app):
    _, stub, _ = app
    entries = [
        appcallback_v1.TopicEventBulkRequestEntry(
            entry_id="a", bytes=b'{"n": 1}', content_type="application/json"
        ),
        appcallback_v1.TopicEventBulkRequestEntry(
            entry_id="b", bytes=b'{"action": "retry"}', content_type="application/json"
        ),
        appcallback_v1.TopicEventBulkRequestEntry(
            entry_id="c", bytes=b'{"action": "drop"}', content_type="application/json"
        ),
        appcallback_v1.TopicEventBulkRequestEntry(
            entry_id="d",
            cloud_event=appcallback_v1.TopicEventCERequest(
                id="ce-d",
                source="s",
                type="t",
                spec_version="1.0",
                data_content_type="application/json",
                data=b"{broken",
            ),
        ),
    ]
    req = appcallback_v1.TopicEventBulkRequest(id="bulk", entries=entries, topic="orders", pubsub_name="msg")
    resp = stub.OnBulkTopicEvent(req)
    assert {s.entry_id: s.status for s in resp.statuses} == {"a": SUCCESS, "b": RETRY, "c": DROP, "d": DROP}


def test_binding_event(app, dapr_api):
    _, stub, _ = app
    stub.OnBindingEvent(appcallback_v1.BindingEventRequest(name="cron", data=b"", metadata={"k": "v"}))
    [call] = dapr_api.invoked
    assert (call.name, call.operation) == ("sink", "create")
    assert json.loads(call.data) == {"tick": "cron", "meta": {"k": "v"}}
    with pytest.raises(grpc.RpcError) as info:
        stub.OnBindingEvent(appcallback_v1.BindingEventRequest(name="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_http_trigger_served_by_the_same_process(app):
    server, stub, _ = app
    assert requests.post(server.url, json={"x": 1}).json() == {"http": True, "data": {"x": 1}}
    assert stub.OnTopicEvent(topic_event({"n": 4})).status == SUCCESS


def test_health_check(app):
    _, _, channel = app
    health = appcallback_service_v1.AppCallbackHealthCheckStub(channel)
    assert health.HealthCheck(empty_pb2.Empty()) == appcallback_v1.HealthCheckResponse()


def test_drain_serves_what_still_arrives_and_stops_once_daprd_has_paused(app):
    # The test plays daprd: it probes the app's health (so funcd knows daprd checks it; with its
    # settings unknown, funcd assumes Dapr's default threshold of 3 failed probes) and delivers.
    server, stub, channel = app
    health = appcallback_service_v1.AppCallbackHealthCheckStub(channel)
    assert health.HealthCheck(empty_pb2.Empty()) == appcallback_v1.HealthCheckResponse()
    results: list[int] = []

    def slow(i: int) -> None:
        results.append(
            stub.OnTopicEvent(topic_event({"action": "slow", "s": 1}, event_id=f"slow-{i}")).status
        )

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(4)]  # half of the 8 threads
    for t in threads:
        t.start()
    server.proc.send_signal(15)
    wait_for_line(server, "draining: readiness is 503")
    # A delivery that arrives while draining is served, not answered RETRY (which daprd would
    # dead-letter at once with a dead-letter topic and no resiliency policy).
    assert stub.OnTopicEvent(topic_event({"n": 5}, event_id="late")).status == SUCCESS
    for t in threads:
        t.join(10)
    assert results == [SUCCESS] * 4
    # Health probes now fail; two are not enough for daprd to pause, so funcd keeps serving.
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as info:
            health.HealthCheck(empty_pb2.Empty())
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "NOT_SERVING" in info.value.details()
    with pytest.raises(subprocess.TimeoutExpired):
        server.proc.wait(2.5)  # longer than the quiet period: still serving
    assert stub.OnTopicEvent(topic_event({"n": 6}, event_id="later")).status == SUCCESS
    with pytest.raises(grpc.RpcError):
        health.HealthCheck(empty_pb2.Empty())  # the third: daprd pauses its subscriptions
    assert server.proc.wait(15) == 0
    messages = [entry.get("message", "") for entry in server.json_logs()]
    assert (
        "draining: daprd has had 3 unhealthy answers to its health probes and pauses deliveries" in messages
    )
    # "late" and "later", and the slow ones that reached the server after the signal.
    [served] = [m for m in messages if m.endswith("delivery(ies) arrived and were served while draining")]
    assert 2 <= int(served.split()[1]) <= 6, served
    assert "drained; stopping" in messages


def wait_for_line(server, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in server.lines):
        assert time.monotonic() < deadline, f"no line with {text!r}:\n{server.output}"
        time.sleep(0.02)


def test_app_api_token_is_enforced(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    server = funcd(str(folder), "--dapr-port", "0", env={**dapr_api.env(), "APP_API_TOKEN": "s3cret"})
    channel = grpc.insecure_channel(f"127.0.0.1:{dapr_port(server)}")
    stub = appcallback_service_v1.AppCallbackStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.ListTopicSubscriptions(empty_pb2.Empty())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError):
        stub.OnTopicEvent(topic_event({"n": 1}), metadata=[("dapr-api-token", "wrong")])
    resp = stub.OnTopicEvent(topic_event({"n": 1}), metadata=[("dapr-api-token", "s3cret")])
    assert resp.status == SUCCESS
    channel.close()


def test_http_app_protocol(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    server = funcd(str(folder), "--app-protocol", "http", env=dapr_api.env(), **{})
    subs = requests.get(server.url + "/dapr/subscribe").json()
    assert subs == [
        {
            "pubsubname": "msg",
            "topic": "orders",
            "route": "/dapr/topics/msg",
            "deadLetterTopic": "orders-dead",
        }
    ]
    ce = {
        "specversion": "1.0",
        "id": "h1",
        "source": "s",
        "type": "t",
        "datacontenttype": "application/json",
        "data": {"n": 1},
        "topic": "orders",
        "pubsubname": "msg",
    }
    headers = {"content-type": "application/cloudevents+json"}
    r = requests.post(server.url + "/dapr/topics/msg", data=json.dumps(ce), headers=headers)
    assert r.json() == {"status": "SUCCESS"}
    ce["data"] = {"action": "retry"}
    assert requests.post(server.url + "/dapr/topics/msg", json=ce, headers=headers).json() == {
        "status": "RETRY"
    }
    bad = requests.post(server.url + "/dapr/topics/msg", data=b"{oops", headers=headers)
    assert bad.json() == {"status": "DROP"}
    assert requests.options(server.url + "/cron").status_code == 200
    assert requests.post(server.url + "/cron", data=b"").status_code == 200
    assert requests.post(server.url + "/", json={"x": 2}).json() == {"http": True, "data": {"x": 2}}
    assert dapr_api.published and dapr_api.invoked


def test_async_only_function_serves_health_but_no_http_trigger(funcd, tmp_path, dapr_api):
    context = CONTEXT.replace("  http: {port: 8080}\n", "")
    folder = write_function(tmp_path / "f", FUNCTION, context)
    server = funcd(str(folder), "--dapr-port", "0", env=dapr_api.env())
    assert requests.get(server.url + "/healthz").status_code == 200
    r = requests.post(server.url + "/", json={})
    assert r.status_code == 404 and "no HTTP trigger" in r.json()["error"]["message"]


OUTPUT_ONLY = """
def handler(context, event):
    return {"handled": event.path}
"""


def test_http_app_protocol_answers_daprd_for_a_function_with_outputs_only(funcd, tmp_path, dapr_api):
    """daprd asks the app port for /dapr/config and /dapr/subscribe whatever the app subscribes to;
    funcd answers them (nothing subscribed) and the function only sees its own requests."""
    context = "outputs:\n  out: {componentName: msg, componentType: pubsub.redis, topic: orders}\n"
    folder = write_function(tmp_path / "f", OUTPUT_ONLY, context)
    server = funcd(str(folder), "--app-protocol", "http", env=dapr_api.env())
    assert requests.get(server.url + "/dapr/subscribe").json() == []
    assert requests.get(server.url + "/dapr/config").status_code == 200
    assert requests.get(server.url + "/orders").json() == {"handled": "/orders"}
