"""Async deliveries (pub/sub, bindings) shared by both Dapr app protocols: routing, Event, acks.

The ack of every outcome comes from ``replies.ack``; deliveries refused before the handler (too large,
malformed) get ``on_invalid`` and reach the plugins' ``rejected`` hook.
Deliveries that arrive while draining are served like any other: an answer of RETRY would be
dead-lettered at once by daprd when the subscription has a dead-letter topic and no resiliency
policy (see ``drain``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..event import Event, Trigger
from ..invocation import Invocation, Invoker, Outcome, Status, new_execution_id
from ..model import Component, FunctionContext
from ..plugins import Rejected
from ..replies import Ack, AckPolicy, ack
from ..settings import Settings
from .lifecycle import Lifecycle

log = logging.getLogger("functions_framework.dapr")


class Router:
    """Finds the input a delivery belongs to and turns its outcome into an ack."""

    def __init__(
        self, context: FunctionContext, invoker: Invoker, settings: Settings, lifecycle: Lifecycle
    ) -> None:
        self.context = context
        self.invoker = invoker
        self.settings = settings
        self.lifecycle = lifecycle
        self.policy: AckPolicy = settings.ack_policy
        self.topics: dict[tuple[str, str], Component] = {}
        self.bindings: dict[str, Component] = {}
        for comp in context.inputs.values():
            if comp.kind == "pubsub":
                self.topics[(comp.component_name, comp.topic)] = comp
            else:
                self.bindings[comp.component_name] = comp

    @property
    def invalid_ack(self) -> Ack:
        """The ack for an event that cannot be decoded or is too large."""
        return self.policy.on_invalid

    def topic_input(self, pubsub_name: str, topic: str) -> Component | None:
        return self.topics.get((pubsub_name, topic))

    def reject(
        self,
        comp: Component,
        message: str,
        headers: Mapping[str, str] | None = None,
        execution_id: str = "",
        reason: str = "invalid_delivery",
    ) -> Ack:
        """Refuse a delivery before the handler: log it, tell the plugins, ack ``on_invalid``."""
        ack_ = self.policy.on_invalid
        log.warning("%s; ack %s", message, ack_)
        pubsub = comp.kind == "pubsub"
        trigger = Trigger("pubsub" if pubsub else "binding", comp.name)
        self.invoker.hooks.rejected(
            Rejected(
                reason,  # type: ignore[arg-type]
                trigger,
                ack_,
                message,
                dict(headers or {}),
                execution_id,
                topic=comp.topic if pubsub else "",
            )
        )
        return ack_

    def deliver(self, event: Event, describe: Callable[[], str]) -> Ack:
        """Run the handler for one delivery and return its ack (SUCCESS, RETRY or DROP)."""
        if len(event.body) > self.settings.max_body:
            comp = self.context.inputs[event.trigger.name]
            return self.reject(
                comp,
                f"{describe()}: payload of {len(event.body)} bytes exceeds the limit of "
                f"{self.settings.max_body} bytes",
                event.headers,
                event.id,
                "too_large",
            )
        self.lifecycle.enter_delivery()  # served while draining too: see runtime/drain.py
        try:
            _, _, answer = self.invoker.invoke(event, event.id or new_execution_id(), self._ack)
        finally:
            self.lifecycle.leave_delivery()
        return answer

    def _ack(self, invocation: Invocation, outcome: Outcome) -> Ack:
        answer = ack(outcome, self.policy)
        outcome.reply = answer
        if answer != "SUCCESS":
            event = invocation.event
            where = f"{event.trigger.kind} {event.trigger.name!r}, event {event.id!r}"
            level = logging.WARNING if outcome.status is Status.INVALID else logging.INFO
            log.log(level, "%s: %s; ack %s", where, outcome.error or outcome.status.value, answer)
        return answer


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
