"""Every error functions_framework raises to users, and the signals a handler may raise.

FunctionsFrameworkError
  ├── ContextError (ValueError)        the function context or Function resource is invalid
  ├── UsageError                       a CLI argument or environment variable is wrong (exit 2)
  ├── FunctionLoadError                the source or target cannot be loaded
  │     └── SignatureError             the signature does not fit (arity, or a trigger it cannot serve)
  ├── PluginLoadError                  a hook names a plugin that is not installed or fails to build
  ├── PortInUseError                   a port funcd must listen on is held by another process
  ├── OutputError                      context.send() or context.state() failed (``temporary`` or not)
  ├── SidecarError                     the local daprd cannot be found, started or reached
  │     └── SidecarUnavailable         the sidecar's gRPC API did not answer in time (dapr_client)
  ├── PublishError                     ``funcd publish`` cannot deliver the event to a running function
  ├── ScaffoldError                    ``funcd new`` cannot create the function
  └── RequestError                     a request or delivery is refused before the handler runs
        ├── BodyTooLarge               its body exceeds ``--max-body`` (HTTP 413)
        ├── BadCloudEvent (ValueError) a malformed CloudEvent, or a missing required attribute (HTTP 400)
        └── EventDataError (ValueError) event.data does not decode as its content type says (HTTP 400)

BatchResultError                       a batch handler returned outcomes of the wrong shape (its events get
                                       the error ack)
HandlerTimeout                         funcd's own per-call timeout ran out (HTTP 504, ack RETRY); a handler's
                                       own TimeoutError (from a socket, say) is an ordinary exception

Raised by handlers to steer the reply:
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


class UsageError(FunctionsFrameworkError):
    """A command-line argument or environment variable is wrong."""


class FunctionLoadError(FunctionsFrameworkError):
    """The function's source or target cannot be loaded."""


class SignatureError(FunctionLoadError):
    """The function's parameters do not fit its signature type, or the signature cannot serve a trigger."""


class PluginLoadError(FunctionsFrameworkError):
    """A plugin named by the context is not installed, or cannot be built."""


class PortInUseError(FunctionsFrameworkError):
    """A port funcd must listen on is held by another process."""


class OutputError(FunctionsFrameworkError):
    """Sending to an output, or using a state store, failed.

    ``temporary`` is True when trying again may work (the sidecar is down or busy): an async handler
    that lets it escape gets RETRY, an HTTP one 503. A permanent error (an output or store the context
    does not declare, data that cannot be encoded, a call Dapr refuses) gets DROP, or 500 over HTTP.
    """

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


class SidecarError(FunctionsFrameworkError):
    """The local daprd cannot be found, started or reached."""


class PublishError(FunctionsFrameworkError):
    """``funcd publish`` cannot deliver the event to a running function."""


class ScaffoldError(FunctionsFrameworkError):
    """``funcd new`` cannot create the function."""


class RequestError(FunctionsFrameworkError):
    """A request or delivery is refused before the handler runs."""


class BodyTooLarge(RequestError):
    """The body exceeds the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"body of {size} bytes exceeds the limit of {limit} bytes (--max-body)")


class BadCloudEvent(RequestError, ValueError):
    """A malformed CloudEvent, or one missing a required attribute."""


class EventDataError(RequestError, ValueError):
    """The event's body does not decode as its content type says."""


class BatchResultError(TypeError):
    """A ``@batch`` handler returned something that does not give one outcome per event."""


class HandlerTimeout(Exception):
    """funcd's per-call timeout (``--timeout``) ran out before the handler finished."""


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
