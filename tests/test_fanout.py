"""Worker fan-out over the gRPC app protocol (runtime/fanout.py): one gRPC connection, as daprd
opens, and every worker runs deliveries. Driven through the official AppCallback stubs."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from dapr.proto import appcallback_service_v1, appcallback_v1

from tests.support import receiving_worker, write_function
from tests.test_dapr_runtime import dapr_port

SUCCESS = appcallback_v1.TopicEventResponse.SUCCESS
RETRY = appcallback_v1.TopicEventResponse.RETRY

FUNCTION = """
import json, os, time
import functions_framework as ff

RECORD = os.environ["FANOUT_RECORD"]

def handler(context, event):
    data = event.data if isinstance(event.data, dict) else json.loads(event.body)
    with open(RECORD, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "id": event.id, "kind": event.trigger.kind,
                            "traceparent": event.trace_carrier.get("traceparent", "")}) + "\\n")
    action = data.get("action")
    end = time.perf_counter() + data.get("s", 0)
    while time.perf_counter() < end:
        pass
    if action == "wait":
        deadline = time.monotonic() + 30
        while not os.path.exists(data["gate"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    elif action == "retry":
        raise ff.Retry()
    elif action == "boom":
        raise RuntimeError("handler failure")
    return None
"""

CONTEXT = """
name: fanout-test
triggers:
  dapr:
    - {name: msg, type: pubsub.redis, topic: orders}
    - {name: tick, type: bindings.cron}
"""


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def event(data: dict, event_id: str) -> appcallback_v1.TopicEventRequest:
    return appcallback_v1.TopicEventRequest(
        id=event_id,
        source="tests",
        type="com.example",
        spec_version="1.0",
        data_content_type="application/json",
        data=json.dumps(data).encode(),
        topic="orders",
        pubsub_name="msg",
    )


@pytest.fixture
def start(funcd, tmp_path, dapr_api):
    record = tmp_path / "record.jsonl"
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    channels = []

    def start(workers: int, threads: int):
        server = funcd(
            str(folder),
            "--dapr-port",
            "0",
            "--dapr-address",
            dapr_api.address,
            "--threads",
            str(threads),
            env={**dapr_api.env(), "FANOUT_RECORD": str(record)},
            workers=str(workers),
        )
        port = dapr_port(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")  # one connection, as daprd opens
        grpc.channel_ready_future(channel).result(timeout=10)
        channels.append(channel)
        return server, appcallback_service_v1.AppCallbackStub(channel), record, port

    yield start
    for channel in channels:
        channel.close()


def test_every_worker_runs_deliveries_that_arrive_on_one_connection(start):
    _, stub, record, _ = start(workers=2, threads=2)
    calls = 60
    metadata = (("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),)
    with futures.ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda i: (
                    stub.OnTopicEvent(
                        event({"action": "spin", "s": 0.01}, f"e{i}"), metadata=metadata, timeout=30
                    ).status
                ),
                range(calls),
            )
        )
    assert statuses == [SUCCESS] * calls
    seen = records(record)
    assert sorted(e["id"] for e in seen) == sorted(f"e{i}" for i in range(calls))
    per_worker = {pid: sum(1 for e in seen if e["pid"] == pid) for pid in {e["pid"] for e in seen}}
    assert len(per_worker) == 2, per_worker
    # Both workers took a real share (each has 2 threads of the 4 slots).
    assert min(per_worker.values()) >= calls // 5, per_worker
    # The gRPC metadata (trace context) reaches the handler in whichever worker runs it.
    assert {e["traceparent"] for e in seen} == {metadata[0][1]}


def test_acks_and_aborts_come_back_from_the_worker_that_ran_the_handler(start):
    _, stub, record, _ = start(workers=2, threads=1)
    with futures.ThreadPoolExecutor(4) as pool:

        def status(action: str, i: int) -> int:
            return stub.OnTopicEvent(event({"action": action, "s": 0.02}, f"{action}{i}")).status

        retries = list(pool.map(lambda i: status("retry", i), range(8)))
        boom = list(pool.map(lambda i: status("boom", i), range(8)))

        def binding(i: int) -> grpc.StatusCode:
            request = appcallback_v1.BindingEventRequest(name="tick", data=b'{"action": "retry", "s": 0.02}')
            with pytest.raises(grpc.RpcError) as info:
                stub.OnBindingEvent(request, timeout=10)
            assert "the function asked for a retry" in info.value.details()
            return info.value.code()

        codes = list(pool.map(binding, range(8)))
    assert retries == [RETRY] * 8
    assert boom == [RETRY] * 8  # a handler error: RETRY by the default ack policy
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 8
    kinds = {(e["kind"], e["pid"]) for e in records(record)}
    assert {pid for kind, pid in kinds if kind == "binding"} | {
        pid for kind, pid in kinds if kind == "pubsub"
    }
    assert len({pid for _, pid in kinds}) == 2, kinds


def test_a_worker_killed_mid_delivery_fails_the_call_so_daprd_redelivers(start, tmp_path):
    server, stub, record, port = start(workers=2, threads=1)
    gate = tmp_path / "gate"
    results: dict[str, object] = {}

    def deliver(event_id: str) -> None:
        try:
            results[event_id] = stub.OnTopicEvent(
                event({"action": "wait", "gate": str(gate)}, event_id)
            ).status
        except grpc.RpcError as exc:
            results[event_id] = (exc.code(), exc.details())

    threads = [threading.Thread(target=deliver, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    while len(records(record)) < 2:  # one slot per worker: one runs here, one is relayed
        assert time.monotonic() < deadline, records(record)
        time.sleep(0.01)
    by_pid = {e["pid"]: e["id"] for e in records(record)}
    assert len(by_pid) == 2, by_pid
    receiver = receiving_worker(set(by_pid), port)
    [relayed_to] = set(by_pid) - {receiver}
    os.kill(relayed_to, signal.SIGKILL)
    threads_by_id = dict(zip((f"w{i}" for i in range(2)), threads, strict=True))
    threads_by_id[by_pid[relayed_to]].join(15)
    code, details = results[by_pid[relayed_to]]  # type: ignore[misc]
    assert code == grpc.StatusCode.UNAVAILABLE
    assert f"worker {relayed_to} stopped while handling the delivery" in details
    assert server.wait_for_log(lambda e: "daprd will redeliver it" in e.get("message", ""))
    gate.touch()
    for t in threads:
        t.join(15)


def test_cheap_deliveries_stay_in_the_receiving_worker_while_it_has_room(start):
    # Relaying costs about 0.1 ms of CPU in each worker: a handler cheaper than that runs where the
    # delivery arrived, as long as that worker has a free thread.
    _, stub, record, port = start(workers=2, threads=4)
    for i in range(30):
        assert stub.OnTopicEvent(event({"action": "none"}, f"c{i}")).status == SUCCESS
    pids = {e["pid"] for e in records(record)}
    assert len(pids) == 1, pids
    [pid] = pids
    assert receiving_worker({pid}, port) == pid
