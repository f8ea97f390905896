"""Bulk subscribe end to end: ``funcd run`` behind a real daprd with Redis streams, the input asking
for Dapr's bulk subscribe in its metadata, over both app protocols.

Each entry of a bulk gets its own status: RETRY is retried (by daprd's inbound retry policy), DROP
is not, SUCCESS is acknowledged. A ``@batch``
handler gets the bulk as one list; a per-event handler gets the entries one call each. The kill -9
and SIGTERM drain tests of ``test_funcd_async_runtime`` are repeated here with bulk and
``--workers 2``.

Dapr facts (read in dapr/dapr v1.15.4 and v1.18.3 ``pkg/runtime/pubsub/default_bulksub.go`` and
``pkg/runtime/subscription/bulksubscription.go``): Redis streams has no native bulk subscribe, so
daprd's default bulk subscriber collects the messages the component hands it, each component
handler blocking until its bulk is answered; a bulk therefore holds at most the component's
``concurrency`` messages (Redis default 10). It is sent when it reaches ``maxMessagesCount`` or when
``maxAwaitDurationMs`` ticks (1.15: a free-running ticker; 1.18: restarted at each bulk's first
message), and one bulk is in flight per subscription at a time. An entry answered RETRY (or with no
status) becomes an error for that message only; DROP and SUCCESS acknowledge it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.e2e.stack_dapr import DaprdFactory
from tests.e2e.stack_redis import RedisServer
from tests.e2e.test_funcd_async_runtime import (
    FuncdFactory,
    Record,
    Stack,
    bulk_publish,
    funcd_group,  # noqa: F401 - the fixture
    lost_events,
    pending,
    poll,
    redis_pubsub,
    resiliency,
)
from tests.e2e.test_funcd_async_samples import Embedded, embedded  # noqa: F401 - the fixture
from tests.support import SAMPLES, run_cli, write_function

BATCH_FUNCTION = '''
import json
import os
import time

import functions_framework as ff

RECORD = os.environ["FUNCD_E2E_RECORD"]
INSTANCE = os.environ.get("FUNCD_E2E_INSTANCE", "1")


def record(rows):
    """All rows in one write(2): a batch's lines survive kill -9 together."""
    text = "".join(json.dumps({**row, "instance": INSTANCE, "pid": os.getpid()}) + "\\n" for row in rows)
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def attempts():
    try:
        with open(RECORD) as f:
            return [json.loads(line)["key"] for line in f if '"start"' in line]
    except FileNotFoundError:
        return []


def outcome(data, seen):
    action = data.get("action")
    if action == "retry-twice" and seen < 2:
        return ff.Retry(f"attempt {seen + 1}")
    if action == "drop":
        return "DROP"
    return None


@ff.batch
def batch_handler(context, events):
    seen = attempts() if any(e.data.get("action") for e in events) else []
    keys = [str(e.data["key"]) for e in events]
    record([{"key": k, "id": e.id, "batch": len(events), "phase": "start"} for k, e in zip(keys, events)])
    if any(e.data.get("action") == "slow" for e in events):
        gate, deadline = os.environ["FUNCD_E2E_GATE"], time.monotonic() + 30
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        record([{"key": k, "id": e.id, "phase": "done"} for k, e in zip(keys, events)])
    return [outcome(e.data, seen.count(k)) for k, e in zip(keys, events)]


def event_handler(context, event):
    seen = attempts() if event.data.get("action") else []
    key = str(event.data["key"])
    record([{"key": key, "id": event.id, "batch": 0, "phase": "start"}])
    result = outcome(event.data, seen.count(key))
    if isinstance(result, Exception):
        raise result
    if result == "DROP":
        raise ff.Drop()
