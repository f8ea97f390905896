"""Decorators that mark a function's signature, as in Google's functions-framework."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

SIGNATURE_ATTR = "__funcd_signature__"
SIGNATURES = ("event", "http", "cloudevent")


def http(func: F) -> F:
    """The function takes a Flask request and returns anything Flask can turn into a response."""
    setattr(func, SIGNATURE_ATTR, "http")
    return func


def cloud_event(func: F) -> F:
    """The function takes a ``cloudevents.http.CloudEvent``; its return value is ignored."""
    setattr(func, SIGNATURE_ATTR, "cloudevent")
    return func
