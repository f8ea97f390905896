"""daprd sidecars in standalone mode for tests: no placement, scheduler or sentry.

Every sidecar listens on 127.0.0.1 only, on ports picked at start. App IDs resolve through the
testbin build's loopback resolver (a shared directory per test session), never multicast.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.stack_procs import HOST, Proc, free_port, http_status, start, wait_until

Resources = str | Path | Sequence[Mapping[str, Any] | str | Path] | None


def component(
    name: str,
    type_: str,
    metadata: Mapping[str, Any] | None = None,
    version: str = "v1",
    scopes: Sequence[str] = (),
) -> dict[str, Any]:
    """A Dapr Component resource as a dict (``type_`` like ``pubsub.redis``)."""
    spec: dict[str, Any] = {
        "type": type_,
        "version": version,
        "metadata": [{"name": k, "value": str(v)} for k, v in (metadata or {}).items()],
    }
    doc: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": spec,
    }
    if scopes:
        doc["scopes"] = list(scopes)
    return doc


@dataclass
class Sidecar:
    """One running daprd."""

    app_id: str
    app_port: int | None
    app_protocol: str
    http_port: int
    grpc_port: int
    internal_grpc_port: int
    metrics_port: int
    resources_dir: Path
    proc: Proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    @property
    def http_url(self) -> str:
        """Base URL of the Dapr HTTP API, e.g. http://127.0.0.1:PORT (append /v1.0/...)."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """host:port of the Dapr gRPC API (what DaprClient(address=...) takes)."""
        return f"{HOST}:{self.grpc_port}"

    def env(self) -> dict[str, str]:
        """Environment variables the Dapr SDKs read to find this sidecar."""
        return {
            "DAPR_HTTP_PORT": str(self.http_port),
            "DAPR_GRPC_PORT": str(self.grpc_port),
            "DAPR_RUNTIME_HOST": HOST,
            "APP_ID": self.app_id,
        }

    def wait_ready(self, full: bool = True, timeout: float = 60) -> Sidecar:
        """Wait for /v1.0/healthz (full: components loaded and app reachable) or /healthz/outbound."""
        path = "/v1.0/healthz" if full else "/v1.0/healthz/outbound"
        wait_until(
            lambda: http_status(self.http_url + path) == 204,
            f"daprd {self.app_id} {path}",
            timeout,
            [self.proc],
        )
        return self

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines)

    def stop(self) -> None:
        self.proc.stop()


def write_resources(resources: Resources, directory: Path) -> Path:
    """Turn ``resources`` into a resources directory: a directory is used as it is; dicts are
    written as YAML (JSON is YAML) and files are copied into ``directory``."""
    if isinstance(resources, (str, Path)):
        path = Path(resources)
        if not path.is_dir():
            raise ValueError(f"resources directory {path} does not exist")
        return path
    directory.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(resources or ()):
        if isinstance(item, Mapping):
            name = item.get("metadata", {}).get("name", f"resource{i}")
            (directory / f"{i:02d}-{name}.yaml").write_text(json.dumps(item, indent=2))
        else:
            shutil.copy(Path(item), directory / f"{i:02d}-{Path(item).name}")
    return directory


class DaprdFactory:
    """Start sidecars for a test; everything started is stopped by ``stop_all``."""

    def __init__(self, binary: Path, version: str, workdir: Path, nr_dir: Path) -> None:
        self.binary, self.version, self.workdir, self.nr_dir = binary, version, workdir, nr_dir
        self.sidecars: list[Sidecar] = []

    def __call__(
        self,
        app_port: int | None = None,
        resources: Resources = None,
        config: str | Path | Mapping[str, Any] | None = None,
        app_protocol: str = "grpc",
        *,
        app_id: str | None = None,
        wait: str | None = "auto",
        timeout: float = 60,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Sidecar:
        """Start daprd for an app listening on 127.0.0.1:``app_port`` (or for no app).

        ``resources`` is a resources directory or a list of component dicts / files.
        ``config`` is a Configuration file or dict. ``wait`` is "full" (healthz: components
        loaded and the app reachable), "outbound" (components loaded; use it when the app starts
        after its sidecar), None (do not wait), or "auto" (full if there is an app port).
        """
        app_id = app_id or f"e2e-{uuid.uuid4().hex[:8]}"
        run_dir = self.workdir / app_id
        resources_dir = write_resources(resources, run_dir / "resources")
        http_port, grpc_port, internal_port, metrics_port = (free_port() for _ in range(4))
        argv = [
            str(self.binary),
            "--mode",
            "standalone",
            "--app-id",
            app_id,
            "--dapr-listen-addresses",
            HOST,
            "--dapr-internal-grpc-listen-address",
            HOST,
            "--metrics-listen-address",
            HOST,
            "--app-channel-address",
            HOST,
            "--dapr-http-port",
            str(http_port),
            "--dapr-grpc-port",
            str(grpc_port),
            "--dapr-internal-grpc-port",
            str(internal_port),
            "--metrics-port",
            str(metrics_port),
            "--resources-path",
            str(resources_dir),
            "--app-protocol",
            app_protocol,
            "--log-level",
            "info",
        ]
        if app_port is not None:
            argv += ["--app-port", str(app_port)]
        if config is not None:
            if isinstance(config, Mapping):
                config_path = run_dir / "config.yaml"
                config_path.write_text(json.dumps(config, indent=2))
                config = config_path
            argv += ["--config", str(config)]
        argv += list(extra_args)
        proc_env: dict[str, str | None] = {
            "FUNCD_DAPR_NR_DIR": str(self.nr_dir),
            "DAPR_API_TOKEN": None,
            "APP_API_TOKEN": None,
        }
        proc_env.update(env or {})
        proc = start(f"daprd-{app_id}", argv, self.workdir / "logs", env=proc_env)
        sidecar = Sidecar(
            app_id,
            app_port,
            app_protocol,
            http_port,
            grpc_port,
            internal_port,
            metrics_port,
            resources_dir,
            proc,
        )
        self.sidecars.append(sidecar)
        if wait == "auto":
            wait = "full" if app_port is not None else "outbound"
        if wait is not None:
            sidecar.wait_ready(full=(wait == "full"), timeout=timeout)
        return sidecar

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"daprd {s.app_id} log ({s.log_path})", s.log_tail(40)) for s in self.sidecars]

    def stop_all(self) -> None:
        for sidecar in reversed(self.sidecars):
            sidecar.stop()
