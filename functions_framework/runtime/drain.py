"""Draining without failing deliveries: stop daprd's deliveries through its app health check, serve
what still arrives, then stop.

Why not answer RETRY while draining: with a dead-letter topic and no resiliency policy, Dapr sends
an event whose delivery failed (RETRY, an error, or an app that is gone) to the dead-letter topic at
once; with no dead-letter topic, the error goes back to the pub/sub component, and Redis streams
acknowledge it (Dapr 1.17 and later; 1.15 redelivered it after ``processingTimeout``). Read in
dapr/dapr v1.15.4 and v1.18.2 ``pkg/runtime/subscription/subscription.go``: the resiliency runner
runs the delivery once when no policy targets the component, and any error left is dead-lettered.

What stops deliveries instead: daprd's app health check (``--enable-app-health-check``). daprd
probes the app every ``--app-health-probe-interval`` (5 s by default); once
``--app-health-threshold`` (3) probes in a row fail, it stops the app's subscriptions and input
bindings, and starts them again at the first probe that succeeds (``pkg/apphealth/health.go``,
``pkg/runtime/runtime.go`` ``appHealthChanged``). Over gRPC the probe is the AppCallback
``HealthCheck``; over HTTP it is a GET of ``--app-health-check-path`` (``/healthz`` by default),
which must be funcd's ready path (``/readyz``) since the liveness path stays 200 while draining.
Messages the pub/sub component had already fetched are still delivered after the stop (Redis:
its queue of ``queueDepth`` messages): over gRPC they reach the app; over HTTP daprd (1.15, 1.18) refuses
them itself while the app is unhealthy ("app is not in a healthy state"), which is a failed
delivery like any other.

So, on SIGTERM every worker answers daprd's health probes "unhealthy" and keeps serving the
deliveries that still arrive. The supervisor stops when nothing is in flight, daprd has had
``threshold`` unhealthy answers (it read daprd's settings from its metadata API, or assumes
Dapr's defaults), and no delivery has started for ``QUIET`` seconds: or when the grace period ends.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .lifecycle import Lifecycle

if TYPE_CHECKING:
    from ..model import FunctionContext
    from ..settings import Settings

log = logging.getLogger("functions_framework.serve")

QUIET = 1.0
"""Seconds without a new delivery, after daprd has paused, before the drain ends."""
DEFAULT_THRESHOLD = 3
"""Dapr's default ``--app-health-threshold``."""
DAPRD_AGENT = "Go-http-client/"
"""The User-Agent of daprd's HTTP app health probes (Go's default: daprd sets none)."""


def answer_ready(lifecycle: Lifecycle, environ: dict[str, Any], dapr_http: bool) -> bool:
    """The answer of the ready path. With the Dapr HTTP app protocol, daprd's app health probe (told
    from the kubelet's, ``kube-probe/...``, and other callers by its User-Agent) is counted."""
    if dapr_http and environ.get("HTTP_USER_AGENT", "").startswith(DAPRD_AGENT):
        return lifecycle.health_probe()
    return not lifecycle.draining


@dataclass(frozen=True)
class AppHealthCheck:
    """daprd's app health check, as its metadata API describes it."""

    enabled: bool
    """Whether daprd probes the app at all."""
    threshold: int = DEFAULT_THRESHOLD
    """Failed probes in a row after which daprd stops deliveries."""
    interval: float = 5.0
    """Seconds between probes."""
    path: str = ""
    """The probed path (HTTP app protocol only)."""


def _seconds(duration: str) -> float:
    """A Go duration ("5s", "500ms", "1m0s") in seconds; 0.0 when it does not parse."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([\d.]+)(ms|us|µs|ns|h|m|s)", duration)
    return sum(float(n) * units[u] for n, u in parts)


def read_app_health(http_url: str, api_token: str | None, timeout: float = 2.0) -> AppHealthCheck | None:
    """daprd's app health settings from ``GET /v1.0/metadata``; None when it cannot be read."""
    import urllib.error  # only a draining function with a known sidecar pays for it
    import urllib.request

    request = urllib.request.Request(f"{http_url}/v1.0/metadata")
    if api_token:
        request.add_header("dapr-api-token", api_token)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            meta = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    health = (meta.get("appConnectionProperties") or {}).get("health") if isinstance(meta, dict) else None
    if not isinstance(health, dict):
        return AppHealthCheck(enabled=False)
    return AppHealthCheck(
        enabled=True,
        threshold=int(health.get("healthThreshold") or DEFAULT_THRESHOLD),
        interval=_seconds(str(health.get("healthProbeInterval", ""))) or 5.0,
        path=str(health.get("healthCheckPath") or ""),
    )


def _app_health(lifecycle: Lifecycle, context: FunctionContext, settings: Settings) -> AppHealthCheck:
    address = settings.dapr_address
    check = read_app_health(address.http, address.api_token) if address and address.http else None
    if check is None:
        if lifecycle.health_probes == 0:
            return AppHealthCheck(enabled=False)
        log.info(
            "draining: daprd probes the app's health; its settings are unknown (no --dapr-http-address), "
            "so funcd assumes the default threshold of %d failed probes",
            DEFAULT_THRESHOLD,
        )
        return AppHealthCheck(enabled=True)
    if check.enabled and settings.app_protocol == "http" and check.path != settings.ready_path:
        log.warning(
            "draining: daprd probes the app's health on %s, which stays 200 while funcd drains; "
            "set its --app-health-check-path (annotation dapr.io/app-health-check-path) to %s",
            check.path,
            settings.ready_path,
        )
        return AppHealthCheck(enabled=False)
    return check


def wait_drained(
    lifecycle: Lifecycle, grace: float, context: FunctionContext, settings: Settings, poll: float = 0.02
) -> bool:
    """Wait until the drain is done (True) or ``grace`` seconds have passed (False)."""
    start = time.monotonic()
    deadline = start + grace
    if not context.inputs:
        return lifecycle.wait_idle(grace, poll)
    check = _app_health(lifecycle, context, settings)
    if not check.enabled:
        log.warning(
            "draining: daprd does not check this app's health (--enable-app-health-check), so it keeps "
            "delivering until funcd stops; what it delivers after that fails, and goes to the dead-letter "
            "topic at once when the subscription has one and no resiliency policy retries it"
        )
    paused_at = start if not check.enabled else 0.0
    while True:
        now = time.monotonic()
        if not paused_at and lifecycle.unhealthy_answers >= check.threshold:
            paused_at = now
            log.info(
                "draining: daprd has had %d unhealthy answers to its health probes and pauses deliveries",
                check.threshold,
            )
        quiet_since = max(lifecycle.last_delivery, paused_at)
        if paused_at and lifecycle.inflight == 0 and now - quiet_since >= QUIET:
            log.info(
                "draining: %d delivery(ies) arrived and were served while draining",
                lifecycle.drain_deliveries,
            )
            return True
        if now >= deadline:
            return False
        time.sleep(poll)
