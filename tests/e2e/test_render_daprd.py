"""``dapr.mode: container``: the daprd container as rendered (its arguments, and the resources and
Configuration from its Secret) runs as a real daprd in standalone mode and publishes to a real Redis.
Only the paths and ports are moved, from the pod's to this host's."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from funcd_controller.render import render_all

from functions_framework.model import parse_function
from tests.e2e.conftest import require_binary
from tests.e2e.stack_jaeger import Jaeger
from tests.e2e.stack_procs import Proc, free_port, http_status, start, wait_until
from tests.e2e.stack_redis import RedisServer


def function(redis: str, tracing: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "funcd.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "sender", "namespace": "edge", "uid": "u-1"},
        "spec": {
            "image": "funcd/sender:1",
            "serving": {
                "dapr": {"mode": "container"},
                "outputs": [{"dapr": {"name": "events", "topic": "sent"}}],
                "pubsub": {
                    "events": {"type": "pubsub.redis", "metadata": [{"name": "redisHost", "value": redis}]}
                },
                "tracing": tracing or {"enabled": True, "provider": {"name": "opentelemetry"}},
            },
        },
    }


def start_rendered_daprd(fn: dict[str, Any], tmp_path: Path) -> tuple[Proc, str]:
    """The daprd container of ``fn`` as rendered, on this host; returns it and its HTTP API's URL."""
    objects = render_all(parse_function(fn))
    assert [o["kind"] for o in objects] == ["Secret", "Deployment", "Service"]
    secret, deployment = objects[0], objects[1]
    components, config = tmp_path / "components", tmp_path / "config"
    components.mkdir()
    config.mkdir()
    for key, text in secret["stringData"].items():
        (config if key == "config.yaml" else components).joinpath(key).write_text(text)
    [daprd] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "daprd"]
    args = list(daprd["args"])
    ports: list[int] = []
    while len(ports) < 3:  # a released port may come back from the next free_port()
        port = free_port()
        if port not in ports:
            ports.append(port)
    http_port, grpc_port, metrics_port = ports
    moved = {
        "--resources-path": str(components),
        "--config": str(config / "config.yaml"),
        "--dapr-http-port": str(http_port),
        "--dapr-grpc-port": str(grpc_port),
        "--metrics-port": str(metrics_port),
    }
    for flag, value in moved.items():
        args[args.index(flag) + 1] = value
    proc = start("daprd-rendered", [str(require_binary("daprd")), *args], tmp_path / "logs")
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(lambda: http_status(f"{url}/v1.0/healthz") == 204, "the rendered daprd", 30, [proc])
    except BaseException:
        proc.stop()
        raise
    return proc, url


def test_rendered_daprd_runs_and_publishes(redis_server: RedisServer, tmp_path: Path) -> None:
    proc, url = start_rendered_daprd(function(redis_server.address), tmp_path)
    try:
        with urllib.request.urlopen(f"{url}/v1.0/metadata", timeout=5) as resp:
            metadata = json.load(resp)
        assert metadata["id"] == "sender-edge"
        assert [c["name"] for c in metadata["components"]] == ["sender-events"]
        request = urllib.request.Request(
            f"{url}/v1.0/publish/sender-events/sent",
            data=b'{"n": 1}',
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 204
        assert redis_server.command("XLEN", "sent") == 1
    finally:
        proc.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_rendered_daprd_sends_its_spans_to_the_functions_endpoint(
    protocol: str, redis_server: RedisServer, jaeger: Jaeger, tmp_path: Path
) -> None:
    """The function's endpoint, written as the OpenTelemetry SDK takes it (a URL with a scheme, and
    for OTLP/HTTP the traces path), reaches the same collector from the rendered daprd."""
    endpoint = (
        f"http://{jaeger.otlp_grpc_endpoint}" if protocol == "grpc" else f"{jaeger.otlp_http_url}/v1/traces"
    )
    exporter = {"name": "otlp", "endpoint": endpoint, "protocol": protocol}
    tracing = {"enabled": True, "provider": {"name": "opentelemetry", "exporter": exporter}}
    fn = function(redis_server.address, tracing)
    fn["metadata"]["name"] = f"sender{protocol.partition('/')[0]}"
    proc, url = start_rendered_daprd(fn, tmp_path)
    trace_id = secrets.token_hex(16)
    try:
        request = urllib.request.Request(
            f"{url}/v1.0/publish/{fn['metadata']['name']}-events/traced",
            data=b'{"n": 1}',
            headers={
                "content-type": "application/json",
                "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 204

        def spans() -> list[tuple[str, str]]:
            """(service, operation) of each span of the trace in Jaeger."""
            try:
                with urllib.request.urlopen(f"{jaeger.query_url}/api/traces/{trace_id}", timeout=5) as resp:
                    data = json.load(resp)["data"]
            except urllib.error.HTTPError:
                return []
            return [
                (t["processes"][s["processID"]]["serviceName"], s["operationName"])
                for t in data
                for s in t["spans"]
            ]

        found = wait_until(spans, f"daprd's spans of trace {trace_id} in Jaeger", 30, [proc, jaeger.proc])
        name = fn["metadata"]["name"]
        assert (f"{name}-edge", f"/v1.0/publish/{name}-events/traced") in found, found
    finally:
        proc.stop()
