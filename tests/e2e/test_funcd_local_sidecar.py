"""funcd's local daprd (embedded mode) against the real daprd: it dies with funcd, a stale record is
cleaned, ``funcd publish`` refuses an event nobody would receive, RETRY is retried by funcd's local
policy, and a drain pauses daprd's deliveries through its app health check."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.stack_dapr import DaprdFactory
from tests.e2e.test_funcd_async_runtime import Funcd, FuncdFactory, poll
from tests.e2e.test_funcd_async_samples import Embedded, _alive, _gone
from tests.support import run_cli, write_function

FUNCTION = """
import json
import os

import functions_framework as ff

RECORD = os.environ["FUNCD_E2E_RECORD"]


def handler(context, event):
    data = event.data
    with open(RECORD, "a") as f:
        f.write(json.dumps({"id": event.id, "data": data}) + "\\n")
    if data.get("retry_once") and sum(1 for _ in open(RECORD)) == 1:
        raise ff.Retry("the first attempt asks for a retry")
    return None
"""

CONTEXT = """
name: local-e2e
triggers:
  dapr:
    - {name: orders, type: pubsub.redis, topic: orders, deadLetterTopic: orders-dead}
"""


@pytest.fixture
def funcd_group(tmp_path: Path) -> Iterator[FuncdFactory]:
    factory = FuncdFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def embedded(tmp_path: Path, daprd: DaprdFactory) -> Iterator[Embedded]:
    env = Embedded(tmp_path, daprd.binary)
    yield env
    env.cleanup()


@pytest.fixture
def function(tmp_path: Path) -> Path:
    return write_function(tmp_path / "fn", FUNCTION, CONTEXT)


def start(funcd_group: FuncdFactory, embedded: Embedded, folder: Path, record: Path, *args: str) -> Funcd:
    env = {**embedded.env, "FUNCD_E2E_RECORD": str(record)}
    return funcd_group(folder, "--dapr-port", "0", "--workers", "1", *args, env=env)


def publish(embedded: Embedded, topic: str, data: Any) -> Any:
    return run_cli("publish", topic, json.dumps(data), env={**os.environ, **embedded.env})


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_kill_9_of_funcd_takes_its_daprd_down_and_the_next_run_starts_clean(
    tmp_path: Path, embedded: Embedded, funcd_group: FuncdFactory, function: Path
) -> None:
    record = tmp_path / "record.jsonl"
    first = start(funcd_group, embedded, function, record)
    daprd_pid = embedded.wait_subscribed("local-e2e")["daprd_pid"]
    os.kill(first.proc.pid, signal.SIGKILL)  # the supervisor only, as a crash would
    first.proc.wait(10)
    poll(partial(_gone, daprd_pid), f"the local daprd (pid {daprd_pid}) to die with its funcd", timeout=15)
    # The record it left names a funcd that is gone: publish cleans it and says nothing runs.
    result = publish(embedded, "orders", {"n": 1})
    assert result.returncode == 1
    assert "no function is running with a local daprd" in result.stderr, result.stderr
    assert not (embedded.runtime_dir / "funcd" / "local-e2e.json").exists()
    # The next run starts one daprd, which receives what is published.
    second = start(funcd_group, embedded, function, record)
    new_daprd = embedded.wait_subscribed("local-e2e")["daprd_pid"]
    assert new_daprd != daprd_pid and _alive(new_daprd)
    result = publish(embedded, "orders", {"n": 2})
    assert result.returncode == 0, result.stderr
    poll(lambda: [r["data"] for r in records(record)] == [{"n": 2}], "the event to be handled", server=second)
    embedded.stop(second)


def test_publish_refuses_a_topic_nobody_subscribes_to(
    tmp_path: Path, embedded: Embedded, funcd_group: FuncdFactory, function: Path
) -> None:
    record = tmp_path / "record.jsonl"
    server = start(funcd_group, embedded, function, record)
    embedded.wait_subscribed("local-e2e")
    result = publish(embedded, "nobody-listens", {"n": 1})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "funcd: error: 'local-e2e' does not subscribe to topic 'nobody-listens' on pub/sub 'orders' (its "
        "subscriptions: orders on orders), so nothing would receive the event; it was not published"
    ]
    assert publish(embedded, "orders", {"n": 1}).returncode == 0
    poll(lambda: len(records(record)) == 1, "the event on the subscribed topic", server=server)
    embedded.stop(server)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_local_daprd_retries_and_pauses_deliveries_while_funcd_drains(
    protocol: str, tmp_path: Path, embedded: Embedded, funcd_group: FuncdFactory, function: Path
) -> None:
    record = tmp_path / "record.jsonl"
    server = start(funcd_group, embedded, function, record, "--app-protocol", protocol)
    sidecar = embedded.wait_subscribed("local-e2e")
    meta = requests.get(f"http://127.0.0.1:{sidecar['http_port']}/v1.0/metadata", timeout=5).json()
    health = meta["appConnectionProperties"]["health"]
    assert (health["healthThreshold"], health["healthProbeInterval"]) == (2, "1s")
    if protocol == "http":
        assert health["healthCheckPath"] == "/readyz"
    # funcd's local retry policy: a RETRY is delivered again (in-memory pub/sub has no redelivery of its
    # own, and the dead-letter topic would otherwise take it at once).
    assert publish(embedded, "orders", {"retry_once": True}).returncode == 0
    poll(lambda: len(records(record)) == 2, "the retried event to be delivered again", server=server)
    assert [r["data"] for r in records(record)] == [{"retry_once": True}] * 2
    # SIGTERM: funcd answers daprd's probes "unhealthy" until daprd pauses (threshold 2), then stops.
    assert server.terminate(timeout=30) == 0
    infos = server.messages("info")
    assert "draining: daprd has had 2 unhealthy answers to its health probes and pauses deliveries" in infos
    assert "drained; stopping" in infos
    poll(partial(_gone, sidecar["daprd_pid"]), "the local daprd to stop with funcd", timeout=15)
