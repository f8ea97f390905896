"""The HTTP runtime, through a real server."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import write_function

FUNCTION = """
import asyncio, time
import functions_framework as ff

def handler(context, event):
    p = event.path
    if p == "/str": return "hi"
    if p == "/bytes": return b"\\x00\\x01"
    if p == "/list": return [1, 2]
    if p == "/none": return None
    if p == "/tuple2": return {"created": True}, 201
    if p == "/tuple3": return "teapot", 418, {"x-tea": "earl grey"}
    if p == "/response": return ff.Response(b"<a/>", status=202, content_type="application/xml")
    if p == "/unsendable": return object()
    if p == "/data": return {"data": event.data}
    if p == "/ignore-body": return "ok"
    if p == "/boom": raise RuntimeError("secret internals")
    if p == "/http-error": raise ff.HTTPError(409, "version conflict")
    if p == "/retry": raise ff.Retry("later")
    if p == "/slow": time.sleep(float(event.query.get("s", ["1"])[0])); return "slow done"
    if p == "/log":
        context.logger.info("hello from the handler")
        return "logged"
    if p == "/headers": return {"x-custom": event.headers.get("x-custom"), "method": event.method}
    return {"path": p, "body_len": len(event.body)}
"""

ASYNC_FUNCTION = """
import asyncio

async def init_context(context):
    await asyncio.sleep(0)
    context.user_data.greeting = "async hello"

async def handler(context, event):
    if event.path == "/slow":
        await asyncio.sleep(5)
    await asyncio.sleep(0.01)
    return {"greeting": context.user_data.greeting}
