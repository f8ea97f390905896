"""Local embedded mode: start a daprd for a function that uses Dapr when no sidecar is configured.

Components come from the function folder's ``components/`` when it has one; otherwise each pub/sub
the context names gets an in-memory pub/sub and each state store an in-memory store, and the pub/sub
inputs get an inbound retry policy (``resiliency.LOCAL_RETRY``). A running sidecar is recorded in a
small JSON file (``sidecar_record``) so that ``funcd publish`` can find it. When the function traces
to an OTLP collector, daprd gets a Configuration that exports its spans to the same collector.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import SidecarError
from ..model import FunctionContext
from .resiliency import dead_letter_warnings, local_retry_policy, retry_targets
from .sidecar_record import SidecarRecord, live_records, process_started

log = logging.getLogger("functions_framework.sidecar")

HOST = "127.0.0.1"
HOW_TO_GET_DAPRD = (
    "put daprd on PATH (the Dapr CLI's `dapr init --slim` installs it in ~/.dapr/bin), or build the "
    "pinned one in a funcd checkout with `make testbin`"
)


def find_daprd(search_path: str, home: Path, testbin_cache: Path) -> Path:
    """daprd on PATH, in ~/.dapr/bin, or in the testbin cache. Raises saying how to get one."""
    found = shutil.which("daprd", path=search_path)
    if found:
        return Path(found)
    candidates = [
        home / ".dapr" / "bin" / "daprd",
        *sorted(testbin_cache.glob("daprd-*/daprd"), reverse=True),
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SidecarError(
        "this function uses Dapr (inputs, outputs or states) and no sidecar is configured "
        "(DAPR_GRPC_PORT or --dapr-address), so funcd starts a local daprd, but found none: "
        + HOW_TO_GET_DAPRD
    )


def wait_healthy(http_port: int, path: str, timeout: float, check: Callable[[], None] = lambda: None) -> bool:
    """Poll a daprd health path until it answers 2xx (True) or ``timeout`` runs out (False).
    ``check`` runs before each try and may raise to stop early."""
    url = f"http://{HOST}:{http_port}{path}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check()
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 300:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def default_components(context: FunctionContext) -> list[dict[str, object]]:
    """In-memory pub/sub and state components for what the context names. Bindings need a file."""
    docs: dict[str, dict[str, object]] = {}
    for comp in [*context.inputs.values(), *context.outputs.values()]:
        if comp.kind == "pubsub":
            docs[comp.component_name] = _component(comp.component_name, "pubsub.in-memory")
        elif comp.component_name not in docs:
            raise SidecarError(
                f"binding {comp.component_name!r} ({comp.component_type}) needs a component definition: "
                f"add components/{comp.component_name}.yaml to the function's folder"
            )
    for store in context.states.values():
        docs[store.component_name] = _component(store.component_name, "state.in-memory")
    return list(docs.values())


def _component(name: str, type_: str) -> dict[str, object]:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {"type": type_, "version": "v1", "metadata": []},
    }


def tracing_configuration(context: FunctionContext) -> dict[str, object] | None:
    """A Dapr Configuration that sends daprd's spans where the function sends its own, or ``None``
    when the function does not trace with OpenTelemetry to an OTLP endpoint.

    Keys as Dapr 1.15 and 1.18 read them (``pkg/config/configuration.go``, ``TracingSpec`` and ``OtelSpec``).
    daprd samples every trace (``samplingRate: "1"``); its exporter is secure only for ``https://``
    endpoints, and takes ``host:port`` (a scheme and path are removed)."""
    tracing = context.tracing
    exporter = tracing.exporter if tracing is not None else None
    if tracing is None or not tracing.enabled or tracing.provider != "opentelemetry":
        return None
    if exporter is None or exporter.name != "otlp" or not exporter.endpoint:
        return None
    url = urlsplit(exporter.endpoint if "://" in exporter.endpoint else f"//{exporter.endpoint}")
    otel: dict[str, object] = {
        "endpointAddress": url.netloc,
        "isSecure": url.scheme == "https",
        "protocol": "grpc" if exporter.protocol == "grpc" else "http",
    }
    if exporter.headers:
        otel["headers"] = exporter.headers
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": f"{context.name}-tracing"},
        "spec": {"tracing": {"samplingRate": "1", "otel": otel}},
    }


def state_dir(runtime_dir: str | None) -> Path:
    base = Path(runtime_dir) if runtime_dir else Path(tempfile.gettempdir()) / f"funcd-{os.getuid()}"
    path = base / "funcd" if runtime_dir else base
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class LocalSidecar:
    """A daprd started for one function."""

    app_id: str
    http_port: int
    grpc_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    record: Path
    work_dir: Path

    @property
    def grpc_address(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until daprd has loaded its components (``/v1.0/healthz/outbound``)."""

        def exited() -> None:
            if self.proc.poll() is not None:
                raise SidecarError(
                    f"daprd exited with {self.proc.returncode}; its log: {self.log_path}\n{self.log_tail()}"
                )

        if not wait_healthy(self.http_port, "/v1.0/healthz/outbound", timeout, exited):
            raise SidecarError(f"daprd not ready within {timeout:g}s; its log: {self.log_path}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.record.unlink(missing_ok=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)


APP_HEALTH_PROBE_INTERVAL = 1
"""Seconds between a local daprd's app health probes (Dapr's default: 5)."""
APP_HEALTH_THRESHOLD = 2
"""Failed probes in a row after which a local daprd pauses deliveries (Dapr's default: 3)."""
HTTP_APP_MAX_CONCURRENCY = 1
"""``--app-max-concurrency`` of a daprd that calls the app over HTTP: daprd 1.15-1.18 can acknowledge
a message the app never got when it calls the app concurrently ("What the Dapr app protocols mean for
worker processes" in docs/architecture.md); 1 is the setting that holds."""


def start_local_daprd(
    daprd: Path,
    context: FunctionContext,
    folder: Path,
    app_port: int,
    app_protocol: str,
    runtime_dir: Path,
    ready_path: str = "/readyz",
) -> LocalSidecar:
    """Start daprd for the function in standalone mode (no placement, scheduler or sentry).

    daprd dies with this process (the kernel sends it SIGTERM when its parent dies), checks the
    app's health every second (AppCallback ``HealthCheck``, or ``ready_path`` over HTTP) so that a
    drain pauses its deliveries, and is recorded in ``runtime_dir`` for ``funcd publish``. A record
    left by a funcd that is gone is cleaned first; one whose funcd still runs is an error."""
    app_id = context.name
    running = live_records(runtime_dir).get(app_id)
    if running is not None:
        raise SidecarError(
            f"{app_id!r} already runs with a local daprd (funcd pid {running.funcd_pid}, daprd pid "
            f"{running.daprd_pid}); stop it first, or give this function another name"
        )
    work = Path(tempfile.mkdtemp(prefix=f"funcd-{app_id}-"))
    generated = work / "components"
    generated.mkdir()
    components = folder / "components"
    inputs = sorted({c.component_name for c in context.inputs.values() if c.kind == "pubsub"})
    if components.is_dir():
        resources = [components, generated]
        for warning in dead_letter_warnings(context, retry_targets(components), str(components)):
            log.warning("%s", warning)
    else:
        resources = [generated]
        docs = default_components(context)
        if inputs:
            docs.append(local_retry_policy(inputs))
        for doc in docs:
            name = doc["metadata"]["name"]  # type: ignore[index]
            (generated / f"{name}.yaml").write_text(json.dumps(doc))  # JSON is YAML
    http_port, grpc_port = free_port(), free_port()
    argv = [
        str(daprd), "--mode", "standalone", "--app-id", app_id,
        "--app-port", str(app_port), "--app-protocol", app_protocol, "--app-channel-address", HOST,
        "--dapr-listen-addresses", HOST,
        "--dapr-http-port", str(http_port), "--dapr-grpc-port", str(grpc_port),
        "--dapr-internal-grpc-port", str(free_port()), "--metrics-listen-address", HOST,
        "--metrics-port", str(free_port()), "--log-level", "warn",
        "--enable-app-health-check", "--app-health-probe-interval", str(APP_HEALTH_PROBE_INTERVAL),
        "--app-health-threshold", str(APP_HEALTH_THRESHOLD), "--app-health-check-path", ready_path,
    ]  # fmt: skip
    if app_protocol == "http":
        argv += ["--app-max-concurrency", str(HTTP_APP_MAX_CONCURRENCY)]
    for path in resources:
        argv += ["--resources-path", str(path)]
    config = tracing_configuration(context)
    if config is not None:
        (work / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
        argv += ["--config", str(work / "config.yaml")]
    log_path = work / "daprd.log"
    parent = os.getpid()
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with(parent),
        )
    daprd_started = process_started(proc.pid)
    funcd_started = process_started(parent)
    record = runtime_dir / f"{app_id}.json"
    if daprd_started is not None and funcd_started is not None:
        pubsub_inputs = [c for c in context.inputs.values() if c.kind == "pubsub"]
        subscriptions = sorted([c.component_name, c.topic] for c in pubsub_inputs)
        SidecarRecord(
            app_id, parent, funcd_started, proc.pid, daprd_started, http_port, grpc_port, subscriptions
        ).write(record)
    where = ", ".join(str(p) for p in resources)
    if config is not None:
        where += f"; spans to {config['spec']['tracing']['otel']['endpointAddress']}"  # type: ignore[index]
    log.info("started a local daprd (pid %d, resources from %s); its log: %s", proc.pid, where, log_path)
    return LocalSidecar(app_id, http_port, grpc_port, proc, log_path, record, work)


def die_with(parent: int) -> Callable[[], None]:
    """What the child runs before exec: have the kernel send it SIGTERM when ``parent`` dies (Linux),
    and exit at once if that has happened already. So a ``kill -9`` of funcd leaves no daprd behind.
    libc is looked up here, in the parent, so that the child takes no import lock."""
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def in_child() -> None:
        if prctl is not None:
            prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return in_child
