"""Jaeger v2 (testbin build) stores a span sent over OTLP/HTTP and returns it from its query API."""

from __future__ import annotations

import secrets
import time

import requests

from tests.e2e.stack_jaeger import Jaeger
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