'''


def context_yaml(tok: str, count: int = 20, wait_ms: int = 200) -> str:
    return (
        "name: e2e-bulk\n"
        "triggers:\n"
        "  dapr:\n"
        f"    - name: pubsub\n"
        f"      type: pubsub.redis\n"
        f"      topic: bulk-{tok}\n"
        "      metadata:\n"
        '        bulkSubscribe: "true"\n'
        f'        maxBulkSubCount: "{count}"\n'
        f'        maxBulkSubAwaitDurationMs: "{wait_ms}"\n'
    )


def starts(record: Record) -> list[dict]:
    return [e for e in record.entries() if e.get("phase") == "start"]


@pytest.mark.parametrize("target", ["batch_handler", "event_handler"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bulk_deliveries_ack_each_entry_retry_is_redelivered_and_drop_is_not(
    protocol: str,
    target: str,
    tmp_path: Path,
    redis_server: RedisServer,
    daprd: DaprdFactory,
    funcd_group: FuncdFactory,  # noqa: F811
) -> None:
    tok = uuid.uuid4().hex[:8]
    folder = write_function(tmp_path / "fn", BATCH_FUNCTION, context_yaml(tok))
    record = Record(tmp_path / "record.jsonl")
    topic, group = f"bulk-{tok}", f"c-{tok}"
    # An inbound retry policy retries the entries answered RETRY (since Dapr 1.17 the Redis component
    # acknowledges a failed delivery, so without one a RETRY would be delivered once).
    resources = [
        redis_pubsub(
            "pubsub", redis_server, group, processingTimeout="1500", redeliverInterval="500", concurrency="20"
        ),
        resiliency("pubsub", -1),
    ]
    stack = Stack(
        daprd,
        funcd_group,
        folder,
        resources,
        protocol,
        {"FUNCD_E2E_RECORD": str(record.path)},
        "--target",
        target,
        "--workers",
        "1",
    )
    events = [{"key": f"ok{i}"} for i in range(30)]
    events += [{"key": f"retry{i}", "action": "retry-twice"} for i in range(3)]
    events += [{"key": f"drop{i}", "action": "drop"} for i in range(3)]
    bulk_publish(stack.sidecar, "pubsub", topic, events)

    retried = {f"retry{i}" for i in range(3)}
    poll(
        lambda: all(record.attempts(k) >= 3 for k in retried),
        "each retry-twice event to be delivered three times",
        timeout=60,
        server=stack.server,
    )
    poll(lambda: pending(redis_server, topic, group) == 0, "every event to be acknowledged", timeout=30)
    keys = Counter(e["key"] for e in starts(record))
    assert set(keys) == {e["key"] for e in events}
    assert {k: n for k, n in keys.items() if n != 1} == dict.fromkeys(retried, 3), keys
    if target == "batch_handler":
        sizes = [e["batch"] for e in starts(record)]
        assert max(sizes) > 1, f"no delivery held more than one event: {sizes}"
        print(f"batch sizes: {Counter(sizes)}")


LOAD = 2000


@pytest.mark.parametrize("target", ["batch_handler", "event_handler"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_every_bulk_event_is_handled_at_least_once_across_kill_9(
    protocol: str,
    target: str,
    tmp_path: Path,
    redis_server: RedisServer,
    daprd: DaprdFactory,
    funcd_group: FuncdFactory,  # noqa: F811
) -> None:
    tok = uuid.uuid4().hex[:8]
    # Bulks of at most 40: their trace headers stay under gRPC's 8 KiB default (BULK_METADATA_OPTIONS).
    folder = write_function(tmp_path / "fn", BATCH_FUNCTION, context_yaml(tok, count=40, wait_ms=100))
    record = Record(tmp_path / "record.jsonl")
    topic, group = f"bulk-{tok}", f"c-{tok}"
    # The inbound retry policy without limit keeps the calls that fail while funcd is down in daprd
    # until it is back (the Redis component acknowledges a failed delivery since Dapr 1.17).
    resources = [
        redis_pubsub(
            "pubsub", redis_server, group, processingTimeout="2000", redeliverInterval="500", concurrency="40"
        ),
        resiliency("pubsub", -1),
    ]
    stack = Stack(
        daprd,
        funcd_group,
        folder,
        resources,
        protocol,
        {"FUNCD_E2E_RECORD": str(record.path)},
        "--target",
        target,
        "--workers",
        "2",
    )
    events = [{"key": f"e{i}", "seq": i} for i in range(LOAD)]
    for i in range(0, LOAD // 2, 250):
        bulk_publish(stack.sidecar, "pubsub", topic, events[i : i + 250])
    poll(lambda: len(record.entries()) >= LOAD // 8, f"{LOAD // 8} events handled", server=stack.server)
    stack.server.kill()  # SIGKILL to funcd's process group: the supervisor and both workers
    before = record.keys()
    for i in range(LOAD // 2, LOAD, 250):
        bulk_publish(stack.sidecar, "pubsub", topic, events[i : i + 250])

    stack.restart(FUNCD_E2E_INSTANCE="2")
    try:
        poll(
            lambda: len(record.keys()) == LOAD, f"all {LOAD} events handled", timeout=120, server=stack.server
        )
        poll(lambda: pending(redis_server, topic, group) == 0, "every event to be acknowledged")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{lost_events(redis_server, topic, group, record, LOAD)}") from None
    entries = record.entries()
    assert {e["key"] for e in entries} == {f"e{i}" for i in range(LOAD)}
    assert len({e["id"] for e in entries}) == LOAD  # one CloudEvent id per event, none lost
    after = Counter(e["key"] for e in entries if e["instance"] == "2")
    assert after, "the restarted function handled nothing"
    sizes = Counter(e["batch"] for e in entries)
    print(f"before the crash: {len(before)}; after: {sum(after.values())}; batch sizes: {sizes}")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sigterm_drains_a_slow_batch_in_flight_and_the_rest_are_redelivered(
    protocol: str,
    tmp_path: Path,
    redis_server: RedisServer,
    daprd: DaprdFactory,
    funcd_group: FuncdFactory,  # noqa: F811
) -> None:
    tok = uuid.uuid4().hex[:8]
    folder = write_function(tmp_path / "fn", BATCH_FUNCTION, context_yaml(tok, count=5, wait_ms=100))
    record = Record(tmp_path / "record.jsonl")
    gate = tmp_path / "gate"
    topic, group = f"bulk-{tok}", f"c-{tok}"
    resources = [
        redis_pubsub(
            "pubsub",
            redis_server,
            group,
            processingTimeout="10000",
            redeliverInterval="500",
            concurrency="20",
        )
    ]
    stack = Stack(
        daprd,
        funcd_group,
        folder,
        resources,
        protocol,
        {"FUNCD_E2E_RECORD": str(record.path), "FUNCD_E2E_GATE": str(gate)},
        "--target",
        "batch_handler",
        "--workers",
        "2",
        "--grace",
        "30",
    )
    keys = [f"s{i}" for i in range(12)]
    bulk_publish(stack.sidecar, "pubsub", topic, [{"key": k, "action": "slow"} for k in keys])

    def done(instance: str | None = None) -> set[str]:
        return {
            e["key"]
            for e in record.entries()
            if e.get("phase") == "done" and (instance is None or e["instance"] == instance)
        }

    first = stack.server
    poll(lambda: starts(record), "a slow batch in flight", server=first)
    assert not done()
    in_flight = {e["key"] for e in starts(record)}  # one batch: its rows are one write
    first.proc.send_signal(signal.SIGTERM)
    poll(lambda: any(m.startswith("draining: ") for m in first.messages("info")), "funcd to start draining")
    gate.touch()
    assert first.wait(30) == 0
    assert in_flight <= done("1")  # the batch in flight at the SIGTERM finished in the grace period
    infos = first.messages("info")
    assert any("draining: readiness is 503; 1 call(s) in flight" in m for m in infos), infos
    assert any("drained; stopping" in m for m in infos), infos
    stack.restart(FUNCD_E2E_INSTANCE="2")
    poll(lambda: done() == set(keys), "every slow event to complete", timeout=60, server=stack.server)
    poll(lambda: pending(redis_server, topic, group) == 0, "every event to be acknowledged")
    print(
        f"in flight at SIGTERM: {len(in_flight)}; by the first: {len(done('1'))}; the new: {len(done('2'))}"
    )


def test_pubsub_bulk_sample_embedded(embedded: Embedded, funcd_group: FuncdFactory) -> None:  # noqa: F811
    server = funcd_group(SAMPLES / "pubsub-bulk", "--dapr-port", "0", "--workers", "1", env=embedded.env)
    sidecar = embedded.wait_subscribed("pubsub-bulk")
    pattern = re.compile(r"a bulk of (\d+) order\(s\), (\d+) dropped: (.*)")

    def bulks() -> list[tuple[int, int, str]]:
        found = (pattern.fullmatch(m) for m in server.messages("info"))
        return [(int(m[1]), int(m[2]), m[3]) for m in found if m]

    # `funcd publish` checks that daprd has subscribed (in-memory pub/sub loses what comes before).
    env = {**os.environ, **embedded.env}
    result = run_cli("publish", "orders", json.dumps({"customer": "ada", "amount": 45}), env=env)
    assert result.returncode == 0, result.stderr
    poll(lambda: bulks(), "the first order", server=server)
    orders = [{"customer": "ada", "amount": n} for n in range(1, 11)] + ["not an order"]
    entries = [
        {"entryId": str(i), "event": o, "contentType": "application/json"} for i, o in enumerate(orders)
    ]
    url = f"http://127.0.0.1:{sidecar['http_port']}/v1.0-alpha1/publish/bulk/orders-pubsub/orders"
    assert requests.post(url, json=entries, timeout=30).status_code == 204
    poll(lambda: sum(n for n, _, _ in bulks()) == 12, "12 orders in bulks", server=server)
    assert sum(d for _, d, _ in bulks()) == 1
    amounts = [json.loads(a.replace("'", '"')).get("ada", 0) for _, _, a in bulks()]
    assert sum(amounts) == 100
    embedded.stop(server)


def test_grpc_bulks_of_200_traced_entries_are_accepted(
    tmp_path: Path,
    redis_server: RedisServer,
    daprd: DaprdFactory,
    funcd_group: FuncdFactory,  # noqa: F811
) -> None:
    tok = uuid.uuid4().hex[:8]
    folder = write_function(tmp_path / "fn", BATCH_FUNCTION, context_yaml(tok, count=200, wait_ms=500))
    record = Record(tmp_path / "record.jsonl")
    topic, group = f"bulk-{tok}", f"c-{tok}"
    # Bulks of up to 200 entries, about 34 KiB of trace headers: over gRPC's hard default of 16 KiB.
    # No redelivery within the test: a refused bulk stays pending and the poll below times out.
    resources = [
        redis_pubsub(
            "pubsub",
            redis_server,
            group,
            processingTimeout="600000",
            redeliverInterval="0",
            concurrency="200",
        )
    ]
    stack = Stack(
        daprd,
        funcd_group,
        folder,
        resources,
        "grpc",
        {"FUNCD_E2E_RECORD": str(record.path)},
        "--target",
        "batch_handler",
        "--workers",
        "1",
    )
    events = [{"key": f"e{i}"} for i in range(1000)]
    for i in range(0, len(events), 500):
        bulk_publish(stack.sidecar, "pubsub", topic, events[i : i + 500])
    poll(lambda: len(record.entries()) == 1000, "1000 events in bulks", timeout=30, server=stack.server)
    assert max(e["batch"] for e in record.entries()) > 100
