"""The Dapr samples end to end: pubsub-consumer and cron-binding in embedded mode (``funcd run``
starts its own daprd, from the testbin cache), and http-to-pubsub against a real daprd and Redis."""

from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.stack_dapr import DaprdFactory
from tests.e2e.stack_procs import free_port, http_status
from tests.e2e.stack_redis import RedisServer
from tests.e2e.test_funcd_async_runtime import Funcd, FuncdFactory, poll, redis_pubsub, stream
from tests.support import SAMPLES, run_cli, write_function


@pytest.fixture
def funcd_group(tmp_path: Path) -> Iterator[FuncdFactory]:
    factory = FuncdFactory(tmp_path)
    yield factory
    factory.stop_all()


class Embedded:
    """What ``funcd run`` needs to start its own daprd: no sidecar in the environment, daprd found in
    the testbin cache only (not on PATH, not in ~/.dapr), a private runtime dir for the record that
    ``funcd publish`` reads, and a private TMPDIR."""

    def __init__(self, tmp_path: Path, daprd_binary: Path) -> None:
        self.runtime_dir = tmp_path / "run"
        self.runtime_dir.mkdir()
        home = tmp_path / "home"
        home.mkdir()
        tmp = tmp_path / "tmp"  # funcd leaves its daprd's work dir (components, log) in TMPDIR
        tmp.mkdir()
        path = os.pathsep.join(
            p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "daprd").exists()
        )
        self.env = {
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "PATH": path,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "FUNCD_TESTBIN_CACHE": str(daprd_binary.parent.parent),
        }
        self.daprd_pids: list[int] = []

    def sidecar(self, app_id: str) -> dict[str, Any]:
        """The record of the running local daprd (its ports and pid)."""
        record = self.runtime_dir / "funcd" / f"{app_id}.json"
        data: dict[str, Any] = poll(lambda: record.exists() and json.loads(record.read_text()), f"{record}")
        self.daprd_pids.append(int(data["daprd_pid"]))
        return data

    def wait_subscribed(self, app_id: str) -> dict[str, Any]:
        """funcd's /readyz answers before its daprd has found the app port and subscribed; an event
        published in between is lost (in-memory pub/sub). Wait for daprd's full health."""
        data = self.sidecar(app_id)
        url = f"http://127.0.0.1:{data['http_port']}/v1.0/healthz"
        poll(lambda: http_status(url) == 204, f"the local daprd of {app_id} to be healthy")
        return data

    def stop(self, server: Funcd) -> None:
        """SIGTERM funcd, which stops its daprd; check that it did."""
        assert server.terminate(timeout=30) == 0, server.output
        for pid in self.daprd_pids:
            poll(partial(_gone, pid), f"the local daprd (pid {pid}) to stop with funcd", timeout=15)

    def cleanup(self) -> None:
        for pid in self.daprd_pids:  # only if funcd failed to stop the daprd it started for us
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _gone(pid: int) -> bool:
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def embedded(tmp_path: Path, daprd: DaprdFactory) -> Iterator[Embedded]:
    """The ``daprd`` fixture fails the test when daprd is not built; funcd must find it itself."""
    env = Embedded(tmp_path, daprd.binary)
    yield env
    env.cleanup()


