"""The async (Dapr) runtime end to end: ``funcd run`` behind a real daprd, with Redis streams for
pub/sub and Redis for state.

What the handler sees is recorded in a file (one JSON line per delivery, appended with O_APPEND), so
that the record survives ``kill -9``. What lands on topics is read straight from the Redis streams,
and state straight from the Redis hash daprd writes. Every wait polls a condition with a deadline.

Dapr facts these tests rely on (read in dapr/dapr v1.18.2 ``pkg/runtime/subscription``,
``pkg/channel/http`` and components-contrib v1.18.3 ``pubsub/redis``, and checked here end to end):

* RETRY (or a handler error, or an app that cannot be reached) is retried in daprd by the pub/sub
  component's inbound resiliency retry policy; there is no built-in retry. When the retries run out,
  the message goes to the subscription's dead-letter topic if it has one; without one, the error
  goes back to the Redis component, which since Dapr 1.17 *acknowledges* it (components-contrib
  ``processMessage``: it acks whatever the handler returns, unless the message's
  ``processingTimeout`` ran out first). Redis redelivers a pending message only when daprd never
  answered (it crashed, or the delivery outlasted ``processingTimeout``). So at-least-once across an
  app crash needs an inbound retry policy that outlasts the crash (``maxRetries: -1`` here); in
  Dapr 1.15 the component left a failed message pending and redelivered it.
* ``redeliverInterval`` must be given in milliseconds ("500"): its settings field is tagged
  ``mapstructure:"-"``, so a duration string ("500ms") is ignored and the 15 s default applies.
  ``processingTimeout`` takes both forms; we use milliseconds for both.
* DROP is not retried, and a dropped message *is* sent to the dead-letter topic when the
  subscription has one.
* daprd's HTTP app channel races when it calls the app concurrently (1.15.4 and still 1.18.2):
  ``invokeMethodV1`` calls the shared app middleware pipeline with a per-call root handler, and
  ``pkg/middleware/http/pipeline.go`` stores that root in the pipeline (``p.root = root;
  p.buildChain()``), so one call can run another's closure. A call that fails (the app is gone)
  then records its error in the other call's variable and reads its own untouched recorder (200,
  empty body, no error): daprd logs "skipping status check due to empty response body" (debug) and
  acknowledges a message the app never got. Every HTTP-protocol daprd here runs with
  ``--app-max-concurrency 1``: the channel semaphore is taken before the pipeline call, which
  closes the race. ``test_http_app_channel_with_concurrent_calls_acks_only_handled_events`` proves
  that setting; without it (7 events lost of 3000) or with 2 (2 lost) the same test loses events.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.stack_dapr import DaprdFactory, Sidecar, component
from tests.e2e.stack_procs import free_port
from tests.e2e.stack_redis import RedisServer
from tests.support import FUNCD, receiving_worker, write_function

HOST = "127.0.0.1"
HTTP_APP_MAX_CONCURRENCY = 1
"""daprd's ``--app-max-concurrency`` for the HTTP app protocol here (see the module docstring)."""

FUNCTION = '''
import json
import os
import time

import functions_framework as ff

RECORD = os.environ["FUNCD_E2E_RECORD"]
INSTANCE = os.environ.get("FUNCD_E2E_INSTANCE", "1")


def record(**fields):
    """One JSON line per call, appended in one write(2): it survives kill -9."""
    line = json.dumps({**fields, "instance": INSTANCE, "pid": os.getpid()}) + "\\n"
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def attempts(key):
    try:
        with open(RECORD) as f:
            return sum(1 for line in f if json.loads(line).get("key") == key)
    except FileNotFoundError:
        return 0


def handler(context, event):
    data = event.data  # malformed data raises EventDataError here: funcd acks it "on invalid"
    if not isinstance(data, dict):
        raise ff.Drop(f"expected a JSON object, got {type(data).__name__}")
    key = str(data.get("key") or event.id)
    action = data.get("action", "order")
    if action == "count":  # the load test: no reads of the record file; CPU-bound for "cpu" seconds
        end = time.thread_time() + data.get("cpu", 0)
        while time.thread_time() < end:
            pass
        record(key=key, id=event.id, phase="done")
        return None
    seen = attempts(key)
    record(key=key, id=event.id, topic=event.topic, input=event.trigger.name, attempt=seen + 1,
           phase="start")
    if action == "retry-twice" and seen < 2:
        raise ff.Retry(f"attempt {seen + 1} of {key}")
    if action == "poison":
        raise RuntimeError(f"poison message {key}")
    if action == "drop":
        raise ff.Drop(f"{key} is not wanted")
    if action == "slow":  # slow until the test opens the gate (at most data["seconds"])
        gate, deadline = os.environ["FUNCD_E2E_GATE"], time.monotonic() + float(data["seconds"])
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        record(key=key + ":done", id=event.id, phase="done")
    if action == "order":
        totals = context.state("store")
        name = "total-" + data["customer"]
        total = totals.get(name, 0) + data["amount"]
        totals.save(name, total)
        context.send({**data, "total": total}, output="next")
        context.send({"key": key, "total": total}, output="archive", metadata={"fileName": key + ".json"})
    return {"ok": True}
'''


