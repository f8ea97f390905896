"""Helpers for the tracing end-to-end tests: traced copies of the samples, and Jaeger's view of a trace.

``traced_sample`` copies a sample folder and edits its ``function.yaml`` the way a user would: tracing
on with an OTLP exporter, topics renamed (each test has its own streams on the session Redis), and a
``components/`` folder with Redis pub/sub and state, so ``funcd run``'s local daprd uses the real broker.

``JaegerTraces`` reads Jaeger's query API (``/api/traces/<id>``, ``/api/traces?service=``) into
``TraceSpan`` rows: span id, parent span id (its ``CHILD_OF`` reference), ``span.kind``, service name and
instrumentation scope (``funcd_tracing`` for funcd's spans, ``dapr-diagnostics`` for daprd's).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.e2e.stack_jaeger import Jaeger
from tests.e2e.stack_redis import RedisServer
from tests.support import SAMPLES


def redis_components(
    redis: RedisServer, pubsubs: Sequence[str], states: Sequence[str]
) -> list[dict[str, Any]]:
    meta = [
        {"name": "redisHost", "value": redis.address},
        {"name": "redisPassword", "value": ""},
        {"name": "enableTLS", "value": "false"},
    ]
    docs = [(name, "pubsub.redis") for name in pubsubs] + [(name, "state.redis") for name in states]
    return [
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": name},
            "spec": {"type": type_, "version": "v1", "metadata": meta},
        }
        for name, type_ in docs
    ]


def traced_sample(
    sample: str,
    dest: Path,
    tracing: Mapping[str, Any],
    topics: Mapping[str, str],
    redis: RedisServer,
) -> Path:
    """A copy of ``samples/<sample>`` with ``spec.serving.tracing`` set, every topic renamed through
    ``topics`` (a topic not in it is an error), and Redis components for its pub/subs and states."""
    folder = dest / sample
    shutil.copytree(SAMPLES / sample, folder)
    resource = yaml.safe_load((folder / "function.yaml").read_text())
    serving = resource["spec"]["serving"]
    serving["tracing"] = dict(tracing)
    entries = [*serving.get("triggers", {}).get("dapr", []), *(o["dapr"] for o in serving.get("outputs", []))]
    for entry in entries:
        if "topic" in entry:
            entry["topic"] = topics[entry["topic"]]
    (folder / "function.yaml").write_text(yaml.safe_dump(resource, sort_keys=False))
    components = folder / "components"
    components.mkdir()
    for doc in redis_components(redis, sorted(serving.get("pubsub", {})), sorted(serving.get("states", {}))):
        (components / f"{doc['metadata']['name']}.yaml").write_text(json.dumps(doc))  # JSON is YAML
    return folder


def otlp_tracing(endpoint: str) -> dict[str, Any]:
    """``spec.serving.tracing`` exporting over OTLP/gRPC to ``endpoint`` (host:port)."""
    return {
        "enabled": True,
        "provider": {
            "name": "opentelemetry",
            "exporter": {"name": "otlp", "endpoint": endpoint, "protocol": "grpc"},
        },
    }


@dataclass(frozen=True)
class TraceSpan:
    """One span as Jaeger's query API returns it."""

    span_id: str
    """The span's id (16 hex digits)."""
    parent_id: str
    """The span id of its ``CHILD_OF`` reference, or '' for a root."""
    trace_id: str
    """The trace id (32 hex digits)."""
    name: str
    """The operation name."""
    kind: str
    """The ``span.kind`` tag: server, client, producer, consumer, internal."""
    service: str
    """The service name of the span's process."""
    scope: str
    """The ``otel.scope.name`` tag: ``funcd_tracing`` (funcd) or ``dapr-diagnostics`` (daprd)."""
    start: int
    """Start time (microseconds since the epoch)."""
    tags: Mapping[str, Any]
    """All tags, by key."""


def spans_of(trace: Mapping[str, Any]) -> list[TraceSpan]:
    processes = trace["processes"]
    out = []
    for span in trace["spans"]:
        tags = {t["key"]: t["value"] for t in span.get("tags", [])}
        process = processes[span["processID"]]
        parents = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        out.append(
            TraceSpan(
                span_id=span["spanID"],
                parent_id=parents[0] if parents else "",
                trace_id=span["traceID"],
                name=span["operationName"],
                kind=str(tags.get("span.kind", "")),
                service=process["serviceName"],
                scope=str(tags.get("otel.scope.name", "")),
                start=int(span["startTime"]),
                tags=tags,
            )
        )
    return sorted(out, key=lambda s: s.start)


class JaegerTraces:
    """Jaeger's query API, read with bounded polls."""

    def __init__(self, jaeger: Jaeger) -> None:
        self.jaeger = jaeger

    def trace(self, trace_id: str) -> list[TraceSpan]:
        """The spans of one trace ([] when Jaeger has none)."""
        reply = requests.get(f"{self.jaeger.query_url}/api/traces/{trace_id}", timeout=5)
        if reply.status_code == 404:
            return []
        reply.raise_for_status()
        data = reply.json().get("data") or []
        assert len(data) <= 1, f"expected at most one trace {trace_id} in Jaeger, found {len(data)}"
        return spans_of(data[0]) if data else []

    def services(self) -> list[str]:
        reply = requests.get(f"{self.jaeger.query_url}/api/services", timeout=5)
        reply.raise_for_status()
        return sorted(reply.json().get("data") or [])

    def trace_ids(self, service: str) -> set[str]:
        """Every trace id Jaeger holds with a span of ``service``."""
        reply = requests.get(
            f"{self.jaeger.query_url}/api/traces", params={"service": service, "limit": 1000}, timeout=5
        )
        reply.raise_for_status()
        return {t["traceID"] for t in reply.json().get("data") or []}

    def wait_for(self, trace_id: str, count: int, timeout: float = 20) -> list[TraceSpan]:
        """Poll until the trace has ``count`` spans; fail with what is there when it has not by then
        (or when it has more)."""
        deadline = time.monotonic() + timeout
        spans: list[TraceSpan] = []
        while time.monotonic() < deadline:
            spans = self.trace(trace_id)
            if len(spans) >= count:
                break
            time.sleep(0.1)
        assert len(spans) == count, (
            f"expected {count} spans in trace {trace_id} within {timeout:g}s, found {len(spans)}:\n"
            + span_tree(spans)
        )
        return spans


def span_tree(spans: Sequence[TraceSpan]) -> str:
    """The spans as an indented tree (children under their parent, by start time)."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[TraceSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start):
            lines.append(
                f"{'  ' * depth}{span.service} ({span.scope}) {span.kind.upper()} {span.name!r} "
                f"span={span.span_id} parent={span.parent_id or '-'}"
            )
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)
