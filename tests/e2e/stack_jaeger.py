"""Jaeger v2 for tests: in-memory storage, OTLP in, query API out, all on loopback ports.

With ``ui_assets`` (a built Jaeger UI, testbin/jaeger_ui.py) the query port serves the UI too;
tests do not need it, docs/screenshots/take.py does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.stack_procs import HOST, Proc, free_port, http_status, start, wait_until


@dataclass
class Jaeger:
    """A running Jaeger v2 (an OpenTelemetry Collector with Jaeger's storage and query)."""

    proc: Proc
    otlp_grpc_port: int
    otlp_http_port: int
    query_port: int
    health_port: int
    config_path: Path
    version: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    @property
    def otlp_grpc_endpoint(self) -> str:
        """host:port for OTLP/gRPC exporters."""
        return f"{HOST}:{self.otlp_grpc_port}"

    @property
    def otlp_http_url(self) -> str:
        """Base URL for OTLP/HTTP exporters (POST traces to ``<url>/v1/traces``)."""
        return f"http://{HOST}:{self.otlp_http_port}"

    @property
    def query_url(self) -> str:
        """Base URL of the query API: ``/api/services``, ``/api/traces?service=...``, ``/api/traces/<id>``."""
        return f"http://{HOST}:{self.query_port}"

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"jaeger log ({self.proc.log_path})", self.proc.log_tail(40))]

    def stop(self) -> None:
        self.proc.stop()


def jaeger_config(
    otlp_grpc: int,
    otlp_http: int,
    query_http: int,
    query_grpc: int,
    health: int,
    ui_assets: Path | None = None,
) -> dict[str, Any]:
    store = "memstore"
    query: dict[str, Any] = {
        "storage": {"traces": store},
        # No self-tracing: it exports to localhost:4317 (nothing there) and holds up shutdown.
        "enable_tracing": False,
        "http": {"endpoint": f"{HOST}:{query_http}"},
        "grpc": {"endpoint": f"{HOST}:{query_grpc}"},
    }
    if ui_assets is not None:
        query["ui"] = {"assets_path": str(ui_assets)}
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
        },
        "extensions": {
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"{HOST}:{health}"}},
            "jaeger_storage": {"backends": {store: {"memory": {"max_traces": 10000}}}},
            "jaeger_query": query,
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{HOST}:{otlp_grpc}"},
                    "http": {"endpoint": f"{HOST}:{otlp_http}"},
                }
            }
        },
        "processors": {"batch": {"timeout": "100ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": store}},
    }


def start_jaeger(binary: Path, version: str, workdir: Path, ui_assets: Path | None = None) -> Jaeger:
    """Start Jaeger and wait for its health and query API; ``ui_assets`` serves a built UI."""
    otlp_grpc, otlp_http, query_http, query_grpc, health = (free_port() for _ in range(5))
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "jaeger.yaml"  # JSON is YAML
    config_path.write_text(
        json.dumps(jaeger_config(otlp_grpc, otlp_http, query_http, query_grpc, health, ui_assets), indent=2)
    )
    proc = start("jaeger", [str(binary), "--config", str(config_path)], workdir / "logs")
    jaeger = Jaeger(proc, otlp_grpc, otlp_http, query_http, health, config_path, version)
    try:
        wait_until(lambda: http_status(f"http://{HOST}:{health}/status") == 200, "jaeger health", 60, [proc])
        wait_until(
            lambda: http_status(f"{jaeger.query_url}/api/services") == 200, "jaeger query API", 30, [proc]
        )
    except BaseException:
        proc.stop()
        raise
    return jaeger
