"""A rolling restart of funcd behind a real daprd and Redis dead-letters nothing.

The subscription has a dead-letter topic and the default resiliency (none): Dapr (1.15, and 1.18.2
here) sends any failed delivery there at once. Events flow; funcd gets SIGTERM mid-stream; a new
funcd starts on the same ports once the old one has gone. The draining funcd fails daprd's app
health check (daprd runs with ``--enable-app-health-check``), so daprd pauses the subscription, and
serves what still arrives; while no funcd runs, daprd delivers nothing; the new funcd's first
healthy probe resumes the subscription. Every event is handled and the dead-letter topic stays empty.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.stack_dapr import DaprdFactory, Sidecar
from tests.e2e.stack_procs import free_port
from tests.e2e.stack_redis import RedisServer
from tests.e2e.test_funcd_async_runtime import Funcd, FuncdFactory, pending, poll, redis_pubsub, stream
from tests.support import write_function

FUNCTION = """
import json
import os
import time

RECORD = os.environ["FUNCD_E2E_RECORD"]
INSTANCE = os.environ["FUNCD_E2E_INSTANCE"]


def handler(context, event):
    time.sleep(0.02)  # so that deliveries are in flight when the signal comes
    line = json.dumps({"key": event.data["key"], "instance": INSTANCE}) + "\\n"
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
"""


def context(tok: str) -> str:
    return (
        "name: drain-e2e\n"
        "triggers:\n"
        "  dapr:\n"
        f"    - {{name: pubsub, type: pubsub.redis, topic: orders-{tok}, deadLetterTopic: dead-{tok}}}\n"
    )


@pytest.fixture
def funcd_group(tmp_path: Path) -> Iterator[FuncdFactory]:
    factory = FuncdFactory(tmp_path)
    yield factory
    factory.stop_all()


class Publisher:
    """Publishes numbered events through daprd's HTTP API, one after another, until stopped."""

    def __init__(self, sidecar: Sidecar, topic: str) -> None:
        self.url = f"{sidecar.http_url}/v1.0/publish/pubsub/{topic}"
        self.sent: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(0.01):  # about 100 events a second
                key = f"e{len(self.sent)}"
                r = session.post(self.url, json={"key": key}, timeout=10)
                if r.status_code == 204:
                    self.sent.append(key)
                else:
                    self.errors.append(f"{r.status_code} {r.text}")

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def handled(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


class Setup:
    """The function, its Redis pub/sub (a dead-letter topic, no resiliency policy) and what it saw."""

    def __init__(
        self,
        tmp_path: Path,
        redis: RedisServer,
        daprd: DaprdFactory,
        funcd_group: FuncdFactory,
        protocol: str,
    ) -> None:
        tok = uuid.uuid4().hex[:8]
        self.redis, self.daprd, self.funcd_group, self.protocol = redis, daprd, funcd_group, protocol
        self.topic, self.dead, self.group = f"orders-{tok}", f"dead-{tok}", f"c-{tok}"
        self.app_id = f"drain-{tok}"
        self.folder = write_function(tmp_path / "fn", FUNCTION, context(tok))
        self.record = tmp_path / "record.jsonl"
        self.resources = [
            redis_pubsub("pubsub", redis, self.group, processingTimeout="5000", redeliverInterval="500")
        ]  # and no Resiliency resource: a failed delivery goes to the dead-letter topic at once

    def sidecar(self, app_port: int) -> Sidecar:
        """A daprd that checks the app's health every second and pauses it after 2 failed probes."""
        health = [
            "--enable-app-health-check",
            "--app-health-probe-interval",
            "1",
            "--app-health-threshold",
            "2",
        ]
        if self.protocol == "http":  # see tests/e2e/test_funcd_async_runtime.py on --app-max-concurrency
            health += ["--app-health-check-path", "/readyz", "--app-max-concurrency", "1"]
        return self.daprd(
            app_port,
            resources=self.resources,
            app_protocol=self.protocol,
            app_id=self.app_id,
            wait="outbound",
            extra_args=health,
        )

    def funcd(self, sidecar: Sidecar, instance: str) -> Funcd:
        """funcd behind ``sidecar``, on its app port."""
        assert sidecar.app_port is not None
        args = [
            "--app-protocol", self.protocol, "--dapr-address", sidecar.grpc_address,
            "--dapr-http-address", f"127.0.0.1:{sidecar.http_port}", "--workers", "2", "--threads", "16",
        ]  # fmt: skip
        port = sidecar.app_port if self.protocol == "http" else free_port()
        if self.protocol == "grpc":
            args += ["--dapr-port", str(sidecar.app_port)]
        env = {"FUNCD_E2E_RECORD": str(self.record), "FUNCD_E2E_INSTANCE": instance}
        return self.funcd_group(self.folder, *args, env=env, port=port)

    def handled(self, instance: str | None = None) -> list[str]:
        return [e["key"] for e in handled(self.record) if instance is None or e["instance"] == instance]

    def dead_lettered(self) -> set[str]:
        return {e["data"]["key"] for e in stream(self.redis, self.dead)}

    def check(self, publisher: Publisher, drained: Funcd) -> None:
        """Every event published was handled, none dead-lettered; the drained funcd served deliveries
        until daprd had paused."""
        assert publisher.errors == []
        sent = set(publisher.sent)
        poll(
            lambda: sent <= set(self.handled()) | self.dead_lettered(),
            f"each of the {len(sent)} events to be handled or dead-lettered",
            timeout=90,
        )
        lost = self.dead_lettered()
        assert not lost, (
            f"{len(lost)} of {len(sent)} events went to the dead-letter topic: {sorted(lost)[:10]}"
        )
        poll(lambda: pending(self.redis, self.topic, self.group) == 0, "every event to be acknowledged")
        infos = drained.messages("info")
        assert (
            "draining: daprd has had 2 unhealthy answers to its health probes and pauses deliveries" in infos
        )
        [served] = [m for m in infos if m.endswith("delivery(ies) arrived and were served while draining")]
        print(f"{len(sent)} events; the drained funcd: {served}")
        assert int(served.split()[1]) > 0  # deliveries kept arriving during the drain, and were served
        assert "drained; stopping" in infos


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_restart_in_place_dead_letters_nothing(
    protocol: str, tmp_path: Path, redis_server: RedisServer, daprd: DaprdFactory, funcd_group: FuncdFactory
) -> None:
    """One daprd; funcd is stopped and started again on the same ports (a container restart)."""
    setup = Setup(tmp_path, redis_server, daprd, funcd_group, protocol)
    sidecar = setup.sidecar(free_port())
    first = setup.funcd(sidecar, "1")
    sidecar.wait_ready(full=True, timeout=60)
    with Publisher(sidecar, setup.topic) as publisher:
        poll(lambda: len(setup.handled()) >= 100, "100 events handled by the first funcd", server=first)
        assert first.terminate(timeout=60) == 0  # SIGTERM mid-stream; it drains, then exits
        stopped_at = len(publisher.sent)
        second = setup.funcd(sidecar, "2")  # the same ports: it can bind them only once the first has gone
        poll(
            lambda: len(publisher.sent) > stopped_at + 100 and len(setup.handled("2")) >= 100,
            "the second funcd to handle events published after the restart",
            timeout=60,
            server=second,
        )
    setup.check(publisher, first)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_rolling_restart_of_sidecar_and_funcd_dead_letters_nothing(
    protocol: str, tmp_path: Path, redis_server: RedisServer, daprd: DaprdFactory, funcd_group: FuncdFactory
) -> None:
    """As a Deployment rolls: a new daprd and funcd (same app id, so the same Redis consumer) start
    first; then the old funcd gets SIGTERM, and its daprd is stopped once funcd has gone."""
    setup = Setup(tmp_path, redis_server, daprd, funcd_group, protocol)
    old_sidecar = setup.sidecar(free_port())
    old = setup.funcd(old_sidecar, "1")
    old_sidecar.wait_ready(full=True, timeout=60)
    with Publisher(old_sidecar, setup.topic) as publisher:
        poll(lambda: len(setup.handled()) >= 100, "100 events handled by the old funcd", server=old)
        new_sidecar = setup.sidecar(free_port())
        new = setup.funcd(new_sidecar, "2")
        new_sidecar.wait_ready(full=True, timeout=60)
        publisher.url = publisher.url.replace(old_sidecar.http_url, new_sidecar.http_url)
        assert old.terminate(timeout=60) == 0  # SIGTERM mid-stream; it drains, then exits
        old_sidecar.stop()
        stopped_at = len(publisher.sent)
        poll(
            lambda: len(publisher.sent) > stopped_at + 100 and len(setup.handled("2")) >= 100,
            "the new funcd to handle events",
            timeout=60,
            server=new,
        )
    setup.check(publisher, old)
