"""One trace across three functions and their daprds, in a real Jaeger, for both Dapr app protocols.

samples/http-to-pubsub → samples/pubsub-consumer → samples/pubsub-sink, each run by ``funcd run`` with
tracing on (OTLP/gRPC to a Jaeger started for the test alone), each with the local daprd funcd starts
for it, which gets a tracing Configuration to the same Jaeger (``runtime/sidecar.py``). The pub/sub
and the state store are the session's Redis.

What daprd 1.18.2 does between the functions (see "Tracing across the Dapr hop" in
docs/architecture.md): the publishing daprd continues the trace from the ``traceparent`` gRPC metadata
with its own CLIENT span and puts that span in the CloudEvent; the delivering daprd starts a CLIENT
span ``pubsub/<topic>`` under it and hands that span to the function, as the ``traceparent`` header
over the HTTP app channel and as ``traceparent``/``grpc-trace-bin`` metadata over the gRPC one (since
Dapr 1.17; daprd 1.15 dropped it over gRPC). Either way the function's CONSUMER span is a child of
``pubsub/<topic>``.

A second test points every exporter at a port nothing listens on: the requests and deliveries are not
slowed or lost, and funcd stops within a bound. A third shows what daprd does with ``samplingRate: "0"``.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from dapr.proto import api_service_v1, api_v1

from functions_framework.event import trace_id_of
from tests.e2e.conftest import _stack, require_binary
from tests.e2e.stack_dapr import DaprdFactory, Sidecar
from tests.e2e.stack_jaeger import Jaeger, start_jaeger
from tests.e2e.stack_procs import free_port
from tests.e2e.stack_redis import RedisServer
from tests.e2e.stack_tracing import JaegerTraces, TraceSpan, otlp_tracing, span_tree, traced_sample
from tests.e2e.test_funcd_async_runtime import Funcd, FuncdFactory, pending, poll, redis_pubsub
from tests.e2e.test_funcd_async_samples import Embedded, _gone
from tests.support import write_function

FUNCD = "funcd_tracing"
DAPRD = "dapr-diagnostics"
EXPORT_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
"""Batches every 100 ms where the SDK picks the delay; the plugin now sets its own (1 s), which the
Jaeger polls below wait for."""


@pytest.fixture
def fresh_jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    """A Jaeger for this test alone: every trace it holds came from this test."""
    server = start_jaeger(require_binary("jaeger"), _stack.version("jaeger"), tmp_path / "jaeger")
    yield server
    server.stop()


@pytest.fixture
def funcd_group(tmp_path: Path) -> Iterator[FuncdFactory]:
    factory = FuncdFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def embedded(tmp_path: Path, daprd: DaprdFactory) -> Iterator[Embedded]:
    """``funcd run`` starts each function's daprd itself (found in the testbin cache)."""
    env = Embedded(tmp_path, daprd.binary)
    yield env
    env.cleanup()


def start_chain(
    names: tuple[str, ...],
    protocol: str,
    tmp_path: Path,
    endpoint: str,
    topics: dict[str, str],
    redis: RedisServer,
    embedded: Embedded,
    funcd_group: FuncdFactory,
) -> dict[str, Funcd]:
    """Start the samples together; return once each is ready and each subscriber's daprd subscribed."""
    tracing = otlp_tracing(endpoint)
    env = {**embedded.env, **EXPORT_ENV}
    args = ("--dapr-port", "0", "--workers", "1", "--app-protocol", protocol)
    servers = {
        name: funcd_group(
            traced_sample(name, tmp_path / "samples", tracing, topics, redis), *args, env=env, ready=False
        )
        for name in names
    }
    for name, server in servers.items():
        server.wait_ready()
        record = embedded.sidecar(name) if name == names[0] else embedded.wait_subscribed(name)
        assert record["app_id"] == name  # daprd's spans carry its app id as their service name
    return servers


