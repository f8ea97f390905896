"""DaprOutputs (context.send / context.state) through the Dapr API protocol fake."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import grpc
import pytest

from functions_framework.dapr_client import SidecarAddress
from functions_framework.errors import OutputError
from functions_framework.model import Component, FunctionContext, StateStore
from functions_framework.outputs import DaprOutputs, DaprState
from functions_framework.runtime_context import RuntimeContext
from functions_framework.settings import Settings

if TYPE_CHECKING:
    from tests.fakes.dapr_api import DaprApiFake


CTX = FunctionContext(
    name="fn",
    outputs={
        "orders": Component(
            name="orders",
            component_name="pubsub",
            component_type="pubsub.redis",
            topic="orders",
            metadata={"ttlInSeconds": "60", "rawPayload": "false"},
        ),
        "sink": Component(
            name="sink",
            component_name="http-sink",
            component_type="bindings.http",
            operation="post",
            metadata={"path": "/in", "keep": "yes"},
        ),
        "log": Component(name="log", component_name="logger", component_type="bindings.kafka"),
    },
    states={"cache": StateStore(name="cache", component_name="statestore", component_type="state.redis")},
)


@pytest.fixture
def outputs(dapr_api: DaprApiFake) -> Iterator[DaprOutputs]:
    out = DaprOutputs(CTX, dapr_api.address)
    yield out
    out.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ send


@pytest.mark.parametrize(
    ("data", "body", "content_type"),
    [
        ({"id": 1, "name": "Ada"}, b'{"id": 1, "name": "Ada"}', "application/json"),
        ([1, "two", None], b'[1, "two", null]', "application/json"),
        (42, b"42", "application/json"),
        ("héllo", "héllo".encode(), "text/plain"),
        (b"\x00\xffraw", b"\x00\xffraw", "application/octet-stream"),
        (bytearray(b"ba"), b"ba", "application/octet-stream"),
    ],
)
def test_send_to_topic_serializes_with_content_type(
    outputs: DaprOutputs,
    dapr_api: DaprApiFake,
    data: object,
    body: bytes,
    content_type: str,
) -> None:
    assert outputs.send(data, "orders", None) == [None]
    [msg] = dapr_api.published
    assert (msg.pubsub_name, msg.topic, msg.data, msg.content_type) == (
        "pubsub",
        "orders",
        body,
        content_type,
    )
    assert msg.metadata == {"ttlInSeconds": "60", "rawPayload": "false"}


def test_send_to_topic_merges_call_metadata_over_component_metadata(
    outputs: DaprOutputs,
    dapr_api: DaprApiFake,
) -> None:
    outputs.send("x", "orders", {"ttlInSeconds": "5", "partitionKey": "k"})
    assert dapr_api.published[0].metadata == {"ttlInSeconds": "5", "rawPayload": "false", "partitionKey": "k"}


def test_send_to_binding_with_operation_metadata_and_response(
    outputs: DaprOutputs,
    dapr_api: DaprApiFake,
) -> None:
    dapr_api.binding_responses["http-sink"] = (b'{"ok": true}', {"statusCode": "200"})
    assert outputs.send({"n": 1}, "sink", {"path": "/other", "extra": "1"}) == [b'{"ok": true}']
    [call] = dapr_api.invoked
    assert (call.name, call.operation, call.data) == ("http-sink", "post", b'{"n": 1}')
    assert call.metadata == {"path": "/other", "keep": "yes", "extra": "1"}


def test_send_to_binding_defaults_to_create_and_answers_empty_bytes(
    outputs: DaprOutputs,
    dapr_api: DaprApiFake,
) -> None:
    assert outputs.send(b"line", "log", None) == [b""]
    assert (dapr_api.invoked[0].name, dapr_api.invoked[0].operation) == ("logger", "create")
    assert dapr_api.invoked[0].metadata == {}


def test_send_without_name_goes_to_every_output_in_order(
    outputs: DaprOutputs,
    dapr_api: DaprApiFake,
) -> None:
    assert outputs.send({"a": 1}, None, None) == [None, b"", b""]
    assert [m.topic for m in dapr_api.published] == ["orders"]
    assert [c.name for c in dapr_api.invoked] == ["http-sink", "logger"]
    assert [c.method for c in dapr_api.calls] == ["PublishEvent", "InvokeBinding", "InvokeBinding"]


def test_unknown_output_name_lists_the_outputs(outputs: DaprOutputs, dapr_api: DaprApiFake) -> None:
    with pytest.raises(OutputError, match=r"^send\(output='nope'\): expected one of orders, sink, log$"):
        outputs.send({}, "nope", None)
    assert dapr_api.calls == [] and dapr_api.health_checks == 0


def test_no_outputs_at_all() -> None:
    empty = DaprOutputs(FunctionContext(name="bare"))
    with pytest.raises(OutputError, match="defines no outputs"):
        empty.send({}, None, None)
    with pytest.raises(OutputError, match=r"send\(output='x'\): the context defines no outputs"):
        empty.send({}, "x", None)


def test_unserializable_data_names_its_type(outputs: DaprOutputs, dapr_api: DaprApiFake) -> None:
    with pytest.raises(OutputError, match=r"send\(output='orders'\): expected .*got set") as err:
        outputs.send({1, 2}, "orders", None)
    assert isinstance(err.value.__cause__, TypeError)
    with pytest.raises(OutputError, match="got float"):
        outputs.send(float("nan"), "orders", None)
    assert dapr_api.calls == []


def test_publish_failure_is_an_output_error_with_the_grpc_cause(
    outputs: DaprOutputs,
    dapr_api: DaprApiFake,
) -> None:
    dapr_api.fail_next("PublishEvent", grpc.StatusCode.UNAVAILABLE, "broker down")
    with pytest.raises(OutputError) as err:
        outputs.send({"a": 1}, "orders", None)
    message = str(err.value)
    assert "send(output='orders')" in message
    assert "topic 'orders' of pubsub 'pubsub'" in message
    assert "UNAVAILABLE: broker down" in message
    assert isinstance(err.value.__cause__, grpc.RpcError)
    assert err.value.__cause__.code() == grpc.StatusCode.UNAVAILABLE
    # The failure was one-off: the same client works again.
    client = outputs.client()
    assert outputs.send({"a": 2}, "orders", None) == [None]
    assert outputs.client() is client


def test_binding_failure_names_binding_and_operation(
    outputs: DaprOutputs,
    dapr_api: DaprApiFake,
) -> None:
    dapr_api.fail_next("InvokeBinding", grpc.StatusCode.INTERNAL, "http 500")
    with pytest.raises(
        OutputError, match=r"binding 'http-sink' operation 'post' failed: INTERNAL: http 500"
    ) as err:
        outputs.send("x", "sink", None)
    assert isinstance(err.value.__cause__, grpc.RpcError)


def test_send_to_all_stops_at_the_first_failure(outputs: DaprOutputs, dapr_api: DaprApiFake) -> None:
    dapr_api.fail_next("InvokeBinding", grpc.StatusCode.INTERNAL)
    with pytest.raises(OutputError, match="output='sink'"):
        outputs.send("x", None, None)
    assert len(dapr_api.published) == 1
    assert dapr_api.invoked == []  # the failed call is not recorded, and 'log' was not tried
    assert [c.method for c in dapr_api.calls] == ["PublishEvent", "InvokeBinding"]


# ------------------------------------------------------------------ state


def test_state_round_trip(outputs: DaprOutputs, dapr_api: DaprApiFake) -> None:
    cache = outputs.state("cache")
    assert isinstance(cache, DaprState)
    assert cache.get("missing") is None
    assert cache.get("missing", {"d": 1}) == {"d": 1}

    cache.save("doc", {"a": [1, 2]})
    cache.save("name", "Ada")
    cache.save("raw", b"\x00not json")
    assert dapr_api.states["statestore"]["doc"] == b'{"a": [1, 2]}'
    assert dapr_api.states["statestore"]["name"] == b'"Ada"'
    assert cache.get("doc") == {"a": [1, 2]}
    assert cache.get("name") == "Ada"
    assert cache.get("raw") == b"\x00not json"

    cache.delete("doc")
    cache.delete("never-there")
    assert cache.get("doc", "gone") == "gone"


def test_state_transaction(outputs: DaprOutputs, dapr_api: DaprApiFake) -> None:
    cache = outputs.state("cache")
    cache.save("old", 1)
    cache.transaction(upserts={"x": {"v": 1}, "y": b"bytes"}, deletes=["old"])
    assert dapr_api.states["statestore"] == {"x": b'{"v": 1}', "y": b"bytes"}
    assert cache.get("x") == {"v": 1} and cache.get("old") is None
    assert [c.method for c in dapr_api.calls].count("ExecuteStateTransaction") == 1
    cache.transaction()  # nothing to do: no call
    assert [c.method for c in dapr_api.calls].count("ExecuteStateTransaction") == 1


def test_unknown_state_store_lists_the_stores(outputs: DaprOutputs) -> None:
    with pytest.raises(OutputError, match=r"^state\('other'\): expected one of cache$"):
        outputs.state("other")
    with pytest.raises(OutputError, match="defines no state stores"):
        DaprOutputs(FunctionContext()).state("cache")


@pytest.mark.parametrize("method", ["GetState", "SaveState", "DeleteState", "ExecuteStateTransaction"])
def test_state_failures_name_store_and_key(
    outputs: DaprOutputs,
    dapr_api: DaprApiFake,
    method: str,
) -> None:
    cache = outputs.state("cache")
    dapr_api.fail_next(method, grpc.StatusCode.INTERNAL, "store exploded")
    calls: dict[str, Callable[[], object]] = {
        "GetState": lambda: cache.get("k1"),
        "SaveState": lambda: cache.save("k1", 1),
        "DeleteState": lambda: cache.delete("k1"),
        "ExecuteStateTransaction": lambda: cache.transaction({"k1": 1}),
    }
    with pytest.raises(OutputError) as err:
        calls[method]()
    message = str(err.value)
    assert "state('cache')" in message and "'statestore'" in message and "'k1'" in message
    assert "INTERNAL: store exploded" in message
    assert err.value.__cause__ is not None


def test_unserializable_state_value(outputs: DaprOutputs) -> None:
    with pytest.raises(OutputError, match=r"state\('cache'\)\.save\('k'\): expected .*got object"):
        outputs.state("cache").save("k", object())


# ------------------------------------------------------------------ client lifecycle


def test_client_is_created_lazily(dapr_api: DaprApiFake) -> None:
    dead = DaprOutputs(CTX, SidecarAddress(f"127.0.0.1:{free_port()}", timeout=0.5))  # nothing listens
    cache = dead.state("cache")  # no connection yet
    with pytest.raises(OutputError, match=r"cannot connect to the Dapr sidecar: .* within 0\.5s") as err:
        dead.send("x", "orders", None)
    assert err.value.temporary  # the sidecar is down: retrying may work
    with pytest.raises(OutputError, match=r"cannot connect to the Dapr sidecar") as err:
        cache.get("k")
    assert err.value.temporary
    dead.close()
    assert dapr_api.calls == []


def test_importing_outputs_does_not_import_the_sdk() -> None:
    code = "import sys, functions_framework.outputs; print(any(m.startswith('dapr') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_one_connection_is_shared_by_threads_and_the_http_health_port_is_never_probed(
    dapr_api: DaprApiFake,
) -> None:
    # The SDK's DaprClient() probes the sidecar's HTTP health endpoint whatever gRPC address it is
    # given; funcd waits on the gRPC channel it uses.
    out = DaprOutputs(CTX, address=dapr_api.address)
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            out.send({"i": i}, "orders", None)
            out.state("cache").save(f"k{i}", i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(json.loads(m.data)["i"] for m in dapr_api.published) == list(range(12))
    assert len(dapr_api.states["statestore"]) == 12
    client = out.client()
    out.send("again", "orders", None)
    assert out.client() is client
    assert dapr_api.health_checks == 0
    out.close()


def test_close_closes_the_client(dapr_api: DaprApiFake) -> None:
    out = DaprOutputs(CTX, dapr_api.address)
    out.close()  # never used: nothing to close
    out = DaprOutputs(CTX, dapr_api.address)
    out.send("x", "orders", None)
    client = out.client()
    out.close()
    out.close()  # idempotent
    with pytest.raises(ValueError, match="closed channel"):
        client.publish("pubsub", "orders", b"x", "text/plain", {})
    with pytest.raises(OutputError, match="closed"):
        out.send("x", "orders", None)
    assert len(dapr_api.published) == 1


def test_a_sidecar_that_starts_after_the_app_is_waited_for() -> None:
    from tests.fakes.dapr_api import DaprApiFake

    port = free_port()
    out = DaprOutputs(CTX, SidecarAddress(f"127.0.0.1:{port}", timeout=0.3))
    with pytest.raises(OutputError, match=r"did not answer within 0\.3s"):
        out.send("x", "orders", None)
    out = DaprOutputs(CTX, SidecarAddress(f"127.0.0.1:{port}", timeout=30))
    result: list[object] = []
    sender = threading.Thread(target=lambda: result.append(out.send("late", "orders", None)))
    sender.start()
    with DaprApiFake(grpc_port=port) as fake:
        sender.join(timeout=30)
        assert result == [[None]]
        assert [m.data for m in fake.published] == [b"late"]
        out.close()


def test_api_token_is_sent_when_set(dapr_api: DaprApiFake) -> None:
    dapr_api.token = "s3cret"
    out = DaprOutputs(CTX, SidecarAddress(dapr_api.address, api_token="s3cret"))
    out.send({"a": 1}, "orders", None)
    out.state("cache").save("k", 1)
    assert dapr_api.published[0].api_token == "s3cret"
    assert {c.api_token for c in dapr_api.calls} == {"s3cret"}
    out.close()


def test_wrong_or_missing_api_token_is_rejected(dapr_api: DaprApiFake) -> None:
    dapr_api.token = "s3cret"
    out = DaprOutputs(CTX, dapr_api.address)
    with pytest.raises(OutputError, match="UNAUTHENTICATED") as err:
        out.send({"a": 1}, "orders", None)
    assert err.value.__cause__.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[union-attr]
    out.close()
    out = DaprOutputs(CTX, SidecarAddress(dapr_api.address, api_token="wrong"))
    with pytest.raises(OutputError, match="UNAUTHENTICATED"):
        out.send({"a": 1}, "orders", None)
    out.close()
    assert dapr_api.published == []


# ------------------------------------------------------------------ through RuntimeContext


def test_runtime_context_send_and_state(dapr_api: DaprApiFake) -> None:
    rctx = RuntimeContext(CTX, DaprOutputs(CTX, dapr_api.address))
    assert rctx.send({"order": 7}, output="orders", metadata={"partitionKey": "p"}) == [None]
    rctx.state("cache").save("last", {"order": 7})
    assert rctx.state("cache").get("last") == {"order": 7}
    assert dapr_api.published[0].data == b'{"order": 7}'
    assert dapr_api.published[0].metadata["partitionKey"] == "p"
    with pytest.raises(OutputError, match="expected one of orders, sink, log") as err:
        rctx.send({}, output="missing")
    assert not err.value.temporary  # an undeclared output never works: do not retry
    rctx.close()
    with pytest.raises(OutputError, match="closed"):
        rctx.send({}, output="orders")


def test_runtime_context_creates_dapr_outputs_on_first_use(dapr_api: DaprApiFake) -> None:
    rctx = RuntimeContext(CTX, settings=Settings(dapr_address=SidecarAddress(dapr_api.address)))
    assert rctx.send(b"hi", output="log") == [b""]
    assert isinstance(rctx.outputs, DaprOutputs)
    assert dapr_api.invoked[0].data == b"hi"
    rctx.close()
