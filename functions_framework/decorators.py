"""Decorators that mark how a function is called.

``@http``, ``@cloud_event``, ``@typed`` and ``@errorhandler`` behave as in Google's framework;
``@batch`` is funcd's: ``handler(context, events)`` gets a whole Dapr bulk as one list. The signature a
marker names is turned into an adapter once, at load time (``signatures.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

SIGNATURE_ATTR = "__funcd_signature__"
TYPED_INPUT_ATTR = "__funcd_typed_input__"

ERROR_HANDLERS: list[tuple[tuple[Any, ...], dict[str, Any], Callable[..., Any]]] = []
"""``@errorhandler`` registrations, applied to the function's Flask app when it is built."""


def http(func: F) -> F:
    """The function takes a Flask request and returns anything Flask can turn into a response."""
    setattr(func, SIGNATURE_ATTR, "http")
    return func


def cloud_event(func: F) -> F:
    """The function takes a ``cloudevents.http.CloudEvent``; its return value is ignored."""
    setattr(func, SIGNATURE_ATTR, "cloudevent")
    return func


def batch(func: F) -> F:
    """The function takes ``(context, events)``: every event of a Dapr bulk delivery in one list (a
    single delivery arrives as a list of one). It returns per-event outcomes (``batching.py``)."""
    setattr(func, SIGNATURE_ATTR, "batch")
    return func


@overload
def typed(arg: F) -> F: ...


@overload
def typed(arg: type | None = None) -> Callable[[F], F]: ...


def typed(arg: Any = None) -> Any:
    """The function takes one object built from the JSON body and returns one to send back as JSON.

    ``@typed`` reads the input type from the first parameter's annotation; ``@typed(MyType)`` names it.
    A type with ``from_dict`` is built with it; a result with ``to_dict`` is sent as its dict.
    """

    def mark(func: F, input_type: type | None) -> F:
        setattr(func, SIGNATURE_ATTR, "typed")
        setattr(func, TYPED_INPUT_ATTR, input_type)
        return func

    if callable(arg) and not isinstance(arg, type):
        return mark(arg, None)
    return lambda func: mark(func, arg)


def errorhandler(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """Register the decorated function as the Flask error handler for an exception type or status code."""

    def register(func: F) -> F:
        ERROR_HANDLERS.append((args, kwargs, func))
        return func

    return register