def stop_chain(servers: dict[str, Funcd], embedded: Embedded, bound: float = 30) -> dict[str, float]:
    """SIGTERM every funcd at once; each must exit 0 within ``bound`` seconds, and every local daprd stop
    with its funcd. Seconds each one took to stop."""
    started = time.monotonic()
    for server in servers.values():
        server.proc.send_signal(signal.SIGTERM)
    took = {}
    for name, server in servers.items():
        assert server.wait(timeout=bound) == 0, server.output
        took[name] = time.monotonic() - started
    for pid in embedded.daprd_pids:
        poll(partial(_gone, pid), f"the local daprd (pid {pid}) to stop with funcd", timeout=15)
    return took


PUBLISH = "/dapr.proto.runtime.v1.Dapr/PublishEvent"


def expected_spans(protocol: str, orders: str, processed: str) -> dict[str, tuple[str, str, str, str, str]]:
    """Each span of the trace by a short key: (service, scope, kind, name, key of its parent)."""
    # Both app channels pass daprd's delivery span to the app (see above).
    parent, parent_2 = "delivery", "delivery 2"
    return {
        "http": ("http-to-pubsub", FUNCD, "server", "POST /", "caller"),
        "publish": ("http-to-pubsub", FUNCD, "producer", f"{orders} publish", "http"),
        "dapr publish": ("http-to-pubsub", DAPRD, "client", PUBLISH, "publish"),
        "delivery": ("pubsub-consumer", DAPRD, "client", f"pubsub/{orders}", "dapr publish"),
        "consume": ("pubsub-consumer", FUNCD, "consumer", f"{orders} process", parent),
        "get": ("pubsub-consumer", FUNCD, "client", "totals get", "consume"),
        "dapr get": ("pubsub-consumer", DAPRD, "client", "/dapr.proto.runtime.v1.Dapr/GetState", "get"),
        "save": ("pubsub-consumer", FUNCD, "client", "totals save", "consume"),
        "dapr save": ("pubsub-consumer", DAPRD, "client", "/dapr.proto.runtime.v1.Dapr/SaveState", "save"),
        "publish 2": ("pubsub-consumer", FUNCD, "producer", f"{processed} publish", "consume"),
        "dapr publish 2": ("pubsub-consumer", DAPRD, "client", PUBLISH, "publish 2"),
        "delivery 2": ("pubsub-sink", DAPRD, "client", f"pubsub/{processed}", "dapr publish 2"),
        "consume 2": ("pubsub-sink", FUNCD, "consumer", f"{processed} process", parent_2),
    }  # fmt: skip


