"""Every plugin hook, against a real ``funcd run``: post hooks with the final reply, ``rejected``,
the worker and supervisor lifecycle hooks, ``routes()`` and ``outbound(call)``.

The plugin is installed as a real distribution (a module and a dist-info with its entry point) on
PYTHONPATH; it logs what its call hooks see and writes a file per process for the lifecycle hooks.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.compat_support import DROP, RETRY, SUCCESS, binding_event, dapr_stub, topic_event, wait_until
from tests.support import Server, write_function

PROBE_MODULE = """
import json, logging, os
from pathlib import Path

log = logging.getLogger("funcd_probe")
OUT = Path(os.environ["PROBE_DIR"])


def _write(name, record):
    tmp = OUT / f".{name}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.rename(OUT / name)  # atomic: the test never reads half a file


class Probe:
    name = "probe"

    def __init__(self, context):
        self.context = context

    def pre_hook(self, invocation):
        invocation.state["probe"] = "pre"

    def post_hook(self, invocation, outcome):
        event = invocation.event
        record = {
            "trigger": event.trigger.kind,
            "input": event.trigger.name,
            "id": event.id,
            "path": event.path,
            "status": outcome.status.value,
            "reply": outcome.reply,
            "pre": invocation.state.get("probe"),
        }
        log.info("probe post %s", json.dumps(record))
        invocation.response_headers["x-probe-reply"] = str(outcome.reply)

    def rejected(self, request):
        record = {
            "reason": request.reason,
            "trigger": request.trigger.kind,
            "input": request.trigger.name,
            "reply": request.reply,
            "message": request.message,
            "execution_id": request.execution_id,
            "traceparent": request.headers.get("traceparent", ""),
        }
        log.info("probe rejected %s", json.dumps(record))

    def worker_started(self, worker):
        _write(f"started-{os.getpid()}", {"pid": worker.pid, "port": worker.settings.port,
                                          "name": worker.context.name})

    def worker_stopping(self):
        _write(f"stopping-{os.getpid()}", {"pid": os.getpid()})

    @classmethod
    def supervisor_setup(cls, settings):
        _write(f"supervisor-{os.getpid()}", {"port": settings.port, "workers": settings.workers})

    @classmethod
    def worker_exited(cls, pid):
        _write(f"exited-{pid}", {"supervisor": os.getpid()})

    def routes(self):
        def probe(environ, start_response):
            body = json.dumps({"pid": os.getpid(), "path": environ["PATH_INFO"]}).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        return {"/probe": probe}

    def outbound(self, call):
        call.metadata["probe-meta"] = f"{call.kind}:{call.name}:{call.target}"
        eid = call.invocation.execution_id if call.invocation is not None else "none"
        call.headers["x-probe"] = f"{call.kind}:{eid}"
"""

ENTRY_POINTS = "[functions_framework.plugins]\nprobe = funcd_probe_plugin:Probe\n"


def install_probe(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The probe plugin as a real distribution on PYTHONPATH; the env to use and its output folder."""
    site = tmp_path / "site"
    dist = site / "funcd_probe_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "funcd_probe_plugin.py").write_text(PROBE_MODULE)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: funcd-probe-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    out = tmp_path / "probe"
    out.mkdir()
    return {"PYTHONPATH": str(site), "PROBE_DIR": str(out)}, out


def probe_record(server: Server, kind: str, **match: Any) -> dict[str, Any]:
    """The first ``probe <kind>`` record the plugin logged whose fields include ``match``."""
    prefix = f"probe {kind} "

    def matches(line: dict) -> bool:
        message = line.get("message", "")
        if not message.startswith(prefix):
            return False
        record = json.loads(message[len(prefix) :])
        return all(record.get(k) == v for k, v in match.items())

    line = server.wait_for_log(matches)
    return json.loads(line["message"][len(prefix) :])  # type: ignore[no-any-return]


HTTP_FUNCTION = """
import functions_framework as ff

def handler(context, event):
    p = event.path
    if p == "/created": return {"ok": True}, 201
    if p == "/none": return None
    if p == "/missing": raise ff.HTTPError(404, "no such thing")
    if p == "/retry": raise ff.Retry()
    if p == "/drop": raise ff.Drop()
    if p == "/bad-json": return event.data
    if p == "/boom": raise RuntimeError("boom")
    if p == "/own-timeout": raise TimeoutError("timed out")  # as a socket raises it: not funcd's timeout
    if p == "/timeout":
        import threading
        threading.Event().wait(30)
    return "ok"
"""

HOOKS = "preHooks: [probe, duration]\npostHooks: [probe, duration]\n"


