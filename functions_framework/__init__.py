"""funcd's functions framework: serve ``handler(context, event)`` over HTTP and Dapr."""

from .decorators import cloud_event, http
from .errors import (
    ContextError,
    Drop,
    EventDataError,
    FunctionLoadError,
    FunctionsFrameworkError,
    HTTPError,
    OutputError,
    PluginLoadError,
    Retry,
)
from .event import Event, Trigger
from .invocation import Invocation, Outcome, Status
from .model import FunctionContext, dump_context, parse_context
from .plugins import Plugin
from .response import Response
from .runtime_context import RuntimeContext

__version__ = "0.1.0"

__all__ = [
    "ContextError",
    "Drop",
    "Event",
    "EventDataError",
    "FunctionContext",
    "FunctionLoadError",
    "FunctionsFrameworkError",
    "HTTPError",
    "Invocation",
    "Outcome",
    "OutputError",
    "Plugin",
    "PluginLoadError",
    "Response",
    "Retry",
    "RuntimeContext",
    "Status",
    "Trigger",
    "__version__",
    "cloud_event",
    "dump_context",
    "http",
    "parse_context",
]