def check_tree(
    spans: list[TraceSpan], expected: dict[str, tuple[str, str, str, str, str]], trace_id: str, caller: str
) -> None:
    """Every expected span is there once, nothing else is, and each one's parent is the expected span."""
    tree = span_tree(spans)
    by_identity: dict[tuple[str, str, str, str], list[TraceSpan]] = {}
    for span in spans:
        by_identity.setdefault((span.service, span.scope, span.kind, span.name), []).append(span)
    found: dict[str, TraceSpan] = {}
    for key, (service, scope, kind, name, _parent) in expected.items():
        matches = by_identity.pop((service, scope, kind, name), [])
        assert len(matches) == 1, (
            f"expected one {kind} span {name!r} of {service} ({scope}), found {len(matches)}:\n{tree}"
        )
        found[key] = matches[0]
    assert not by_identity, f"unexpected spans {sorted(by_identity)} in the trace:\n{tree}"
    ids = {"caller": caller, **{key: span.span_id for key, span in found.items()}}
    for key, (_service, _scope, _kind, name, parent) in expected.items():
        span = found[key]
        assert span.trace_id == trace_id
        assert span.parent_id == ids[parent], (
            f"span {name!r} ({key}): expected the parent {parent} ({ids[parent]}), "
            f"found {span.parent_id}:\n{tree}"
        )


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_one_trace_across_three_functions_and_their_daprds(
    protocol: str,
    tmp_path: Path,
    fresh_jaeger: Jaeger,
    redis_server: RedisServer,
    embedded: Embedded,
    funcd_group: FuncdFactory,
) -> None:
    tok = uuid.uuid4().hex[:8]
    orders, processed = f"orders-{tok}", f"processed-{tok}"
    names = ("http-to-pubsub", "pubsub-consumer", "pubsub-sink")
    topics = {"events": orders, "orders": orders, "processed": processed}
    servers = start_chain(
        names,
        protocol,
        tmp_path,
        fresh_jaeger.otlp_grpc_endpoint,
        topics,
        redis_server,
        embedded,
        funcd_group,
    )

    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    customer = f"ada-{tok}"  # the state store is the session's Redis: a total of this test's own
    reply = requests.post(
        servers["http-to-pubsub"].url,
        json={"customer": customer, "amount": 5},
        headers={"traceparent": f"00-{trace_id}-{caller}-01"},
        timeout=30,
    )
    assert (reply.status_code, reply.json()) == (202, {"published": True})
    sink = servers["pubsub-sink"]
    poll(
        lambda: any(
            m.startswith("processed order ") and f"'customer': '{customer}', 'customer_total': 5" in m
            for m in sink.messages("info")
        ),
        "pubsub-sink to log the processed order",
        server=sink,
    )

    expected = expected_spans(protocol, orders, processed)
    traces = JaegerTraces(fresh_jaeger)
    spans = traces.wait_for(trace_id, len(expected), timeout=20)
    check_tree(spans, expected, trace_id, caller)

    # Once every funcd (and with it its daprd) has stopped and flushed, the trace is unchanged (nothing
    # came late or twice), and no span of the request went into another trace.
    stop_chain({name: servers[name] for name in names}, embedded)
    check_tree(traces.trace(trace_id), expected, trace_id, caller)
    assert traces.services() == sorted(names)
    # The only other traces in this Jaeger are daprd's root spans of funcd's own calls to daprd's
    # metadata API (the drain reads the app health threshold there at SIGTERM).
    others = [traces.trace(t) for name in names for t in traces.trace_ids(name) - {trace_id}]
    metadata_call = [(DAPRD, "client", "/v1.0/metadata", "")]
    unexpected = [o for o in others if [(s.scope, s.kind, s.name, s.parent_id) for s in o] != metadata_call]
    assert not unexpected, "spans outside the request's trace:\n" + "\n".join(map(span_tree, unexpected))
    print(f"\n{protocol}:\n{span_tree(spans)}")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_dead_collector_slows_nothing_and_loses_nothing(
    protocol: str,
    tmp_path: Path,
    redis_server: RedisServer,
    embedded: Embedded,
    funcd_group: FuncdFactory,
) -> None:
    tok = uuid.uuid4().hex[:8]
    topic = f"events-{tok}"
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    names = ("http-to-pubsub", "pubsub-sink")
    servers = start_chain(
        names,
        protocol,
        tmp_path,
        dead,
        {"events": topic, "processed": topic},
        redis_server,
        embedded,
        funcd_group,
    )
    front, sink = servers["http-to-pubsub"], servers["pubsub-sink"]
    for server in servers.values():  # each local daprd exports to the dead port too
        assert any(f"spans to {dead}" in m for m in server.messages("info")), server.output
    count = 20
    trace_ids = [secrets.token_hex(16) for _ in range(count)]
    started = time.monotonic()
    for n, trace_id in enumerate(trace_ids):
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        reply = requests.post(front.url, json={"n": n}, headers={"traceparent": traceparent}, timeout=10)
        assert reply.status_code == 202, reply.text
    took = time.monotonic() - started
    assert took < 10, f"{count} requests took {took:.1f}s with the collector down"

    def delivered() -> dict[int, str]:
        """n → the trace id the sink logged it under."""
        out = {}
        for line in sink.json_logs():
            message = line.get("message", "")
            if message.startswith("processed order ") and message.endswith("}"):
                out[int(message.rsplit("'n': ", 1)[1].rstrip("}"))] = line.get("trace_id", "")
        return out

    poll(lambda: len(delivered()) == count, f"pubsub-sink to log all {count} events", server=sink)
    # Traced all the way: each event reached the sink in the trace of its request (through both daprds).
    assert delivered() == dict(enumerate(trace_ids))
    # Every delivery was acknowledged: nothing pending in the sink's consumer group (its app id).
    poll(lambda: pending(redis_server, topic, "pubsub-sink") == 0, "no pending deliveries", server=sink)
    assert len([m for m in sink.messages("info") if m.startswith("processed order ")]) == count

    # Each stops within its drain (daprd's health threshold) plus the plugin's flush wait.
    for name, seconds in stop_chain({name: servers[name] for name in names}, embedded).items():
        assert seconds < 12, f"{name} took {seconds:.1f}s to stop with the collector down"