@pytest.fixture
def probe_env(tmp_path):
    return install_probe(tmp_path)


# ---------------------------------------------------------------- post hooks see the final reply


@pytest.mark.parametrize(
    ("path", "status", "outcome"),
    [
        ("/ok", 200, "success"),
        ("/created", 201, "success"),
        ("/none", 204, "success"),
        ("/missing", 404, "error"),
        ("/retry", 503, "retry"),
        ("/drop", 422, "drop"),
        ("/bad-json", 400, "invalid"),
        ("/boom", 500, "error"),
        ("/own-timeout", 500, "error"),
        ("/timeout", 504, "timeout"),
    ],
)
def test_post_hooks_see_the_final_http_status(funcd, tmp_path, probe_env, path, status, outcome):
    env, _ = probe_env
    folder = write_function(tmp_path / "f", HTTP_FUNCTION, f"name: hooks\n{HOOKS}")
    server = funcd(str(folder), "--timeout", "0.5", env=env)
    r = requests.post(server.url + path, data=b"{", headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["x-probe-reply"] == str(status)
    assert float(r.headers["x-funcd-duration"]) >= 0  # the duration plugin, on the same API
    record = probe_record(server, "post", path=path)
    assert record == {
        "trigger": "http",
        "input": "http",
        "id": r.headers["function-execution-id"],
        "path": path,
        "status": outcome,
        "reply": status,
        "pre": "pre",
    }


DAPR_FUNCTION = """
import functions_framework as ff

def handler(context, event):
    action = event.data.get("action") if isinstance(event.data, dict) else None
    if action == "retry": raise ff.Retry()
    if action == "drop": raise ff.Drop()
    if action == "boom": raise RuntimeError("boom")
    if action == "send": context.send({"from": event.id}, output="out")
    if action == "save": context.state("kv").save("k", {"from": event.id})
    if action == "call": context.send("ping", output="sink")
    return None
"""

DAPR_CONTEXT = f"""
name: hooks-dapr
triggers:
  http: {{port: 8080}}
  dapr:
    - {{name: msg, type: pubsub.redis, topic: orders}}
    - {{name: cron, type: bindings.cron}}
outputs:
  out: {{componentName: msg, componentType: pubsub.redis, topic: processed}}
  sink: {{componentName: store, componentType: bindings.localstorage, operation: create}}
states:
  kv: {{componentName: statestore, componentType: state.redis}}
{HOOKS}"""


@pytest.fixture
def dapr_app(funcd, tmp_path, probe_env, dapr_api):
    env, _ = probe_env
    folder = write_function(tmp_path / "f", DAPR_FUNCTION, DAPR_CONTEXT)
    server = funcd(
        str(folder),
        "--dapr-port",
        "0",
        "--dapr-address",
        dapr_api.address,
        "--max-body",
        "4KiB",
        env={**env, **dapr_api.env()},
    )
    channel, stub = dapr_stub(server)
    yield server, stub
    channel.close()


def test_post_hooks_see_the_ack_of_grpc_deliveries(dapr_app):
    server, stub = dapr_app
    for event_id, action, status, ack in [
        ("e-ok", "none", SUCCESS, "SUCCESS"),
        ("e-retry", "retry", RETRY, "RETRY"),
        ("e-drop", "drop", DROP, "DROP"),
        ("e-boom", "boom", RETRY, "RETRY"),
    ]:
        reply = stub.OnTopicEvent(topic_event(json.dumps({"action": action}).encode(), event_id=event_id))
        assert reply.status == status
        record = probe_record(server, "post", id=event_id)
        assert (record["trigger"], record["input"], record["reply"]) == ("pubsub", "msg", ack), record
    bad = stub.OnTopicEvent(topic_event(b"{not json", event_id="e-bad"))
    assert bad.status == DROP
    record = probe_record(server, "post", id="e-bad")
    assert (record["status"], record["reply"]) == ("invalid", "DROP")
    stub.OnBindingEvent(binding_event("cron", b"", {"id": "b-1"}))
    assert probe_record(server, "post", id="b-1")["reply"] == "SUCCESS"


def test_rejected_sees_an_oversized_grpc_delivery(dapr_app):
    server, stub = dapr_app
    big = topic_event(b"x" * 5000, event_id="too-big", content_type="application/octet-stream")
    assert stub.OnTopicEvent(big).status == DROP
    record = probe_record(server, "rejected", reason="too_large")
    assert (record["trigger"], record["input"], record["reply"], record["execution_id"]) == (
        "pubsub",
        "msg",
        "DROP",
        "too-big",
    )
    assert "5000 bytes exceeds the limit of 4096 bytes" in record["message"]


# ---------------------------------------------------------------- rejected, over HTTP


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def http_protocol_app(funcd, tmp_path, probe_env):
    env, _ = probe_env
    folder = write_function(tmp_path / "f", DAPR_FUNCTION, DAPR_CONTEXT)
    return funcd(str(folder), "--app-protocol", "http", "--max-body", "1KiB", "--no-local-dapr", env=env)


def test_rejected_sees_a_413(http_protocol_app):
    server = http_protocol_app
    r = requests.post(server.url + "/x", data=b"x" * 2048, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 413
    record = probe_record(server, "rejected", reason="too_large", trigger="http")
    assert record["reply"] == 413
    assert record["execution_id"] == r.headers["function-execution-id"]
    assert record["traceparent"] == TRACEPARENT
    assert "exceeds the limit of 1024 bytes" in record["message"]


def test_rejected_sees_a_bad_cloudevent(http_protocol_app):
    server = http_protocol_app
    r = requests.post(
        server.url + "/x",
        data=b"{}",
        headers={"ce-specversion": "1.0", "ce-id": "1", "ce-type": "t", "content-type": "application/json"},
    )
    assert r.status_code == 400
    record = probe_record(server, "rejected", reason="bad_cloudevent")
    assert (record["trigger"], record["reply"]) == ("http", 400)
    assert "ce-source" in record["message"]


def test_rejected_sees_an_invalid_delivery_over_the_http_app_protocol(http_protocol_app):
    server = http_protocol_app
    r = requests.post(
        server.url + "/dapr/topics/msg",
        data=b"{not json",
        headers={"content-type": "application/cloudevents+json", "traceparent": TRACEPARENT},
    )
    assert (r.status_code, r.json()) == (200, {"status": "DROP"})
    record = probe_record(server, "rejected", reason="invalid_delivery")
    assert (record["trigger"], record["input"], record["reply"]) == ("pubsub", "msg", "DROP")
    assert "malformed CloudEvent JSON" in record["message"]
    assert record["traceparent"] == TRACEPARENT


def test_rejected_sees_an_oversized_delivery_over_the_http_app_protocol(http_protocol_app):
    server = http_protocol_app
    envelope = {"id": "big-1", "source": "s", "type": "t", "specversion": "1.0", "data": "x" * 2000}
    r = requests.post(
        server.url + "/dapr/topics/msg",
        data=json.dumps(envelope),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert (r.status_code, r.json()) == (200, {"status": "DROP"})
    record = probe_record(server, "rejected", reason="too_large")
    assert (record["trigger"], record["input"], record["reply"], record["execution_id"]) == (
        "pubsub",
        "msg",
        "DROP",
        "big-1",
    )
    huge = requests.post(
        server.url + "/dapr/topics/msg",
        data=b"x" * (200 * 1024),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert (huge.status_code, huge.json()) == (200, {"status": "DROP"})
    assert len([1 for x in server.json_logs() if x["message"].startswith("probe rejected ")]) >= 1
    probe_record(server, "rejected", reason="too_large", execution_id="")


def test_post_hooks_see_the_ack_over_the_http_app_protocol(http_protocol_app):
    server = http_protocol_app
    for event_id, action, ack in [("h-ok", "none", "SUCCESS"), ("h-retry", "retry", "RETRY")]:
        envelope = {
            "id": event_id,
            "source": "s",
            "type": "t",
            "specversion": "1.0",
            "data": {"action": action},
        }
        r = requests.post(
            server.url + "/dapr/topics/msg",
            data=json.dumps(envelope),
            headers={"content-type": "application/cloudevents+json"},
        )
        assert r.json() == {"status": ack}
        assert probe_record(server, "post", id=event_id)["reply"] == ack


# ---------------------------------------------------------------- lifecycle hooks


def files(out: Path, prefix: str) -> dict[int, dict]:
    return {int(p.name.split("-", 1)[1]): json.loads(p.read_text()) for p in out.glob(f"{prefix}-*")}


def test_worker_and_supervisor_lifecycle_hooks(funcd, tmp_path, probe_env):
    env, out = probe_env
    folder = write_function(tmp_path / "f", HTTP_FUNCTION, f"name: lifecycle\n{HOOKS}")
    server = funcd(str(folder), env=env, workers="2")
    started = wait_until(lambda: (lambda f: f if len(f) == 2 else None)(files(out, "started")), "2 workers")
    for pid, record in started.items():
        assert record == {"pid": pid, "port": server.port, "name": "lifecycle"}
    [(supervisor_pid, setup)] = files(out, "supervisor").items()
    assert supervisor_pid == server.proc.pid
    assert setup == {"port": server.port, "workers": 2}  # the bound port, not 0
    assert set(started) & {supervisor_pid} == set()
    assert files(out, "stopping") == {} and files(out, "exited") == {}

    assert requests.get(server.url).status_code == 200
    assert server.stop(signal.SIGTERM) == 0, server.output
    assert set(files(out, "stopping")) == set(started), server.output
    exited = files(out, "exited")
    assert set(exited) == set(started), server.output
    assert all(record == {"supervisor": supervisor_pid} for record in exited.values())


def test_worker_hooks_with_the_single_process_server(funcd, tmp_path, probe_env):
    env, out = probe_env
    folder = write_function(tmp_path / "f", HTTP_FUNCTION, f"name: single\n{HOOKS}")
    server = funcd(str(folder), "--server", "wsgiref", env=env)
    assert set(files(out, "started")) == {server.proc.pid}
    assert requests.get(server.url).status_code == 200
    assert server.stop() == 0, server.output
    assert set(files(out, "stopping")) == {server.proc.pid}, server.output


def test_worker_exited_sees_every_worker_when_one_is_killed(funcd, tmp_path, probe_env):
    """A worker that dies stops the whole server (the orchestrator restarts it); worker_exited is
    called for the dead worker and for the one stopped with it, which alone ran worker_stopping."""
    env, out = probe_env
    folder = write_function(tmp_path / "f", HTTP_FUNCTION, f"name: crash\n{HOOKS}")
    server = funcd(str(folder), env=env, workers="2")
    started = wait_until(lambda: (lambda f: f if len(f) == 2 else None)(files(out, "started")), "2 workers")
    killed, survivor = sorted(started)
    os.kill(killed, signal.SIGKILL)
    assert server.proc.wait(30) != 0, server.output
    assert set(files(out, "exited")) == {killed, survivor}, server.output
    assert set(files(out, "stopping")) == {survivor}, server.output


# ---------------------------------------------------------------- routes


def test_routes_are_served_on_the_http_port(funcd, tmp_path, probe_env):
    env, _ = probe_env
    folder = write_function(tmp_path / "f", HTTP_FUNCTION, f"name: routes\n{HOOKS}")
    server = funcd(str(folder), env=env)
    r = requests.get(server.url + "/probe")
    assert r.status_code == 200 and r.json()["path"] == "/probe"
    assert "x-probe-reply" not in r.headers  # a plugin route is not a call of the function
    assert requests.get(server.url + "/probe/deeper").text == "ok"  # exact paths only


ASYNC_ONLY_CONTEXT = f"""
name: async-only
triggers:
  dapr:
    - {{name: msg, type: pubsub.redis, topic: orders}}
{HOOKS}"""


def test_routes_are_served_for_an_async_only_function(funcd, tmp_path, probe_env, dapr_api):
    env, _ = probe_env
    folder = write_function(tmp_path / "f", DAPR_FUNCTION, ASYNC_ONLY_CONTEXT)
    server = funcd(str(folder), "--dapr-port", "0", "--dapr-address", dapr_api.address, env=env)
    r = requests.get(server.url + "/probe")
    assert r.status_code == 200 and r.json()["path"] == "/probe"
    nothing = requests.get(server.url + "/")
    assert nothing.status_code == 404 and "no HTTP trigger" in nothing.json()["error"]["message"]
    channel, stub = dapr_stub(server)
    try:
        assert stub.OnTopicEvent(topic_event(b"{}", event_id="a-1")).status == SUCCESS
    finally:
        channel.close()
    assert probe_record(server, "post", id="a-1")["reply"] == "SUCCESS"


# ---------------------------------------------------------------- outbound


def test_outbound_adds_dapr_metadata_and_grpc_headers(dapr_app, dapr_api):
    server, stub = dapr_app
    for event_id, action in [("o-send", "send"), ("o-call", "call"), ("o-save", "save")]:
        data = json.dumps({"action": action}).encode()
        assert stub.OnTopicEvent(topic_event(data, event_id=event_id)).status == SUCCESS, server.output
    [published] = dapr_api.published
    assert published.metadata["probe-meta"] == "publish:out:processed"
    [invoked] = dapr_api.invoked
    assert invoked.metadata["probe-meta"] == "binding:sink:create"
    headers = {c.method: c.grpc_metadata.get("x-probe") for c in dapr_api.calls}
    assert headers == {
        "PublishEvent": "publish:o-send",
        "InvokeBinding": "binding:o-call",
        "SaveState": "state:o-save",
    }
    assert json.loads(dapr_api.states["statestore"]["k"]) == {"from": "o-save"}
