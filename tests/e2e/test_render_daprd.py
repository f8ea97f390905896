"""``dapr.mode: container``: the daprd container as rendered (its arguments, and the resources and
Configuration from its Secret) runs as a real daprd in standalone mode and publishes to a real Redis.
Only the paths and ports are moved, from the pod's to this host's."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from funcd_controller.render import render_all

from functions_framework.model import parse_function
from tests.e2e.conftest import require_binary
from tests.e2e.stack_procs import free_port, http_status, start, wait_until
from tests.e2e.stack_redis import RedisServer


def function(redis: str) -> dict[str, Any]:
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
                "tracing": {"enabled": True, "provider": {"name": "opentelemetry"}},
            },
        },
    }


def test_rendered_daprd_runs_and_publishes(redis_server: RedisServer, tmp_path: Path) -> None:
    objects = render_all(parse_function(function(redis_server.address)))
    assert [o["kind"] for o in objects] == ["Secret", "Deployment", "Service"]
    secret, deployment = objects[0], objects[1]
    components, config = tmp_path / "components", tmp_path / "config"
    components.mkdir()
    config.mkdir()
    for key, text in secret["stringData"].items():
        (config if key == "config.yaml" else components).joinpath(key).write_text(text)
    [daprd] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "daprd"]
    args = list(daprd["args"])
    http_port = free_port()
    moved = {
        "--resources-path": str(components),
        "--config": str(config / "config.yaml"),
        "--dapr-http-port": str(http_port),
        "--dapr-grpc-port": str(free_port()),
        "--metrics-port": str(free_port()),
    }
    for flag, value in moved.items():
        args[args.index(flag) + 1] = value
    proc = start("daprd-rendered", [str(require_binary("daprd")), *args], tmp_path / "logs")
    try:
        url = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: http_status(f"{url}/v1.0/healthz") == 204, "the rendered daprd", 30, [proc])
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
