"""``funcd publish``: send an event to a function running locally with an embedded daprd."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .errors import FunctionsFrameworkError
from .runtime.sidecar import HOST, state_dir, wait_healthy


def running_sidecars(runtime_dir: str | None) -> list[dict[str, Any]]:
    out = []
    for record in sorted(state_dir(runtime_dir).glob("*.json")):
        try:
            out.append(json.loads(record.read_text()))
        except (OSError, ValueError):
            continue
    return [r for r in out if Path(f"/proc/{r.get('pid')}").exists()]


def publish(
    topic: str,
    data: str,
    pubsub: str | None,
    app_id: str | None,
    runtime_dir: str | None,
    content_type: str | None = None,
) -> str:
    """Publish through the function's local daprd. Returns a one-line summary."""
    sidecars = running_sidecars(runtime_dir)
    if app_id:
        sidecars = [s for s in sidecars if s["app_id"] == app_id]
    if not sidecars:
        where = f"named {app_id!r} " if app_id else ""
        raise FunctionsFrameworkError(
            f"no function {where}is running with a local daprd; start one with `funcd run <folder>`"
        )
    if len(sidecars) > 1:
        names = ", ".join(s["app_id"] for s in sidecars)
        raise FunctionsFrameworkError(f"--app-id: expected one of {names} (several functions are running)")
    sidecar = sidecars[0]
    if pubsub is None:
        if len(sidecar["pubsubs"]) != 1:
            choices = ", ".join(sidecar["pubsubs"]) or "none"
            raise FunctionsFrameworkError(f"--pubsub: expected one of {choices}")
        pubsub = sidecar["pubsubs"][0]
    if content_type is None:
        try:
            json.loads(data)
            content_type = "application/json"
        except ValueError:
            content_type = "text/plain"
    # Full health: components loaded and the function reachable and subscribed.
    if not wait_healthy(sidecar["http_port"], "/v1.0/healthz", 15.0):
        raise FunctionsFrameworkError(f"the local daprd of {sidecar['app_id']!r} is not healthy after 15s")
    url = (
        f"http://{HOST}:{sidecar['http_port']}/v1.0/publish/"
        f"{urllib.parse.quote(pubsub, safe='')}/{urllib.parse.quote(topic, safe='')}"
    )
    req = urllib.request.Request(
        url, data=data.encode(), method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise FunctionsFrameworkError(f"daprd refused the event ({exc.code}): {detail}") from None
    except urllib.error.URLError as exc:
        raise FunctionsFrameworkError(
            f"cannot reach the local daprd of {sidecar['app_id']!r}: {exc.reason}"
        ) from None
    return f"published to {pubsub}/{topic} of {sidecar['app_id']} ({status})"
