"""Jaeger v2 (testbin build) stores a span sent over OTLP/HTTP and returns it from its query API, and
serves UI files from a directory (how docs/screenshots/take.py shows the Jaeger UI)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import requests

from tests.e2e.conftest import _stack, require_binary
from tests.e2e.stack_jaeger import Jaeger, start_jaeger
from tests.e2e.stack_procs import wait_until


def _otlp_json_span(service: str, trace_id: str, span_id: str, name: str) -> dict[str, object]:
    now = time.time_ns()
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "funcd-e2e"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": name,
                                "kind": 2,
                                "startTimeUnixNano": str(now - 5_000_000),
                                "endTimeUnixNano": str(now),
                                "attributes": [{"key": "funcd.test", "value": {"stringValue": "smoke"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_span_is_returned_by_query_api(jaeger: Jaeger) -> None:
    service, trace_id, span_id = (
        f"funcd-e2e-{secrets.token_hex(3)}",
        secrets.token_hex(16),
        secrets.token_hex(8),
    )
    response = requests.post(
        f"{jaeger.otlp_http_url}/v1/traces",
        json=_otlp_json_span(service, trace_id, span_id, "smoke-span"),
        timeout=10,
    )
    assert response.status_code == 200, response.text

    def fetch() -> dict | None:
        reply = requests.get(f"{jaeger.query_url}/api/traces/{trace_id}", timeout=5)
        return reply.json() if reply.status_code == 200 and reply.json().get("data") else None

    trace = wait_until(fetch, "the span in Jaeger's query API", 30, [jaeger.proc], interval=0.2)["data"][0]
    assert trace["traceID"] == trace_id
    [span] = trace["spans"]
    assert (span["spanID"], span["operationName"]) == (span_id, "smoke-span")
    assert trace["processes"][span["processID"]]["serviceName"] == service
    assert service in requests.get(f"{jaeger.query_url}/api/services", timeout=5).json()["data"]


def test_query_port_serves_ui_assets_from_a_directory(tmp_path: Path) -> None:
    # Our own index.html with the placeholder Jaeger fills in: the real UI is not needed to show that
    # ``ui.assets_path`` is read and the directory is served (the UI is a client-side app, so any path
    # outside /api and /static answers with index.html).
    assets = tmp_path / "ui"
    (assets / "static").mkdir(parents=True)
    (assets / "index.html").write_text(
        '<html><head><base href="/" /><script>// JAEGER_VERSION = DEFAULT_VERSION;</script></head>'
        "<body>funcd-ui-marker</body></html>"
    )
    (assets / "static" / "app.js").write_text("console.log('funcd');")
    jaeger = start_jaeger(require_binary("jaeger"), _stack.version("jaeger"), tmp_path / "jaeger", assets)
    try:
        for path in ("/", "/search", "/trace/0123456789abcdef"):
            reply = requests.get(f"{jaeger.query_url}{path}", timeout=5)
            assert reply.status_code == 200 and "funcd-ui-marker" in reply.text, (path, reply.text[:300])
            assert "DEFAULT_VERSION" not in reply.text, f"Jaeger did not fill in its version: {reply.text}"
        script = requests.get(f"{jaeger.query_url}/static/app.js", timeout=5)
        assert (script.status_code, script.text) == (200, "console.log('funcd');")
        services = requests.get(f"{jaeger.query_url}/api/services", timeout=5)  # the API is still the API
        assert services.status_code == 200 and "data" in services.json(), services.text[:300]
    finally:
        jaeger.stop()