def test_pubsub_consumer_sample_embedded(embedded: Embedded, funcd_group: FuncdFactory) -> None:
    assert shutil.which("daprd", path=embedded.env["PATH"]) is None
    server = funcd_group(SAMPLES / "pubsub-consumer", "--dapr-port", "0", "--workers", "1", env=embedded.env)
    assert any("started a local daprd" in m for m in server.messages("info")), server.output
    embedded.wait_subscribed("pubsub-consumer")

    def has_total(total: int) -> bool:
        return any(
            m.startswith("order ") and m.endswith(f"from ada: total {total}") for m in server.messages("info")
        )

    env = {**os.environ, **embedded.env}
    for amount, total in ((5, 5), (7, 12)):
        result = run_cli("publish", "orders", json.dumps({"customer": "ada", "amount": amount}), env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "published to orders-pubsub/orders of pubsub-consumer (204)"
        poll(partial(has_total, total), f"the log line 'order ... from ada: total {total}'", server=server)
    # Not an order: the handler drops it, and the function keeps serving.
    assert run_cli("publish", "orders", "hello", env=env).returncode == 0
    poll(
        lambda: any("the handler dropped the event" in m for m in server.messages("info")),
        "the drop",
        server=server,
    )
    embedded.stop(server)


def test_cron_binding_sample_embedded(tmp_path: Path, embedded: Embedded, funcd_group: FuncdFactory) -> None:
    # The sample writes under /tmp/funcd-cron-binding; a copy writes under tmp_path instead.
    folder = tmp_path / "cron-binding"
    shutil.copytree(SAMPLES / "cron-binding", folder)
    out = tmp_path / "out"
    store = folder / "components" / "store.yaml"
    text = store.read_text()
    assert "/tmp/funcd-cron-binding" in text
    store.write_text(text.replace("/tmp/funcd-cron-binding", str(out)))

    server = funcd_group(folder, "--dapr-port", "0", "--workers", "1", env=embedded.env)
    embedded.sidecar("cron-binding")
    # Every 2 s the cron binding calls the function, which writes tick.json through localstorage.
    poll(
        lambda: sum(m.startswith("tick at ") for m in server.messages("info")) >= 2,
        "two ticks",
        timeout=20,
        server=server,
    )

    def written_and_logged() -> dict[str, Any] | None:
        try:
            tick: dict[str, Any] = json.loads((out / "tick.json").read_text())
        except (OSError, ValueError):  # being written
            return None
        return tick if f"tick at {tick['fired_at']}" in server.messages("info") else None

    tick = poll(written_and_logged, "tick.json to hold a tick the function logged", server=server)
    assert tick["binding"] == "ticker"
    embedded.stop(server)


SUBSCRIBER = """
import json
import os


def handler(context, event):
    with open(os.environ["FUNCD_E2E_RECORD"], "a") as f:
        f.write(json.dumps({"id": event.id, "topic": event.topic, "data": event.data}) + "\\n")
"""


def test_http_to_pubsub_sample_against_daprd_and_redis(
    tmp_path: Path, redis_server: RedisServer, daprd: DaprdFactory, funcd_group: FuncdFactory
) -> None:
    events = [redis_pubsub("events-pubsub", redis_server, f"s-{uuid.uuid4().hex[:8]}")]
    # A second function subscribed to `events`, behind its own daprd on the same Redis.
    record = tmp_path / "received.jsonl"
    context = """
name: events-subscriber
triggers:
  dapr:
    - {name: events-pubsub, type: pubsub.redis, topic: events}
"""
    subscriber = write_function(tmp_path / "subscriber", SUBSCRIBER, context)
    app_port = free_port()
    sub_sidecar = daprd(app_port, resources=events, wait="outbound")
    funcd_group(
        subscriber,
        "--dapr-port",
        str(app_port),
        "--dapr-address",
        sub_sidecar.grpc_address,
        "--workers",
        "1",
        env={**sub_sidecar.env(), "FUNCD_E2E_RECORD": str(record)},
    )
    sub_sidecar.wait_ready(full=True)

    # The sample itself: an HTTP function with a pub/sub output, and a sidecar with no app port.
    sidecar = daprd(None, resources=events)
    server = funcd_group(
        SAMPLES / "http-to-pubsub",
        "--dapr-address",
        sidecar.grpc_address,
        "--workers",
        "1",
        env=sidecar.env(),
    )
    marker = uuid.uuid4().hex
    r = requests.post(server.url, json={"hello": marker}, timeout=30)
    assert (r.status_code, r.json()) == (202, {"published": True})
    r = requests.post(server.url, data="not json", headers={"Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 400

    # The message is on the Redis stream of the `events` topic ...
    [ce] = poll(
        lambda: [e for e in stream(redis_server, "events") if e.get("data") == {"hello": marker}],
        "the event on the Redis stream",
    )
    assert (ce["topic"], ce["pubsubname"], ce["datacontenttype"]) == (
        "events",
        "events-pubsub",
        "application/json",
    )

    # ... and the subscribed function got it.
    def received() -> list[dict[str, Any]]:
        if not record.exists():
            return []
        return [e for e in map(json.loads, record.read_text().splitlines()) if e["data"] == {"hello": marker}]

    [got] = poll(received, "the subscriber to get the event")
    assert (got["id"], got["topic"]) == (ce["id"], "events")
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
