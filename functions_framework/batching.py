"""Batch handlers (``@batch``): what a call with a whole bulk returns, as one Outcome per event.

``handler(context, events)`` gets every event of a Dapr bulk delivery in one list (a single delivery
arrives as a list of one) and returns:

==================================  ==============================================================
``None``                            every event succeeded
a list or tuple, one per event      each event's outcome, in the order of ``events``
a dict, event id → outcome          the listed events get theirs, the others succeeded
==================================  ==============================================================

An outcome is what a single handler can signal: ``None`` or ``"SUCCESS"`` (success), ``"RETRY"`` or
``ff.Retry`` (the class or an instance), ``"DROP"`` or ``ff.Drop``, or any other exception instance
(as if the handler had raised it for that event: ``replies.ack`` gives its ack, ``on_error`` by
default). A handler that raises gives every event the ack of what it raised. A return of the wrong
shape is a ``BatchResultError``: it is logged, and every event gets the error ack; nothing crashes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import BatchResultError, Drop, Retry
from .invocation import Outcome, Status

if TYPE_CHECKING:
    from .event import Event

__all__ = ["entry_outcomes"]

log = logging.getLogger("functions_framework")

_NAMED = {"SUCCESS": Status.SUCCESS, "RETRY": Status.RETRY, "DROP": Status.DROP}
_EXPECTED = 'None, "SUCCESS", "RETRY", "DROP", ff.Retry, ff.Drop or an exception'


def _one(value: Any, where: str) -> Outcome:
    if value is None:
        return Outcome(Status.SUCCESS)
    if isinstance(value, str):
        status = _NAMED.get(value)
        if status is None:
            raise BatchResultError(f"{where}: expected {_EXPECTED}, got {value!r}")
        return Outcome(status)
    if value is Retry or value is Drop:
        value = value()
    if isinstance(value, Retry):
        return Outcome(Status.RETRY, error=value)
    if isinstance(value, Drop):
        return Outcome(Status.DROP, error=value)
    if isinstance(value, Exception):
        return Outcome(Status.ERROR, error=value)
    raise BatchResultError(f"{where}: expected {_EXPECTED}, got {type(value).__name__} {value!r:.60}")


def _shaped(result: Any, events: Sequence[Event]) -> list[Outcome]:
    n = len(events)
    if result is None:
        return [Outcome(Status.SUCCESS) for _ in range(n)]
    if isinstance(result, (list, tuple)):
        if len(result) != n:
            raise BatchResultError(
                f"the batch handler's result: expected {n} outcome(s), one per event, got {len(result)}"
            )
        return [_one(value, f"the outcome of event {i} ({events[i].id!r})") for i, value in enumerate(result)]
    if isinstance(result, Mapping):
        ids = {event.id for event in events}
        unknown = [key for key in result if key not in ids]
        if unknown:
            raise BatchResultError(
                f"the batch handler's result: expected the ids of this batch's events as keys, got "
                f"{len(unknown)} unknown: {', '.join(repr(k) for k in unknown[:5])}"
            )
        by_id = {key: _one(value, f"the outcome of event {key!r}") for key, value in result.items()}
        return [by_id.get(event.id) or Outcome(Status.SUCCESS) for event in events]
    raise BatchResultError(
        "the batch handler's result: expected None, a list of one outcome per event or a dict of "
        f"event id to outcome, got {type(result).__name__}"
    )


def entry_outcomes(outcome: Outcome, events: Sequence[Event]) -> list[Outcome]:
    """One Outcome per event of a batch call whose (whole-call) outcome is ``outcome``.

    A call that did not succeed gives each event its status and error; a bad result turns ``outcome`` into an
    ERROR with a ``BatchResultError`` (so plugins see it) and gives each event that error.
    """
    if outcome.status is Status.SUCCESS:
        try:
            outcomes = _shaped(outcome.result, events)
        except BatchResultError as exc:
            log.error("%s", exc)
            outcome.status, outcome.error = Status.ERROR, exc
            outcomes = [Outcome(Status.ERROR, error=exc) for _ in events]
    else:
        outcomes = [Outcome(outcome.status, error=outcome.error) for _ in events]
    for each in outcomes:
        each.duration = outcome.duration
    return outcomes