def context_yaml(tok: str, dead_letter: bool = True, plain: bool = True, stores: bool = True) -> str:
    """The function's context: orders on ``pubsub`` (resiliency retries, dead-letter topic), retries on
    ``plain`` (no resiliency, no dead-letter topic: Redis redelivers), outputs and a state store."""
    dlq = f", deadLetterTopic: dead-{tok}" if dead_letter else ""
    lines = [
        "name: e2e-async",
        "triggers:",
        "  dapr:",
        f"    - {{name: pubsub, type: pubsub.redis, topic: orders-{tok}{dlq}}}",
    ]
    if plain:
        lines.append(f"    - {{name: plain, type: pubsub.redis, topic: retries-{tok}}}")
    if stores:
        lines += [
            "outputs:",
            f"  next: {{componentName: pubsub, componentType: pubsub.redis, topic: processed-{tok}}}",
            "  archive: {componentName: archive, componentType: bindings.localstorage, operation: create}",
            "states:",
            "  store: {componentName: store, componentType: state.redis}",
        ]
    return "\n".join(lines) + "\n"


def redis_pubsub(name: str, redis: RedisServer, consumer: str, **settings: Any) -> dict[str, Any]:
    meta = {"redisHost": redis.address, "redisPassword": "", "enableTLS": "false", "consumerID": consumer}
    return component(name, "pubsub.redis", {**meta, **settings})


def resiliency(component_name: str, max_retries: int) -> dict[str, Any]:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "e2e-resiliency"},
        "spec": {
            "policies": {
                "retries": {"inbound": {"policy": "constant", "duration": "100ms", "maxRetries": max_retries}}
            },
            "targets": {"components": {component_name: {"inbound": {"retry": "inbound"}}}},
        },
    }


def stack_resources(
    redis: RedisServer, tok: str, archive: Path, max_retries: int = 3
) -> list[dict[str, Any]]:
    return [
        redis_pubsub("pubsub", redis, f"c-{tok}", processingTimeout="10000", redeliverInterval="1000"),
        redis_pubsub("plain", redis, f"p-{tok}", processingTimeout="1500", redeliverInterval="500"),
        component(
            "store", "state.redis", {"redisHost": redis.address, "redisPassword": "", "enableTLS": "false"}
        ),
        component("archive", "bindings.localstorage", {"rootPath": str(archive)}),
        resiliency("pubsub", max_retries),
    ]


# --- funcd in its own process group ------------------------------------------------------------


