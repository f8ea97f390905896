"""One trace across real pods: an HTTP function publishes, a consumer handles the event, and Jaeger holds
the whole path as one trace.

http-to-pubsub and pubsub-consumer run as Functions on the e2e node, built with ``funcd build`` on the
runtime image (the tracing plugin inside), each with the daprd container the controller renders
(``dapr.mode: container``, the daprd image from ``make image``) and ``serving.tracing`` naming the
session Jaeger's OTLP/gRPC port, relayed into the pod network. One HTTP request with a known
``traceparent`` goes to http-to-pubsub's pod; the test asserts that Jaeger returns that trace with
spans of both functions (the Python SDK's processes, service ``<fn>``) and of both daprds (service
``<fn>-<namespace>``), every span's parent in the trace (the root's is the request's), and the chain
http-to-pubsub's call -> its publish -> its daprd's PublishEvent -> pubsub-consumer's call (and, beside
through the consumer's daprd's ``pubsub/<topic>`` delivery span, which daprd 1.18 hands to a gRPC app as
``traceparent`` metadata) -> the consumer's daprd's state and publish calls.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.e2e.stack_funcd_pods import (
    PodImages,
    consumer_function,
    delete_consumer_streams,
    deploy_pipeline,
    describe,
    processed_numbers,
    publisher_function,
)
from tests.e2e.stack_jaeger import Jaeger
from tests.e2e.stack_kube import Kubectl
from tests.e2e.stack_node import Node
from tests.e2e.stack_procs import Proc, StackError, wait_until
from tests.e2e.stack_redis import RedisServer

pytestmark = pytest.mark.e2e


def tracing_section(otlp: str) -> dict[str, Any]:
    """``serving.tracing`` exporting over OTLP/gRPC to ``otlp`` (``host:port`` as pods reach it)."""
    exporter = {"name": "otlp", "endpoint": f"http://{otlp}", "protocol": "grpc"}
    return {"enabled": True, "provider": {"name": "opentelemetry", "exporter": exporter}}


@dataclass(frozen=True)
class Span:
    """A span as Jaeger's query API returns it, with its process's service."""

    span_id: str
    parent_id: str
    service: str
    python: bool
    """Reported by the OpenTelemetry Python SDK (a function), not by daprd (Go)."""
    operation: str

    def __str__(self) -> str:
        kind = "python" if self.python else "go"
        return f"{self.span_id} <- {self.parent_id or '-'} {self.service} ({kind}) {self.operation}"


def jaeger_spans(jaeger: Jaeger, trace_id: str) -> list[Span]:
    """Every span of the trace in Jaeger; empty while it has none."""
    try:
        with urllib.request.urlopen(f"{jaeger.query_url}/api/traces/{trace_id}", timeout=5) as resp:
            data = json.load(resp).get("data") or []
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise
    out = []
    for trace in data:
        processes = trace["processes"]
        for s in trace["spans"]:
            process = processes[s["processID"]]
            tags = {t["key"]: t["value"] for t in process.get("tags") or []}
            parents = [r["spanID"] for r in s.get("references") or [] if r["refType"] == "CHILD_OF"]
            out.append(
                Span(
                    span_id=s["spanID"],
                    parent_id=parents[0] if parents else "",
                    service=process["serviceName"],
                    python=tags.get("telemetry.sdk.language") == "python",
                    operation=s["operationName"],
                )
            )
    return out


def ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    """The span's parents, nearest first, as far as the trace has them."""
    out: list[Span] = []
    current = by_id.get(span.parent_id)
    while current is not None and current not in out:
        out.append(current)
        current = by_id.get(current.parent_id)
    return out


