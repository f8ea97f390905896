"""Async deliveries (pub/sub, bindings) shared by both Dapr app protocols: routing, Event, acks.

A bulk delivery (``deliver_bulk``) gets one ack per entry: a ``@batch`` handler takes the whole bulk in
one call (``batching.py`` reads its per-event outcomes); any other handler is called once per entry,
the entries of a bulk running concurrently on the router's threads (``--threads``) when the handler
is slow enough for that to pay (``_call_each``).

The ack of every outcome comes from ``replies.ack``; deliveries refused before the handler (too large,
malformed) get ``on_invalid`` and reach the plugins' ``rejected`` hook.
Deliveries that arrive while draining are served like any other: an answer of RETRY would be
dead-lettered at once by daprd when the subscription has a dead-letter topic and no resiliency
policy (see ``drain``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from ..batching import entry_outcomes
from ..event import Event, Trigger
from ..invocation import Invocation, Invoker, Outcome, Status, new_execution_id
from ..model import Component, FunctionContext
from ..plugins import Rejected
from ..replies import ACKS, Ack, AckPolicy, ack
from ..settings import Settings
from .lifecycle import Lifecycle

log = logging.getLogger("functions_framework.dapr")

BulkEntry = Event | str
"""A bulk entry: its Event, or why it was refused before the handler (the whole log message)."""

_SEVERITY: dict[Ack, int] = {"SUCCESS": 0, "DROP": 1, "RETRY": 2}
_POOL_ABOVE = 0.0002
"""Seconds a bulk's first call must take for its other entries to run concurrently."""


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
        self.batch = invoker.adapter.takes_batch
        """Whether the handler is ``@batch``: a bulk is one call."""
        self._pool: ThreadPoolExecutor | None = None

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

    def _too_large(self, event: Event, describe: Callable[[], str]) -> Ack | None:
        if len(event.body) <= self.settings.max_body:
            return None
        comp = self.context.inputs[event.trigger.name]
        return self.reject(
            comp,
            f"{describe()}: payload of {len(event.body)} bytes exceeds the limit of "
            f"{self.settings.max_body} bytes",
            event.headers,
            event.id,
            "too_large",
        )

    def deliver(self, event: Event, describe: Callable[[], str]) -> Ack:
        """Run the handler for one delivery and return its ack (SUCCESS, RETRY or DROP)."""
        refused = self._too_large(event, describe)
        if refused is not None:
            return refused
        if self.batch:
            return self._call_batch([event])[0]
        return self._call_one(event)

    def deliver_bulk(self, comp: Component, entries: Sequence[BulkEntry], where: str) -> list[Ack]:
        """Run the handler for a bulk delivery; one ack per entry, in order. ``where``: 'on x/y'."""
        acks: list[Ack] = ["DROP"] * len(entries)
        todo: list[tuple[int, Event]] = []
        for i, entry in enumerate(entries):
            if isinstance(entry, str):
                acks[i] = self.reject(comp, entry)
                continue
            refused = self._too_large(entry, partial("bulk entry {!r} {}".format, entry.id, where))
            if refused is not None:
                acks[i] = refused
            else:
                todo.append((i, entry))
        if not todo:
            return acks
        events = [event for _, event in todo]
        answers = self._call_batch(events) if self.batch else self._call_each(events)
        for (i, _), answer in zip(todo, answers, strict=True):
            acks[i] = answer
        return acks

    def _call_each(self, events: list[Event]) -> list[Ack]:
        """One call per event: the first inline; the rest concurrently when it was slow enough for
        threads to pay (a tiny handler runs 5x slower through a pool, one waiting on I/O 3x faster)."""
        started = time.perf_counter()
        answers = [self._call_one(events[0])]
        rest = events[1:]
        if rest and time.perf_counter() - started >= _POOL_ABOVE:
            answers += self._threads().map(self._call_one, rest)
        else:
            answers += [self._call_one(event) for event in rest]
        return answers

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.settings.threads, thread_name_prefix="funcd-bulk")
        return self._pool

    def _call_batch(self, events: list[Event]) -> list[Ack]:
        self.lifecycle.enter_delivery()  # one call, however many events
        try:
            first = events[0]
            _, _, answers = self.invoker.invoke(
                first, first.id or new_execution_id(), self._batch_acks, batch=events
            )
        finally:
            self.lifecycle.leave_delivery()
        return answers

    def _batch_acks(self, invocation: Invocation, outcome: Outcome) -> list[Ack]:
        outcomes = entry_outcomes(outcome, invocation.events)
        answers: list[Ack] = []
        for event, each in zip(invocation.events, outcomes, strict=True):
            answer = ack(each, self.policy)
            each.reply = answer
            answers.append(answer)
            if answer != "SUCCESS" and outcome.ok:
                where = f"{event.trigger.kind} {event.trigger.name!r}, event {event.id!r}"
                log.info("%s: %s; ack %s", where, each.error or each.status.value, answer)
        outcome.entries = outcomes
        outcome.reply = max(answers, key=_SEVERITY.__getitem__) if answers else ACKS[0]
        if not outcome.ok:
            trigger = invocation.event.trigger
            level = logging.WARNING if outcome.status is Status.INVALID else logging.INFO
            log.log(
                level,
                "%s %r, a batch of %d event(s): %s; ack %s for each",
                trigger.kind,
                trigger.name,
                len(answers),
                outcome.error or outcome.status.value,
                outcome.reply,
            )
        return answers

    def _call_one(self, event: Event) -> Ack:
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


def raw_event(comp: Component, id: str, content_type: str, body: bytes, headers: dict[str, str]) -> Event:
    """The Event of a payload that is not a CloudEvent (``rawPayload`` subscriptions)."""
    return pubsub_event(
        comp,
        id=id,
        source="",
        type="",
        specversion="",
        content_type=content_type,
        body=body,
        topic=comp.topic,
        pubsub_name=comp.component_name,
        extensions={},
        headers=headers,
    )