class Funcd:
    """``funcd run`` as the leader of a new process group: its supervisor and workers die together
    on ``kill()`` (SIGKILL to the group), as in a container crash."""

    def __init__(self, args: list[str], env: Mapping[str, str], port: int, log_path: Path) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_") and k != "APP_API_TOKEN"}
        full_env.update({"PYTHONUNBUFFERED": "1", **env})
        self.port = port
        self.log_path = log_path
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*FUNCD, "run", *args, "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("a") as log:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                log.write(line)
                log.flush()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def json_logs(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def messages(self, level: str | None = None) -> list[str]:
        return [x.get("message", "") for x in self.json_logs() if level is None or x.get("level") == level]

    def wait_ready(self, timeout: float = 30) -> Funcd:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"funcd exited with {self.proc.returncode}:\n{self.output}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"funcd not ready within {timeout}s:\n{self.output}")

    def kill(self) -> None:
        """SIGKILL the whole process group (supervisor and workers) and reap the leader."""
        if self.proc.poll() is None or self._group_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while self._group_alive():  # orphaned workers are reaped by init
            assert time.monotonic() < deadline, f"funcd's process group {self.proc.pid} outlived SIGKILL"
            time.sleep(0.02)
        self._reader.join(5)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def wait(self, timeout: float = 60) -> int:
        """Wait for funcd to exit and for its last output lines; its exit code."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM the leader (funcd's supervisor) and wait for it to exit."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)


class FuncdFactory:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Funcd] = []

    def __call__(
        self, folder: Path, *args: str, env: Mapping[str, str], port: int | None = None, ready: bool = True
    ) -> Funcd:
        n = len(self.started) + 1
        server = Funcd([str(folder), *args], env, port or free_port(), self.workdir / f"funcd-{n}.log")
        self.started.append(server)
        return server.wait_ready() if ready else server

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"funcd #{i + 1} output", "\n".join(s.lines[-60:])) for i, s in enumerate(self.started)]

    def stop_all(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.terminate(timeout=10)
            server.kill()


@pytest.fixture
def funcd_group(tmp_path: Path) -> Iterator[FuncdFactory]:
    """Start ``funcd run`` in a new process group; whatever is left is stopped by process group."""
    factory = FuncdFactory(tmp_path)
    yield factory
    factory.stop_all()


# --- what the handler saw, what is on the streams --------------------------------------------------


class Record:
    """The JSON lines the handler appended."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by kill -9 (never seen; O_APPEND writes are whole)
                continue
        return out

    def attempts(self, key: str) -> int:
        return sum(1 for e in self.entries() if e.get("key") == key)

    def keys(self) -> Counter[str]:
        return Counter(e["key"] for e in self.entries())


def stream(redis: RedisServer, name: str) -> list[dict[str, Any]]:
    """The CloudEvents on a Redis stream, in order (what daprd's redis pub/sub wrote)."""
    out = []
    for _entry_id, fields in redis.command("XRANGE", name, "-", "+") or []:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        out.append(json.loads(values[b"data"]))
    return out


def pending(redis: RedisServer, name: str, group: str) -> int:
    """Messages read by the consumer group and not acknowledged yet."""
    try:
        return int(redis.command("XPENDING", name, group)[0])
    except Exception:  # no such stream or group yet
        return -1


def publish(sidecar: Sidecar, pubsub: str, topic: str, data: Any) -> None:
    """Publish JSON through daprd's HTTP API."""
    r = requests.post(f"{sidecar.http_url}/v1.0/publish/{pubsub}/{topic}", json=data, timeout=10)
    assert r.status_code == 204, r.text


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None while it is missing or still being written."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def bulk_publish(sidecar: Sidecar, pubsub: str, topic: str, events: list[dict[str, Any]]) -> None:
    entries = [
        {"entryId": str(i), "event": e, "contentType": "application/json"} for i, e in enumerate(events)
    ]
    r = requests.post(
        f"{sidecar.http_url}/v1.0-alpha1/publish/bulk/{pubsub}/{topic}", json=entries, timeout=60
    )
    assert r.status_code == 204, r.text


def xadd_cloudevent(redis: RedisServer, topic: str, ce: Mapping[str, Any]) -> None:
    """Put a CloudEvent on the stream as another producer would, bypassing daprd's publish API."""
    redis.command("XADD", topic, "*", "data", json.dumps(ce))


class Stack:
    """A daprd and the ``funcd run`` behind it; ``restart`` starts funcd again on the same ports."""

    def __init__(
        self,
        daprd: DaprdFactory,
        funcd_group: FuncdFactory,
        folder: Path,
        resources: list[dict[str, Any]],
        protocol: str,
        env: Mapping[str, str],
        *args: str,
    ) -> None:
        # daprd first (it needs the app port), then funcd on that port, then daprd's full health:
        # the app is reachable and its subscriptions are active.
        self.funcd_group = funcd_group
        self.app_port = free_port()
        limit = ["--app-max-concurrency", str(HTTP_APP_MAX_CONCURRENCY)] if protocol == "http" else []
        self.sidecar = daprd(
            self.app_port, resources=resources, app_protocol=protocol, wait="outbound", extra_args=limit
        )
        port_args = ["--dapr-port", str(self.app_port)] if protocol == "grpc" else []
        self.args = [
            str(folder),
            "--app-protocol",
            protocol,
            *port_args,
            "--dapr-address",
            self.sidecar.grpc_address,
            *args,
        ]
        self.env = {**self.sidecar.env(), **env}
        self.port = free_port() if protocol == "grpc" else self.app_port
        self.server = self.start()
        self.sidecar.wait_ready(full=True, timeout=60)

    def start(self, **env: str) -> Funcd:
        folder, *args = self.args
        return self.funcd_group(Path(folder), *args, env={**self.env, **env}, port=self.port)

    def restart(self, **env: str) -> Funcd:
        self.server = self.start(**env)
        return self.server


def start_stack(
    daprd: DaprdFactory,
    funcd_group: FuncdFactory,
    folder: Path,
    resources: list[dict[str, Any]],
    protocol: str,
    env: Mapping[str, str],
    *args: str,
) -> tuple[Sidecar, Funcd]:
    stack = Stack(daprd, funcd_group, folder, resources, protocol, env, *args)
    return stack.sidecar, stack.server


def poll(check: Callable[[], Any], what: str, timeout: float = 30, server: Funcd | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if server is not None and server.proc.poll() is not None:
            raise AssertionError(f"funcd exited with {server.proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


# --- delivery, outputs, state, retry, dead letter ------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_delivery_outputs_state_retry_and_dead_letter(
    protocol: str, tmp_path: Path, redis_server: RedisServer, daprd: DaprdFactory, funcd_group: FuncdFactory
) -> None:
    tok = uuid.uuid4().hex[:8]
    archive = tmp_path / "archive"
    archive.mkdir()
    folder = write_function(tmp_path / "fn", FUNCTION, context_yaml(tok))
    record = Record(tmp_path / "record.jsonl")
    sidecar, server = start_stack(
        daprd,
        funcd_group,
        folder,
        stack_resources(redis_server, tok, archive),
        protocol,
        {"FUNCD_E2E_RECORD": str(record.path)},
        "--workers",
        "1",
    )
    orders, dead = f"orders-{tok}", f"dead-{tok}"

    # An event published to Redis streams through daprd reaches the handler, which keeps a total in
    # state and sends to a topic and to a binding.
    publish(sidecar, "pubsub", orders, {"key": "o1", "customer": "ada", "amount": 5})
    assert poll(lambda: read_json(archive / "o1.json"), "o1 to be archived", server=server) == {
        "key": "o1",
        "total": 5,
    }
    publish(sidecar, "pubsub", orders, {"key": "o2", "customer": "ada", "amount": 7})
    assert poll(lambda: read_json(archive / "o2.json"), "o2 to be archived", server=server) == {
        "key": "o2",
        "total": 12,
    }
    [first, second] = [e for e in record.entries() if e["key"] in ("o1", "o2")]
    assert (first["topic"], first["input"], first["key"], second["key"]) == (orders, "pubsub", "o1", "o2")
    processed = poll(
        lambda: (events := stream(redis_server, f"processed-{tok}")) and len(events) == 2 and events,
        "two events on the next topic",
    )
    assert [(e["data"]["key"], e["data"]["total"]) for e in processed] == [("o1", 5), ("o2", 12)]
    assert processed[0]["datacontenttype"] == "application/json"
    # The state lives in Redis, in the hash daprd's redis state store writes (key prefix: app id).
    stored = redis_server.command("HGET", f"{sidecar.app_id}||total-ada", "data")
    assert json.loads(stored) == 12

    # RETRY twice, then the third delivery succeeds: daprd's inbound resiliency policy retries ...
    publish(sidecar, "pubsub", orders, {"key": "r1", "action": "retry-twice"})
    # ... and without one, the Redis streams component acknowledges it after the one failed delivery
    # (since Dapr 1.17): RETRY without an inbound retry policy and a dead-letter topic loses the event.
    publish(sidecar, "plain", f"retries-{tok}", {"key": "r2", "action": "retry-twice"})
    # A poison message is retried (maxRetries 3) and then lands on the dead-letter topic.
    publish(sidecar, "pubsub", orders, {"key": "p1", "action": "poison"})
    # A dropped message is not retried; Dapr sends it to the dead-letter topic too.
    publish(sidecar, "pubsub", orders, {"key": "d1", "action": "drop"})

    def dead_keys() -> set[str]:
        return {e["data"].get("key") for e in stream(redis_server, dead)}

    poll(lambda: {"p1", "d1"} <= dead_keys(), "p1 and d1 on the dead-letter topic", server=server)
    poll(
        lambda: record.attempts("r1") == 3 and record.attempts("r2") == 1,
        "r1 to be delivered 3 times and r2 once",
        server=server,
    )
    poll(lambda: pending(redis_server, orders, f"c-{tok}") == 0, "every order to be acknowledged")
    poll(lambda: pending(redis_server, f"retries-{tok}", f"p-{tok}") == 0, "r2 to be acknowledged")
    assert record.attempts("p1") == 4  # the first delivery and 3 retries
    assert record.attempts("d1") == 1
    assert record.attempts("r1") == 3 and record.attempts("r2") == 1
    assert dead_keys() == {"p1", "d1"}
    [p1] = [e for e in stream(redis_server, dead) if e["data"]["key"] == "p1"]
    assert p1["topic"] == orders and p1["data"] == {"key": "p1", "action": "poison"}

    errors = server.messages("error")
    assert any("the handler raised RuntimeError: poison message p1" in m for m in errors), errors
    assert any("the handler dropped the event" in m for m in server.messages("info"))
    assert server.proc.poll() is None


# --- bad input ---------------------------------------------------------------------------------


def cloudevent(tok: str, event_id: str, content_type: str, payload: bytes | str) -> dict[str, Any]:
    """A CloudEvent as another producer might put it on the stream; ``payload`` bytes go base64."""
    ce: dict[str, Any] = {
        "specversion": "1.0", "id": event_id, "source": "e2e-producer", "type": "com.example.order",
        "datacontenttype": content_type, "topic": f"orders-{tok}", "pubsubname": "pubsub",
    }  # fmt: skip
    if isinstance(payload, bytes):
        ce["data_base64"] = base64.b64encode(payload).decode()
    else:
        ce["data_base64"] = payload  # deliberately not base64
    return ce


MAX_BODY = 64 * 1024

BAD_EVENTS: dict[str, tuple[str, bytes | str, str]] = {
    # id: (datacontenttype, payload, what funcd says)
    "bad-json": ("application/json", b'{"key": "bad-json", "amount": ', "malformed JSON body"),
    "xml-as-json": ("application/json", b"<order><amount>5</amount></order>", "malformed JSON body"),
    "binary-as-text": ("text/plain; charset=utf-8", b"\xff\xfe\xfa\x00\x81", "does not decode as text/plain"),
}
TOO_BIG: dict[str, tuple[str, bytes | str, str]] = {
    "too-big": ("application/octet-stream", b"\x00" * (MAX_BODY + 1), "exceeds the limit of 65536 bytes"),
}
# Only the HTTP app protocol gets the CloudEvent as it is; over gRPC daprd decodes data_base64 itself
# (and retries, then dead-letters, a message whose data_base64 does not decode).
BAD_HTTP_ONLY: dict[str, tuple[str, bytes | str, str]] = {
    "bad-base64": ("application/json", "%%% not base64 %%%", "malformed CloudEvent data_base64")
}


@pytest.mark.parametrize(
    ("protocol", "on_invalid"),
    [("grpc", "drop"), ("grpc", "retry"), ("http", "drop"), ("http", "retry")],
)
def test_bad_input_is_logged_and_acked_as_configured_and_serving_goes_on(
    protocol: str,
    on_invalid: str,
    tmp_path: Path,
    redis_server: RedisServer,
    daprd: DaprdFactory,
    funcd_group: FuncdFactory,
) -> None:
    tok = uuid.uuid4().hex[:8]
    archive = tmp_path / "archive"
    archive.mkdir()
    folder = write_function(tmp_path / "fn", FUNCTION, context_yaml(tok))
    record = Record(tmp_path / "record.jsonl")
    sidecar, server = start_stack(
        daprd,
        funcd_group,
        folder,
        stack_resources(redis_server, tok, archive),
        protocol,
        {"FUNCD_E2E_RECORD": str(record.path)},
        "--workers",
        "1",
        "--on-invalid",
        on_invalid,
        "--max-body",
        str(MAX_BODY),
    )
    # Over HTTP an oversized event is answered 413 instead: see test_oversized_event_over_http_app_protocol.
    bad = {**BAD_EVENTS, **(BAD_HTTP_ONLY if protocol == "http" else TOO_BIG)}
    for event_id, (content_type, payload, _) in bad.items():
        xadd_cloudevent(redis_server, f"orders-{tok}", cloudevent(tok, event_id, content_type, payload))
    # The server keeps serving: a good event after the bad ones is handled.
    publish(sidecar, "pubsub", f"orders-{tok}", {"key": "ok", "customer": "bob", "amount": 1})
    poll(lambda: read_json(archive / "ok.json"), "the good event to be handled", server=server)

    # Dropped or retried 3 times, every bad event ends on the dead-letter topic, and is acknowledged.
    def dead_ids() -> set[str]:
        return {e["id"] for e in stream(redis_server, f"dead-{tok}")}

    poll(lambda: set(bad) <= dead_ids(), f"{sorted(bad)} on the dead-letter topic", server=server)
    poll(lambda: pending(redis_server, f"orders-{tok}", f"c-{tok}") == 0, "every event to be acknowledged")

    ack = on_invalid.upper()
    warnings = server.messages("warning")
    for event_id, (_, _, reason) in bad.items():
        # A CloudEvent that does not parse is logged without its id (see the report on dapr_http).
        named = repr(event_id) if event_id not in BAD_HTTP_ONLY else ""
        lines = [m for m in warnings if named in m and reason in m and f"ack {ack}" in m]
        # One delivery when dropped; the first delivery and the resiliency policy's 3 retries when retried.
        assert len(lines) == (1 if on_invalid == "drop" else 4), (event_id, warnings)
    assert set(record.keys()) == {"ok"}  # no bad event reached the handler's logic
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    assert server.proc.poll() is None


def test_oversized_event_over_http_app_protocol(
    tmp_path: Path, redis_server: RedisServer, daprd: DaprdFactory, funcd_group: FuncdFactory
) -> None:
    tok = uuid.uuid4().hex[:8]
    archive = tmp_path / "archive"
    archive.mkdir()
    folder = write_function(tmp_path / "fn", FUNCTION, context_yaml(tok))
    record = Record(tmp_path / "record.jsonl")
    _, server = start_stack(
        daprd,
        funcd_group,
        folder,
        stack_resources(redis_server, tok, archive),
        "http",
        {"FUNCD_E2E_RECORD": str(record.path)},
        "--workers",
        "1",
        "--on-invalid",
        "drop",
        "--max-body",
        str(MAX_BODY),
    )
    [(event_id, (content_type, payload, reason))] = TOO_BIG.items()
    xadd_cloudevent(redis_server, f"orders-{tok}", cloudevent(tok, event_id, content_type, payload))
    poll(
        lambda: event_id in {e["id"] for e in stream(redis_server, f"dead-{tok}")},
        "the dead-letter topic",
        server=server,
    )
    lines = [m for m in server.messages("warning") if repr(event_id) in m and reason in m and "ack DROP" in m]
    assert len(lines) == 1, server.messages("warning")


# --- at least once under failure ------------------------------------------------------------------

LOAD = 2000


@pytest.mark.parametrize("victim", ["group", "worker"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_every_event_is_handled_at_least_once_across_kill_9(
    protocol: str,
    victim: str,
    tmp_path: Path,
    redis_server: RedisServer,
    daprd: DaprdFactory,
    funcd_group: FuncdFactory,
) -> None:
    """kill -9 of funcd's process group (a container crash), or of one of its 2 workers mid-event:
    over gRPC the one the deliveries are relayed to, so that its calls fail in the worker holding
    daprd's connection (both workers handle deliveries before the kill); over HTTP the one daprd
    calls (with --app-max-concurrency 1 it calls one at a time, on one connection)."""
    tok = uuid.uuid4().hex[:8]
    folder = write_function(
        tmp_path / "fn", FUNCTION, context_yaml(tok, dead_letter=False, plain=False, stores=False)
    )
    record = Record(tmp_path / "record.jsonl")
    # A fixed consumer group; pending messages are redelivered after 2 s. daprd keeps running across
    # the crash, as the sidecar does when only the app container restarts.
    # The inbound retry policy without limit keeps calls that fail while the app is down in daprd until
    # it is back: the Redis component acknowledges whatever the delivery returns (Dapr 1.17 and later).
    resources = [
        redis_pubsub("pubsub", redis_server, f"c-{tok}", processingTimeout="2000", redeliverInterval="500"),
        resiliency("pubsub", -1),
    ]
    stack = Stack(
        daprd,
        funcd_group,
        folder,
        resources,
        protocol,
        {"FUNCD_E2E_RECORD": str(record.path)},
        "--workers",
        "2",
    )
    # A CPU-bound handler (1 ms), so that over gRPC the deliveries are relayed to the other worker.
    events = [{"key": f"e{i}", "action": "count", "seq": i, "cpu": 0.001} for i in range(LOAD)]
    topic, group = f"orders-{tok}", f"c-{tok}"
    # The first half, then kill -9 while it is being handled; the second half arrives while the
    # function is down.
    for i in range(0, LOAD // 2, 250):
        bulk_publish(stack.sidecar, "pubsub", topic, events[i : i + 250])
    poll(lambda: len(record.entries()) >= LOAD // 8, f"{LOAD // 8} events handled", server=stack.server)
    workers = {e["pid"] for e in record.entries()}
    if protocol == "grpc":  # over HTTP daprd calls the app one at a time: one worker takes them
        assert len(workers) == 2, f"deliveries reached {len(workers)} of the 2 workers"
    if victim == "group":
        stack.server.kill()  # SIGKILL to funcd's process group: the supervisor and both workers
    else:
        dies = workers - {receiving_worker(workers, stack.app_port)} if protocol == "grpc" else workers
        os.kill(min(dies), signal.SIGKILL)
        # A worker that dies stops funcd (its container restarts); the other worker gets --grace.
        assert stack.server.wait(60) != 0
        stack.server.kill()
    before = record.keys()
    for i in range(LOAD // 2, LOAD, 250):
        bulk_publish(stack.sidecar, "pubsub", topic, events[i : i + 250])

    stack.restart(FUNCD_E2E_INSTANCE="2")
    try:
        poll(
            lambda: len(record.keys()) == LOAD, f"all {LOAD} events handled", timeout=90, server=stack.server
        )
        poll(lambda: pending(redis_server, topic, group) == 0, "every event to be acknowledged")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{lost_events(redis_server, topic, group, record, LOAD)}") from None

    entries = record.entries()
    assert {e["key"] for e in entries} == {f"e{i}" for i in range(LOAD)}
    assert len({e["id"] for e in entries}) == LOAD  # one CloudEvent id per event, none lost
    after = Counter(e["key"] for e in entries if e["instance"] == "2")
    assert after, "the restarted function handled nothing"
    assert set(before) | set(after) == set(record.keys())
    duplicates = len(entries) - LOAD  # handled before the crash, not acknowledged, redelivered
    print(f"handled before the crash: {len(before)}; after: {sum(after.values())}; duplicates: {duplicates}")


# The HTTP app channel race (module docstring), checked on the pinned daprd: 3000 events, the Redis
# component's concurrency at 50, funcd with 2 workers, a kill -9 halfway through the second half, and an
# inbound retry policy without limit, so that a call that fails is retried and never acknowledged.
# Every event acknowledged and not handled is then a failed call that daprd took for a success.
# Measured on daprd 1.18.2: no --app-max-concurrency lost 7 events, --app-max-concurrency 2 lost 2,
# --app-max-concurrency 1 lost none. 1 is the setting that holds; this test keeps proving it.
RACE_LOAD = 3000


def test_http_app_channel_with_concurrent_calls_acks_only_handled_events(
    tmp_path: Path, redis_server: RedisServer, daprd: DaprdFactory, funcd_group: FuncdFactory
) -> None:
    tok = uuid.uuid4().hex[:8]
    folder = write_function(
        tmp_path / "fn", FUNCTION, context_yaml(tok, dead_letter=False, plain=False, stores=False)
    )
    record = Record(tmp_path / "record.jsonl")
    resources = [
        redis_pubsub(
            "pubsub",
            redis_server,
            f"c-{tok}",
            processingTimeout="2000",
            redeliverInterval="500",
            concurrency="50",
        ),
        resiliency("pubsub", -1),  # a failed call is retried until the app answers: never acknowledged
    ]
    stack = Stack(
        daprd,
        funcd_group,
        folder,
        resources,
        "http",
        {"FUNCD_E2E_RECORD": str(record.path)},
        "--workers",
        "2",
    )
    events = [{"key": f"e{i}", "action": "count", "seq": i} for i in range(RACE_LOAD)]
    topic, group = f"orders-{tok}", f"c-{tok}"

    def settled(total: int, what: str) -> None:
        try:
            poll(lambda: len(record.keys()) >= total, what, timeout=120, server=stack.server)
            poll(
                lambda: pending(redis_server, topic, group) == 0, "every event to be acknowledged", timeout=60
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{lost_events(redis_server, topic, group, record, total)}") from None

    # 1. Load: up to 50 calls at a time.
    half = RACE_LOAD // 2
    for i in range(0, half, 250):
        bulk_publish(stack.sidecar, "pubsub", topic, events[i : i + 250])
    settled(half, f"the first {half} events handled")
    # 2. A crash under load: daprd keeps calling the app while it is down; those calls fail.
    for i in range(half, RACE_LOAD, 250):
        bulk_publish(stack.sidecar, "pubsub", topic, events[i : i + 250])
    poll(lambda: len(record.keys()) >= half + half // 8, "the second half under way", server=stack.server)
    stack.server.kill()
    stack.restart(FUNCD_E2E_INSTANCE="2")
    settled(RACE_LOAD, f"all {RACE_LOAD} events handled")
    assert set(record.keys()) == {f"e{i}" for i in range(RACE_LOAD)}
    workers = {e["pid"] for e in record.entries() if e["instance"] == "1"}
    # One connection at a time: daprd's client reuses one, so one worker of the two gets every call.
    print(f"the first funcd's events were handled by pid(s) {sorted(workers)}")


def lost_events(redis: RedisServer, topic: str, group: str, record: Record, total: int) -> str:
    """Where the events the handler never saw are: pending in the consumer group, or acknowledged."""
    seen = set(record.keys())
    missing = [f"e{i}" for i in range(total) if f"e{i}" not in seen]
    lines = [f"{len(missing)} event(s) never handled: {missing[:20]}"]
    lines.append(f"XINFO GROUPS {topic}: {redis.command('XINFO', 'GROUPS', topic)}")
    for entry_id, fields in redis.command("XRANGE", topic, "-", "+") or []:
        ce = json.loads(dict(zip(fields[::2], fields[1::2], strict=True))[b"data"])
        if ce["data"]["key"] in missing:
            detail = redis.command("XPENDING", topic, group, entry_id, entry_id, 1)
            state = f"pending {detail}" if detail else "acknowledged (not pending)"
            lines.append(
                f"{ce['data']['key']}: stream entry {entry_id.decode()}, CloudEvent {ce['id']}: {state}"
            )
    return "\n".join(lines)


# --- drain -----------------------------------------------------------------------------------------

QUEUED = 10


# Over HTTP daprd calls the app one at a time here (--app-max-concurrency 1, see the module docstring).
@pytest.mark.parametrize(("protocol", "in_flight_count"), [("grpc", 50), ("http", 1)])
def test_sigterm_drains_slow_events_in_flight_and_the_rest_are_redelivered(
    protocol: str,
    in_flight_count: int,
    tmp_path: Path,
    redis_server: RedisServer,
    daprd: DaprdFactory,
    funcd_group: FuncdFactory,
) -> None:
    tok = uuid.uuid4().hex[:8]
    folder = write_function(
        tmp_path / "fn", FUNCTION, context_yaml(tok, dead_letter=False, plain=False, stores=False)
    )
    record = Record(tmp_path / "record.jsonl")
    gate = tmp_path / "gate"  # the slow calls last until it exists
    # daprd delivers in_flight_count at a time; a message pending for 10 s (longer than a slow call)
    # is redelivered.
    resources = [
        redis_pubsub(
            "pubsub",
            redis_server,
            f"c-{tok}",
            processingTimeout="10000",
            redeliverInterval="500",
            concurrency=str(in_flight_count),
        )
    ]
    stack = Stack(
        daprd,
        funcd_group,
        folder,
        resources,
        protocol,
        {"FUNCD_E2E_RECORD": str(record.path), "FUNCD_E2E_GATE": str(gate)},
        "--workers",
        "2",
        "--threads",
        "64",
        "--grace",
        "30",
    )
    keys = [f"s{i}" for i in range(in_flight_count + QUEUED)]
    slow = [{"key": k, "action": "slow", "seconds": 30} for k in keys]
    bulk_publish(stack.sidecar, "pubsub", f"orders-{tok}", slow)

    def started() -> set[str]:
        return {e["key"] for e in record.entries() if e.get("phase") == "start"}

    def done(instance: str | None = None) -> set[str]:
        return {
            e["key"].removesuffix(":done")
            for e in record.entries()
            if e.get("phase") == "done" and (instance is None or e["instance"] == instance)
        }

    first = stack.server
    poll(
        lambda: len(started()) == in_flight_count, f"{in_flight_count} slow event(s) in flight", server=first
    )
    assert not done()
    in_flight = started()
    first.proc.send_signal(signal.SIGTERM)
    poll(lambda: any(m.startswith("draining: ") for m in first.messages("info")), "funcd to start draining")
    gate.touch()  # the slow calls now finish, while funcd drains
    assert first.wait(30) == 0
    # Every call in flight at the SIGTERM finished in the grace period ...
    assert in_flight <= done("1")
    infos = first.messages("info")
    assert any(f"draining: readiness is 503; {in_flight_count} call(s) in flight" in m for m in infos), infos
    assert any("drained; stopping" in m for m in infos), infos
    # ... and the rest are served while draining (this daprd does not check the app's health, so it
    # keeps delivering: funcd stops once deliveries are quiet), or redelivered to the next funcd.
    stack.restart(FUNCD_E2E_INSTANCE="2")
    poll(lambda: done() == set(keys), "every slow event to complete", timeout=60, server=stack.server)
    poll(lambda: pending(redis_server, f"orders-{tok}", f"c-{tok}") == 0, "every event to be acknowledged")
    assert set(keys) - done("1") <= done("2")
    served = [m for m in infos if m.endswith("delivery(ies) arrived and were served while draining")]
    print(f"completed by the first: {len(done('1'))} ({served}); by the new instance: {len(done('2'))}")
