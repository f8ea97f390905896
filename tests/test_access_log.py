"""The access log, against a real server: one JSON line per request and per delivery, off by default."""

from __future__ import annotations

import json

import pytest
import requests

from tests.compat_support import DROP, RETRY, SUCCESS, dapr_stub, topic_event
from tests.support import Server, write_function

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

FUNCTION = """
import functions_framework as ff

def handler(context, event):
    if event.path == "/marker":
        context.logger.info("marker")
        return "marked"
    if event.path == "/missing":
        raise ff.HTTPError(404, "no such thing")
    if event.trigger.kind == "pubsub":
        action = event.data.get("action") if isinstance(event.data, dict) else None
        if action == "retry":
            raise ff.Retry()
    return {"ok": True}
"""

CONTEXT = """
name: access
triggers:
  http: {port: 8080}
  dapr:
    - {name: msg, type: pubsub.redis, topic: orders}
"""


def access_lines(server: Server) -> list[dict]:
    return [x for x in server.json_logs() if x.get("logger") == "functions_framework.access"]


def access_line(server: Server, **match: object) -> dict:
    return server.wait_for_log(
        lambda x: (
            x.get("logger") == "functions_framework.access" and all(x.get(k) == v for k, v in match.items())
        )
    )


@pytest.fixture
def start(funcd, tmp_path, dapr_api):
    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
        return funcd(
            str(folder),
            "--dapr-port",
            "0",
            "--dapr-address",
            dapr_api.address,
            "--max-body",
            "1KiB",
            *args,
            env={**dapr_api.env(), **(env or {})},
        )

    return start


def check_http_lines(server: Server) -> None:
    r = requests.post(server.url + "/orders?x=1", json={"a": 1}, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200
    eid = r.headers["function-execution-id"]
    line = access_line(server, execution_id=eid)
    assert line["message"] == "access" and line["level"] == "info"
    assert (line["trigger"], line["method"], line["path"], line["status"]) == ("http", "POST", "/orders", 200)
    assert line["trace_id"] == TRACE_ID
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert line["function"] == "access"

    r = requests.get(server.url + "/missing")
    line = access_line(server, execution_id=r.headers["function-execution-id"])
    assert (line["method"], line["path"], line["status"]) == ("GET", "/missing", 404)
    assert "trace_id" not in line  # no traceparent: no trace id


def check_delivery_lines(server: Server) -> None:
    channel, stub = dapr_stub(server)
    try:
        ok = stub.OnTopicEvent(topic_event(b"{}", event_id="d-ok"), metadata=(("traceparent", TRACEPARENT),))
        retry = stub.OnTopicEvent(topic_event(b'{"action": "retry"}', event_id="d-retry"))
    finally:
        channel.close()
    assert (ok.status, retry.status) == (SUCCESS, RETRY)
    line = access_line(server, execution_id="d-ok")
    assert (line["trigger"], line["pubsub"], line["topic"], line["ack"]) == (
        "pubsub",
        "msg",
        "orders",
        "SUCCESS",
    )
    assert line["trace_id"] == TRACE_ID and line["duration_ms"] >= 0
    assert "status" not in line and "method" not in line
    assert access_line(server, execution_id="d-retry")["ack"] == "RETRY"


def test_access_log_flag_writes_a_line_per_request_and_delivery(start):
    server = start("--access-log")
    check_http_lines(server)
    check_delivery_lines(server)


def test_access_log_from_the_environment(start):
    server = start(env={"FUNCD_ACCESS_LOG": "1"})
    check_http_lines(server)
    check_delivery_lines(server)


@pytest.mark.parametrize("env", [{}, {"FUNCD_ACCESS_LOG": "0"}, {"FUNCD_ACCESS_LOG": "off"}])
def test_access_log_is_off_by_default(start, env):
    server = start(env=env)
    assert requests.get(server.url + "/orders", headers={"traceparent": TRACEPARENT}).status_code == 200
    assert requests.post(server.url + "/big", data=b"x" * 2048).status_code == 413
    channel, stub = dapr_stub(server)
    try:
        assert stub.OnTopicEvent(topic_event(b"{}", event_id="quiet")).status == SUCCESS
    finally:
        channel.close()
    # Each line above was written before its reply was sent; the marker is written after them all.
    assert requests.get(server.url + "/marker").text == "marked"
    server.wait_for_log(lambda x: x.get("message") == "marker")
    assert access_lines(server) == []


def test_refused_requests_and_deliveries_get_a_line(start):
    server = start("--access-log")
    r = requests.post(server.url + "/upload", data=b"x" * 2048, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 413
    line = access_line(server, execution_id=r.headers["function-execution-id"])
    assert (line["trigger"], line["method"], line["path"], line["status"], line["rejected"]) == (
        "http",
        "POST",
        "/upload",
        413,
        "too_large",
    )
    assert line["trace_id"] == TRACE_ID

    r = requests.post(
        server.url + "/events",
        data=b"{}",
        headers={"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "content-type": "application/json"},
    )
    assert r.status_code == 400
    line = access_line(server, execution_id=r.headers["function-execution-id"])
    assert (line["path"], line["status"], line["rejected"]) == ("/events", 400, "bad_cloudevent")

    channel, stub = dapr_stub(server)
    try:
        big = topic_event(b"x" * 2048, event_id="d-big", content_type="application/octet-stream")
        assert stub.OnTopicEvent(big, metadata=(("traceparent", TRACEPARENT),)).status == DROP
    finally:
        channel.close()
    line = access_line(server, execution_id="d-big")
    assert (line["trigger"], line["topic"], line["ack"], line["rejected"]) == (
        "pubsub",
        "orders",
        "DROP",
        "too_large",
    )
    assert line["trace_id"] == TRACE_ID


def test_every_access_line_is_one_json_object(start):
    server = start("--access-log")
    for _ in range(3):
        requests.get(server.url + "/a")
    assert requests.get(server.url + "/marker").text == "marked"
    server.wait_for_log(lambda x: x.get("message") == "marker")
    lines = access_lines(server)
    assert len(lines) == 4
    assert all(json.loads(json.dumps(x)) == x for x in lines)
    assert len({x["execution_id"] for x in lines}) == 4
