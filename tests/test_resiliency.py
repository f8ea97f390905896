"""Dead-letter topics without a resiliency policy: the start-up warning, the Resiliency resources funcd
reads in a components folder, the policy it writes for a local daprd, and daprd's app health settings
read for the drain."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from functions_framework.model import parse_context
from functions_framework.runtime.drain import AppHealthCheck, answer_ready, read_app_health
from functions_framework.runtime.lifecycle import Lifecycle
from functions_framework.runtime.resiliency import dead_letter_warnings, local_retry_policy, retry_targets
from tests.support import write_function

CONTEXT = {
    "name": "f",
    "triggers": {
        "dapr": [
            {"name": "orders", "type": "pubsub.redis", "topic": "orders", "deadLetterTopic": "orders-dead"},
            {"name": "plain", "type": "pubsub.redis", "topic": "other"},
        ]
    },
}

RESILIENCY = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: orders}
spec: {type: pubsub.redis, version: v1}
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r}
spec:
  policies:
    retries:
      three: {policy: constant, duration: 1s, maxRetries: 3}
  targets:
    components:
      orders: {inbound: {retry: three}}
      store: {outbound: {retry: three}}
"""


def test_retry_targets_are_read_from_resiliency_resources(tmp_path):
    (tmp_path / "all.yaml").write_text(RESILIENCY)
    (tmp_path / "broken.yml").write_text("kind: [")
    assert retry_targets(tmp_path) == {"orders"}  # an outbound-only target does not count


def test_warnings_name_the_input_topic_and_component():
    ctx = parse_context(CONTEXT)
    [warning] = dead_letter_warnings(ctx, None)
    assert warning.startswith(
        "input 'orders' has the dead-letter topic 'orders-dead': Dapr sends an event the function answers "
        "RETRY (or raises on) to it at once, without retrying, unless the sidecar has a resiliency policy "
        "with an inbound retry for component 'orders'"
    )
    [local] = dead_letter_warnings(ctx, set(), "components/")
    assert "and components/ has no Resiliency resource with an inbound retry for component 'orders'" in local
    assert dead_letter_warnings(ctx, {"orders"}, "components/") == []


def test_the_local_policy_targets_each_component_inbound():
    doc = local_retry_policy(["a", "b"])
    assert doc["kind"] == "Resiliency"
    assert doc["spec"]["targets"]["components"] == {
        "a": {"inbound": {"retry": "funcd-inbound"}},
        "b": {"inbound": {"retry": "funcd-inbound"}},
    }
    assert doc["spec"]["policies"]["retries"]["funcd-inbound"]["maxRetries"] == 10


def test_an_external_sidecar_gets_the_warning_at_start_up(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", "def handler(c, e):\n    pass\n", json.dumps(CONTEXT))
    server = funcd(str(folder), "--dapr-port", "0", "--dapr-address", dapr_api.address)
    warnings = [x["message"] for x in server.json_logs() if x.get("level") == "warning"]
    assert [w for w in warnings if "dead-letter topic" in w] == dead_letter_warnings(
        parse_context(CONTEXT), None
    )


# ------------------------------------------------------------------ daprd's app health, for the drain


@pytest.fixture
def metadata_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A stand-in for daprd's metadata endpoint that answers what the test puts in the dict."""
    answer: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer).encode() if self.path == "/v1.0/metadata" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answer
    server.shutdown()
    server.server_close()


def test_read_app_health(metadata_server):
    url, answer = metadata_server
    answer["appConnectionProperties"] = {"port": 1, "protocol": "grpc"}
    assert read_app_health(url, None) == AppHealthCheck(enabled=False)
    answer["appConnectionProperties"]["health"] = {
        "healthCheckPath": "/readyz",
        "healthProbeInterval": "1m0.5s",
        "healthProbeTimeout": "500ms",
        "healthThreshold": 2,
    }
    assert read_app_health(url, None) == AppHealthCheck(True, 2, 60.5, "/readyz")
    assert read_app_health("http://127.0.0.1:9", None) is None  # nothing listens there


def test_the_ready_path_counts_daprd_probes_but_not_the_kubelets_or_others():
    lifecycle = Lifecycle()
    daprd = {"HTTP_USER_AGENT": "Go-http-client/1.1"}
    kubelet = {"HTTP_USER_AGENT": "kube-probe/1.33"}
    assert answer_ready(lifecycle, daprd, dapr_http=True)
    lifecycle.start_draining()
    assert not answer_ready(lifecycle, kubelet, dapr_http=True)
    assert not answer_ready(lifecycle, {"HTTP_USER_AGENT": "python-requests/2.32"}, dapr_http=True)
    assert not answer_ready(lifecycle, daprd, dapr_http=True)
    assert not answer_ready(lifecycle, daprd, dapr_http=False)  # no Dapr HTTP routes: not daprd's probe
    assert (lifecycle.health_probes, lifecycle.unhealthy_answers) == (2, 1)