"""


@pytest.fixture
def server(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION, "name: runtime-test\n")
    return funcd(str(folder), "--timeout", "2", "--max-body", "1KiB")


@pytest.mark.parametrize(
    ("path", "status", "content_type", "body"),
    [
        ("/str", 200, "text/plain; charset=utf-8", b"hi"),
        ("/bytes", 200, "application/octet-stream", b"\x00\x01"),
        ("/list", 200, "application/json", b"[1,2]"),
        ("/none", 204, None, b""),
        ("/tuple2", 201, "application/json", b'{"created":true}'),
        ("/tuple3", 418, "text/plain; charset=utf-8", b"teapot"),
        ("/response", 202, "application/xml", b"<a/>"),
    ],
)
def test_return_values(server, path, status, content_type, body):
    r = requests.post(server.url + path)
    assert r.status_code == status
    assert r.headers.get("content-type") == content_type
    assert r.content == body


def test_tuple_headers_are_sent(server):
    assert requests.get(server.url + "/tuple3").headers["x-tea"] == "earl grey"


def test_every_method_and_path_reach_the_function(server):
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        r = requests.request(method, server.url + "/deep/nested/path", data=b"abc")
        assert r.status_code == 200, method
        assert r.json()["path"] == "/deep/nested/path"
    r = requests.get(server.url + "/headers", headers={"x-custom": "v"})
    assert r.json() == {"x-custom": "v", "method": "GET"}


def test_unsendable_return_is_a_500(server):
    r = requests.get(server.url + "/unsendable")
    assert r.status_code == 500
    assert r.json()["error"]["message"] == "the function returned a value that cannot be sent"


def test_exception_is_a_json_500_without_traceback(server):
    r = requests.get(server.url + "/boom")
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == 500 and err["execution_id"] == r.headers["function-execution-id"]
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert requests.get(server.url + "/str").text == "hi"
    logged = [rec for rec in server.json_logs() if rec.get("level") == "error"]
    assert any(
        "secret internals" in rec["message"] and "Traceback" in rec.get("exception", "") for rec in logged
    )


def test_debug_puts_the_traceback_in_the_response(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION)
    server = funcd(str(folder), "--debug")
    r = requests.get(server.url + "/boom")
    assert r.status_code == 500
    assert "secret internals" in r.json()["error"]["message"]
    assert "Traceback" in r.json()["error"]["detail"]


def test_http_error_and_retry(server):
    r = requests.get(server.url + "/http-error")
    assert (r.status_code, r.json()["error"]["message"]) == (409, "version conflict")
    assert requests.get(server.url + "/retry").status_code == 503


def test_malformed_json_the_handler_reads_is_a_400(server):
    r = requests.post(server.url + "/data", data=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "malformed JSON body" in r.json()["error"]["message"]
    ok = requests.post(
        server.url + "/ignore-body", data=b"{nope", headers={"content-type": "application/json"}
    )
    assert ok.status_code == 200
    good = requests.post(server.url + "/data", json={"a": 1})
    assert good.json() == {"data": {"a": 1}}


def test_text_and_binary_data(server):
    r = requests.post(server.url + "/data", data="héllo".encode(), headers={"content-type": "text/plain"})
    assert r.json() == {"data": "héllo"}


def test_malformed_cloudevent_is_a_400(server):
    r = requests.post(
        server.url + "/data",
        data=b"{}",
        headers={"ce-specversion": "1.0", "content-type": "application/json"},
    )  # no id, source, type
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "ce-id, ce-source, ce-type" in message and "missing" in message, message
    r = requests.post(
        server.url + "/data", data=b"{not json", headers={"content-type": "application/cloudevents+json"}
    )
    assert r.status_code == 400
    r = requests.post(
        server.url + "/data", data=b"[]", headers={"content-type": "application/cloudevents-batch+json"}
    )
    assert r.status_code == 400 and "batched" in r.json()["error"]["message"]
    assert requests.get(server.url + "/str").status_code == 200


def test_body_limit_is_a_413_and_serving_goes_on(server):
    r = requests.post(server.url + "/echo", data=b"x" * 2048)
    assert r.status_code == 413
    assert "exceeds the limit of 1024 bytes" in r.json()["error"]["message"]

    def chunks():
        for _ in range(4):
            yield b"y" * 512

    r = requests.post(server.url + "/echo", data=chunks())
    assert r.status_code == 413
    r = requests.post(server.url + "/echo", data=b"x" * 1024)
    assert r.status_code == 200 and r.json()["body_len"] == 1024


def test_timeout_is_a_504_and_serving_goes_on(server):
    started = time.monotonic()
    r = requests.get(server.url + "/slow?s=5")
    assert r.status_code == 504
    assert time.monotonic() - started < 4.5
    assert "did not finish within 2s" in r.json()["error"]["message"]
    assert requests.get(server.url + "/str").text == "hi"


def test_execution_id_is_generated_or_taken_from_the_request(server):
    a = requests.get(server.url + "/str").headers["function-execution-id"]
    b = requests.get(server.url + "/str").headers["function-execution-id"]
    assert a != b
    r = requests.get(server.url + "/str", headers={"Function-Execution-Id": "given-123"})
    assert r.headers["function-execution-id"] == "given-123"


def test_logs_are_json_with_execution_and_trace_ids(server):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = requests.get(server.url + "/log", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    eid = r.headers["function-execution-id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        recs = [x for x in server.json_logs() if x.get("message") == "hello from the handler"]
        if recs:
            break
        time.sleep(0.02)
    assert recs, server.output
    assert recs[0]["function"] == "runtime-test"
    assert recs[0]["execution_id"] == eid
    assert recs[0]["trace_id"] == trace_id
    assert recs[0]["logger"] == "function.runtime-test"


def test_health_paths_are_reserved_and_configurable(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION)
    server = funcd(str(folder), "--health-path", "/live", "--ready-path", "/readyz")
    assert requests.get(server.url + "/live").text == "ok"
    assert requests.get(server.url + "/healthz").json()["path"] == "/healthz"


def test_async_handler_and_init_context(funcd, tmp_path):
    folder = write_function(tmp_path / "f", ASYNC_FUNCTION)
    server = funcd(str(folder), "--timeout", "1")
    assert requests.get(server.url).json() == {"greeting": "async hello"}
    assert requests.get(server.url + "/slow").status_code == 504
    assert requests.get(server.url).status_code == 200


def test_sigterm_drains_in_flight_requests_then_exits_0(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION)
    server = funcd(str(folder), "--grace", "10", workers="2")
    results: list[requests.Response] = []
    threads = [
        threading.Thread(target=lambda: results.append(requests.get(server.url + "/slow?s=1.5")))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)  # let the three requests reach the handler
    server.proc.send_signal(15)
    ready_codes = []
    for _ in range(20):
        try:
            ready_codes.append(requests.get(server.url + "/readyz", timeout=1).status_code)
        except requests.ConnectionError:
            break
        if ready_codes[-1] == 503:
            break
        time.sleep(0.02)
    assert 503 in ready_codes, (ready_codes, server.output)
    for t in threads:
        t.join(10)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert all(r.text == "slow done" for r in results)
    assert server.proc.wait(15) == 0
    assert "drained; stopping" in server.output


def test_grace_period_bounds_the_drain(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION)
    server = funcd(str(folder), "--grace", "1")

    def slow_call() -> None:
        with contextlib.suppress(requests.ConnectionError):  # the server stops before this call ends
            requests.get(server.url + "/slow?s=8")

    t = threading.Thread(target=slow_call, daemon=True)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.proc.send_signal(15)
    code = server.proc.wait(15)
    assert time.monotonic() - started < 6
    assert code == 0
    assert "grace period of 1.0s over with 1 call(s) in flight" in server.output


def test_wsgiref_fallback_server(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION)
    server = funcd(str(folder), "--server", "wsgiref", "--max-body", "1KiB")
    assert requests.get(server.url + "/str").text == "hi"
    assert requests.post(server.url + "/x", data=b"z" * 2000).status_code == 413
    assert server.stop() == 0


def test_workers_die_with_the_supervisor(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION)
    server = funcd(str(folder), workers="2")
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    assert len(children) == 2
    server.proc.kill()  # the supervisor alone, as a crash would
    server.proc.wait()
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/str", timeout=2)