def test_an_http_function_and_a_consumer_in_real_pods_give_one_trace_in_jaeger(
    controller: Proc,
    node: Node,
    node_redis: str,
    redis_server: RedisServer,
    pod_images: PodImages,
    kubectl: Kubectl,
    restricted_ns: str,
    jaeger: Jaeger,
) -> None:
    ns, tok = restricted_ns, uuid.uuid4().hex[:8]
    procs = [controller, jaeger.proc, *node.group.procs]
    otlp = node.expose(jaeger.otlp_grpc_port)
    consumer = consumer_function(pod_images, node_redis, tok, scale=False)
    consumer["spec"]["serving"]["tracing"] = tracing_section(otlp)
    publisher = publisher_function(pod_images, node_redis, tok)
    publisher["spec"]["serving"]["tracing"] = tracing_section(otlp)
    producer_app, consumer_app = f"http-to-pubsub-{ns}", f"pubsub-consumer-{ns}"
    try:
        address = deploy_pipeline(kubectl, ns, consumer, publisher, procs)

        trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
        order = {"n": 7, "customer": "ada", "amount": 3}
        r = requests.post(
            f"http://{address}/",
            json=order,
            headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
            timeout=10,
        )
        assert r.status_code == 202, r.text
        wait_until(
            lambda: processed_numbers(redis_server, tok) == {7},
            "pubsub-consumer to handle the order",
            60,
            procs,
        )

        def complete() -> list[Span]:
            """The trace once Jaeger has every hop: both functions' spans, the publisher's daprd's
            PublishEvent, the consumer's daprd's delivery and its PublishEvent of the result."""
            spans = jaeger_spans(jaeger, trace_id)
            wanted = (
                any(s.python and s.service == "http-to-pubsub" for s in spans),
                any(s.python and s.service == "pubsub-consumer" for s in spans),
                any(s.service == producer_app and s.operation.endswith("/PublishEvent") for s in spans),
                any(s.service == consumer_app and s.operation == f"pubsub/orders-{tok}" for s in spans),
                any(s.service == consumer_app and s.operation.endswith("/PublishEvent") for s in spans),
            )
            return spans if all(wanted) else []

        try:
            spans = wait_until(
                complete, f"both functions' and both daprds' spans of {trace_id} in Jaeger", 60, procs
            )
        except StackError as exc:
            seen = "\n".join(map(str, jaeger_spans(jaeger, trace_id)))
            raise StackError(f"{exc}\nspans of {trace_id} in Jaeger:\n{seen}") from None
        listing = "\n".join(map(str, spans))
        by_id = {s.span_id: s for s in spans}
        orphans = [s for s in spans if s.parent_id not in by_id and s.parent_id != client_span]
        assert not orphans, f"spans whose parent is not in the trace:\n{listing}"
        roots = [s for s in spans if s.parent_id == client_span]
        assert roots and all(s.python and s.service == "http-to-pubsub" for s in roots), listing

        # The chain through the broker: http-to-pubsub's publish -> its daprd's PublishEvent -> the
        # consumer daprd's ``pubsub/<topic>`` delivery span -> the handler's span: daprd (1.17 and later)
        # hands its delivery span to a gRPC app as metadata (1.15 gave it the CloudEvent's traceparent,
        # which made the two spans siblings under that PublishEvent).
        def hops(span: Span) -> list[str]:
            """Who reported the span's ancestors, nearest first, repeats collapsed."""
            out: list[str] = []
            for a in ancestors(span, by_id):
                hop = ("fn:" if a.python else "daprd:") + (
                    "consumer" if "pubsub-consumer" in a.service else "publisher"
                )
                if not out or out[-1] != hop:
                    out.append(hop)
            return out

        handled = [s for s in spans if s.python and s.service == "pubsub-consumer"]
        for span in handled:  # the handler's span, and its own children
            outside = [h for h in hops(span) if h != "fn:consumer"]
            assert outside == ["daprd:consumer", "daprd:publisher", "fn:publisher"], f"{span}\n{listing}"
        [publish] = [
            s for s in spans if not s.python and s.service == producer_app and "PublishEvent" in s.operation
        ]
        assert by_id[publish.parent_id].python and "http-to-pubsub" in by_id[publish.parent_id].service
        delivered = [s for s in spans if s.service == consumer_app and s.operation == f"pubsub/orders-{tok}"]
        assert [s.parent_id for s in delivered] == [publish.span_id], listing
        [process] = [s for s in handled if s.operation == f"orders-{tok} process"]
        assert process.parent_id == delivered[0].span_id, listing
        # The consumer's own calls to its daprd (state, the next publish) are children of its spans.
        calls = [s for s in spans if s.service == consumer_app and s.operation.startswith("/dapr.proto")]
        assert calls and all(
            hops(s)[:4] == ["fn:consumer", "daprd:consumer", "daprd:publisher", "fn:publisher"] for s in calls
        ), listing
    except BaseException:
        print(describe(kubectl, ns, "http-to-pubsub"))
        print(describe(kubectl, ns, "pubsub-consumer"))
        raise
    finally:
        delete_consumer_streams(redis_server, tok)
