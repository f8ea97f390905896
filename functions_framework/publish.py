"""``funcd publish``: send an event to a function running locally with an embedded daprd.

It never reports success for an event no function will receive: the function's funcd must still
run (a record whose funcd is gone is cleaned, and its daprd stopped), and its daprd must list a
subscription to the pub/sub and topic (``GET /v1.0/metadata``) before the event is published.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .errors import PublishError
from .runtime.sidecar import HOST, state_dir
from .runtime.sidecar_record import SidecarRecord, live_records

READY_TIMEOUT = 15.0
"""Seconds to wait for daprd to subscribe (a function that has just started)."""


def running_sidecars(runtime_dir: str | None) -> list[SidecarRecord]:
    """The local daprds whose funcd still runs (stale records are cleaned on the way)."""
    return list(live_records(state_dir(runtime_dir)).values())


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def subscriptions(sidecar: SidecarRecord) -> set[tuple[str, str]]:
    """The (pub/sub, topic) pairs daprd delivers to the function, from its metadata API."""
    meta = _get_json(f"http://{HOST}:{sidecar.http_port}/v1.0/metadata")
    subs = meta.get("subscriptions") if isinstance(meta, dict) else None
    return {(str(s.get("pubsubname")), str(s.get("topic"))) for s in subs or [] if isinstance(s, dict)}


def _describe(pairs: set[tuple[str, str]]) -> str:
    return ", ".join(f"{t} on {p}" for p, t in sorted(pairs)) or "none"


def wait_subscribed(sidecar: SidecarRecord, pubsub: str, topic: str, timeout: float = READY_TIMEOUT) -> None:
    """Wait until daprd lists the subscription: it subscribes once the function has answered its
    first health probe. Raises when it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    found: set[tuple[str, str]] = set()
    problem = ""
    while time.monotonic() < deadline:
        try:
            found = subscriptions(sidecar)
            problem = ""
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problem = f"; its metadata API (http://{HOST}:{sidecar.http_port}/v1.0/metadata) answers {exc}"
        if (pubsub, topic) in found:
            return
        if not sidecar.funcd_alive:
            break
        time.sleep(0.1)
    raise PublishError(
        f"the local daprd of {sidecar.app_id!r} does not deliver topic {topic!r} on pub/sub {pubsub!r} to "
        f"the function (it delivers: {_describe(found)}{problem}); the event was not published"
    )


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
        sidecars = [s for s in sidecars if s.app_id == app_id]
    if not sidecars:
        where = f"named {app_id!r} " if app_id else ""
        raise PublishError(
            f"no function {where}is running with a local daprd; start one with `funcd run <folder>`"
        )
    if len(sidecars) > 1:
        names = ", ".join(s.app_id for s in sidecars)
        raise PublishError(f"--app-id: expected one of {names} (several functions are running)")
    sidecar = sidecars[0]
    if pubsub is None:
        if len(sidecar.pubsubs) != 1:
            choices = ", ".join(sidecar.pubsubs) or "none"
            raise PublishError(f"--pubsub: expected one of {choices}")
        pubsub = sidecar.pubsubs[0]
    if content_type is None:
        try:
            json.loads(data)
            content_type = "application/json"
        except ValueError:
            content_type = "text/plain"
    declared = {(p, t) for p, t in sidecar.subscriptions}
    if (pubsub, topic) not in declared:
        raise PublishError(
            f"{sidecar.app_id!r} does not subscribe to topic {topic!r} on pub/sub {pubsub!r} (its "
            f"subscriptions: {_describe(declared)}), so nothing would receive the event; it was not published"
        )
    wait_subscribed(sidecar, pubsub, topic)
    if not sidecar.funcd_alive:
        raise PublishError(f"the funcd of {sidecar.app_id!r} (pid {sidecar.funcd_pid}) has stopped")
    url = (
        f"http://{HOST}:{sidecar.http_port}/v1.0/publish/"
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
        raise PublishError(f"daprd refused the event ({exc.code}): {detail}") from None
    except urllib.error.URLError as exc:
        raise PublishError(f"cannot reach the local daprd of {sidecar.app_id!r}: {exc.reason}") from None
    return f"published to {pubsub}/{topic} of {sidecar.app_id} ({status})"
