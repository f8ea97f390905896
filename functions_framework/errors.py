"""Errors raised by functions_framework, and the signals a handler may raise.

FunctionsFrameworkError
  ├── ContextError (ValueError)     the function context is invalid; lists every problem
  ├── FunctionLoadError             the source or target cannot be loaded
  ├── PluginLoadError               a hook names a plugin that is not installed or fails to build
  ├── OutputError                   context.send() or context.state() failed
  └── EventDataError (ValueError)   event.data does not decode as its content type says

Raised by handlers to steer delivery:
  Retry      async: ask Dapr to redeliver (RETRY); HTTP: 503
  Drop       async: discard the event (DROP); HTTP: 422
  HTTPError  HTTP: answer with this status and message
"""

from __future__ import annotations


class FunctionsFrameworkError(Exception):
    """Base of every error functions_framework raises."""


class ContextError(FunctionsFrameworkError, ValueError):
    """The function context is invalid. ``problems`` lists every problem with its path."""

    def __init__(self, problems: list[str], source: str = "function context") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid {source} ({len(problems)} problem(s)):\n{lines}")


class FunctionLoadError(FunctionsFrameworkError):
    """The function's source or target cannot be loaded."""


class PluginLoadError(FunctionsFrameworkError):
    """A plugin named by the context is not installed, or cannot be built."""


class OutputError(FunctionsFrameworkError):
    """Sending to an output, or using a state store, failed."""


class EventDataError(FunctionsFrameworkError, ValueError):
    """The event's body does not decode as its content type says."""


class Retry(Exception):
    """Raise from a handler to have the event delivered again."""


class Drop(Exception):
    """Raise from a handler to discard the event without retrying."""


class HTTPError(Exception):
    """Raise from a handler to answer an HTTP request with ``status`` and ``message``."""

    def __init__(self, status: int, message: str = "") -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"HTTPError status: expected 400-599, got {status}")
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")