CARRIER_RECORDER = """
import json
import os


def handler(context, event):
    headers = {
        k: (v.hex() if isinstance(v, bytes) else v)
        for k, v in event.headers.items()
        if k in ("traceparent", "tracestate", "grpc-trace-bin")
    }
    line = {"data": event.data, "headers": headers, "extension": event.extensions.get("traceparent"),
            "carrier": event.trace_carrier}
    with open(os.environ["FUNCD_E2E_RECORD"], "a") as f:
        f.write(json.dumps(line) + "\\n")
"""


def publish_traced(sidecar: Sidecar, topic: str, data: bytes, trace_id: str) -> None:
    """PublishEvent on daprd's gRPC API with a sampled ``traceparent`` in the metadata, as funcd does."""
    channel = grpc.insecure_channel(sidecar.grpc_address)
    try:
        api_service_v1.DaprStub(channel).PublishEvent(
            api_v1.PublishEventRequest(
                pubsub_name="pubsub", topic=topic, data=data, data_content_type="application/json"
            ),
            metadata=[("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01")],
            timeout=10,
        )
    finally:
        channel.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sampling_off_in_daprd(
    protocol: str, tmp_path: Path, redis_server: RedisServer, daprd: DaprdFactory, funcd_group: FuncdFactory
) -> None:
    """``samplingRate: "0"``. On the delivering daprd: no span, so no trace header reaches the function,
    and the CloudEvent's ``traceparent`` (``TopicEventRequest.extensions`` over gRPC, the body over HTTP)
    carries the trace on. On the publishing daprd: no tracing interceptor, so the CloudEvent gets no
    ``traceparent`` and the trace ends there."""
    tok = uuid.uuid4().hex[:8]
    topic = f"unsampled-{tok}"
    off = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "sampling-off"},
        "spec": {"tracing": {"samplingRate": "0"}},
    }
    pubsub = redis_pubsub("pubsub", redis_server, f"c-{tok}")
    record = tmp_path / "record.jsonl"
    context = (
        f"name: carrier\ntriggers:\n  dapr:\n    - {{name: pubsub, type: pubsub.redis, topic: {topic}}}\n"
    )
    folder = write_function(tmp_path / "fn", CARRIER_RECORDER, context)
    app_port = free_port()
    serial = ["--app-max-concurrency", "1"] if protocol == "http" else []  # see test_funcd_async_runtime
    sub = daprd(app_port, [pubsub], off, protocol, wait="outbound", extra_args=serial)
    port_args = ["--dapr-port", str(app_port)] if protocol == "grpc" else []
    funcd_group(
        folder, "--app-protocol", protocol, *port_args, "--dapr-address", sub.grpc_address, "--workers", "1",
        env={**sub.env(), "FUNCD_E2E_RECORD": str(record)},
        port=free_port() if protocol == "grpc" else app_port,
    )  # fmt: skip
    sub.wait_ready(full=True)
    sampled, unsampled = secrets.token_hex(16), secrets.token_hex(16)
    publish_traced(daprd(None, [pubsub]), topic, b'{"n": 1}', sampled)  # no Configuration: rate 1e-4
    publish_traced(daprd(None, [pubsub], off), topic, b'{"n": 2}', unsampled)

    def received() -> dict[int, dict[str, Any]]:
        lines = [json.loads(x) for x in record.read_text().splitlines()] if record.exists() else []
        return {line["data"]["n"]: line for line in lines}

    got = poll(lambda: len(received()) == 2 and received(), "both deliveries")
    assert [got[n]["headers"] for n in (1, 2)] == [{}, {}], "expected no trace headers with sampling off"
    assert trace_id_of(got[1]["extension"] or "") == sampled, got[1]
    assert got[1]["carrier"]["traceparent"] == got[1]["extension"]
    assert (got[2]["extension"], got[2]["carrier"]) == ("", {}), got[2]  # the key is there, empty
