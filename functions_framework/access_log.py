"""The access log: one JSON line per request or delivery, off by default (``--access-log``).

It rides on the plugin hooks (``post_hook`` sees the final reply, ``rejected`` the refused ones), on
the ``functions_framework.access`` logger; the JSON formatter adds the execution and trace ids.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .event import trace_id_of

if TYPE_CHECKING:
    from .event import Event
    from .invocation import Invocation, Outcome
    from .plugins import Rejected

log = logging.getLogger("functions_framework.access")


def _where(event: Event) -> dict[str, Any]:
    kind = event.trigger.kind
    if kind == "http":
        return {"method": event.method, "path": event.path}
    if kind == "pubsub":
        return {"pubsub": event.pubsub_name, "topic": event.topic}
    return {"binding": event.binding}


class AccessLog:
    """Writes the access log line of every call and every refused request."""

    name = "access-log"

    def pre_hook(self, invocation: Invocation) -> None:
        pass

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        event = invocation.event
        reply_key = "status" if event.trigger.kind == "http" else "ack"
        fields = {
            "trigger": event.trigger.kind,
            **_where(event),
            reply_key: outcome.reply,
            "duration_ms": round(outcome.duration * 1000, 3),
            "execution_id": invocation.execution_id,
            "trace_id": invocation.trace_id,
        }
        log.info("access", extra={"access": fields})

    def rejected(self, request: Rejected) -> None:
        kind = request.trigger.kind
        if kind == "http":
            where: dict[str, Any] = {"method": request.method, "path": request.path, "status": request.reply}
        else:
            where = {"input": request.trigger.name, "topic": request.topic, "ack": request.reply}
        fields = {
            "trigger": kind,
            **where,
            "rejected": request.reason,
            "execution_id": request.execution_id,
            "trace_id": trace_id_of(request.headers.get("traceparent", "")),
        }
        log.info("access", extra={"access": fields})
