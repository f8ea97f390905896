"""Async deliveries (pub/sub, bindings) shared by both Dapr app protocols: routing, Event, ack mapping.

Ack mapping: SUCCESS → SUCCESS, ``Retry`` → RETRY, ``Drop`` → DROP, any other exception → RETRY
(``on_error``), a timeout → RETRY, an event that does not decode (``EventDataError``) or is too
large → DROP (``on_invalid``). Deliveries that arrive while draining are served like any other: an
answer of RETRY would be dead-lettered at once by daprd when the subscription has a dead-letter topic
and no resiliency policy (see ``drain``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..context import Component, FunctionContext
from ..event import Event, Trigger
from ..invocation import Invoker, Status, new_execution_id
from .lifecycle import Lifecycle

log = logging.getLogger("functions_framework.dapr")

ACKS = ("retry", "drop")


@dataclass(frozen=True)
class AsyncOptions:
    """Settings of the Dapr runtime."""

    app_protocol: str = "grpc"
    """How daprd calls the app: ``grpc`` (AppCallback) or ``http``."""
    on_error: str = "retry"
    """Ack for a handler that raised anything but Retry/Drop: ``retry`` or ``drop``."""
    on_invalid: str = "drop"
    """Ack for an event that does not decode or exceeds ``max_body``: ``retry`` or ``drop``."""
    max_body: int = 32 * 1024 * 1024
    """Largest event payload accepted, in bytes."""
    app_token: str | None = None
    """When set, calls without this ``dapr-api-token`` are refused (UNAUTHENTICATED / 401)."""


class Ack:
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


class Router:
    """Finds the input a delivery belongs to and turns its outcome into an ack."""

    def __init__(
        self, context: FunctionContext, invoker: Invoker, options: AsyncOptions, lifecycle: Lifecycle
    ) -> None:
        self.context = context
        self.invoker = invoker
        self.options = options
        self.lifecycle = lifecycle
        self.topics: dict[tuple[str, str], Component] = {}
        self.bindings: dict[str, Component] = {}
        for comp in context.inputs.values():
            if comp.kind == "pubsub":
                self.topics[(comp.component_name, comp.topic)] = comp
            else:
                self.bindings[comp.component_name] = comp
        self._on_error = Ack.DROP if options.on_error == "drop" else Ack.RETRY
        self.invalid_ack = Ack.RETRY if options.on_invalid == "retry" else Ack.DROP
        """The ack for an event that cannot be decoded or is too large."""

    def topic_input(self, pubsub_name: str, topic: str) -> Component | None:
        return self.topics.get((pubsub_name, topic))

    def deliver(self, event: Event, describe: Callable[[], str]) -> str:
        """Run the handler for one delivery and return its ack (SUCCESS, RETRY or DROP)."""
        if len(event.body) > self.options.max_body:
            log.warning(
                "%s: payload of %d bytes exceeds the limit of %d bytes; ack %s",
                describe(),
                len(event.body),
                self.options.max_body,
                self.invalid_ack,
            )
            return self.invalid_ack
        self.lifecycle.enter_delivery()  # served while draining too: see runtime/drain.py
        try:
            _, outcome = self.invoker.invoke(event, event.id or new_execution_id())
        finally:
            self.lifecycle.leave_delivery()
        status = outcome.status
        if status is Status.SUCCESS:
            return Ack.SUCCESS
        if status is Status.RETRY:
            return Ack.RETRY
        if status is Status.DROP:
            log.info("%s: the handler dropped it", describe())
            return Ack.DROP
        if status is Status.INVALID:
            log.warning("%s: %s; ack %s", describe(), outcome.error, self.invalid_ack)
            return self.invalid_ack
        if status is Status.TIMEOUT:
            log.warning("%s: %s; ack RETRY", describe(), outcome.error)
            return Ack.RETRY
        return self._on_error


def pubsub_event(
    comp: Component,
    *,
    id: str,
    source: str,
    type: str,
    specversion: str,
    content_type: str,
    body: bytes,
    topic: str,
    pubsub_name: str,
    extensions: Mapping[str, Any],
    headers: Callable[[], dict[str, str]] | dict[str, str],
    data: Any = None,
    has_data: bool = False,
) -> Event:
    kwargs: dict[str, Any] = {"data": data} if has_data else {}
    if callable(headers):
        kwargs["headers_factory"] = headers
    else:
        kwargs["headers"] = headers
    return Event(
        id=id,
        source=source,
        type=type,
        specversion=specversion,
        subject=str(extensions.get("subject", "")),
        time=str(extensions.get("time", "")),
        content_type=content_type,
        body=body,
        metadata=comp.metadata,
        extensions=extensions,
        topic=topic,
        pubsub_name=pubsub_name,
        trigger=Trigger("pubsub", comp.name),
        **kwargs,
    )


def binding_event(comp: Component, body: bytes, metadata: Mapping[str, str], headers: Any) -> Event:
    lowered = {k.lower(): v for k, v in metadata.items()}
    kwargs: dict[str, Any] = {"headers_factory": headers} if callable(headers) else {"headers": headers}
    return Event(
        id=lowered.get("id") or lowered.get("messageid") or new_execution_id(),
        content_type=lowered.get("content-type") or lowered.get("contenttype") or "",
        body=body,
        metadata=dict(metadata),
        binding=comp.component_name,
        trigger=Trigger("binding", comp.name),
        **kwargs,
    )
