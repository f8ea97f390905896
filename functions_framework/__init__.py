"""funcd's functions framework: serve ``handler(context, event)`` over HTTP and Dapr."""

from .decorators import batch, cloud_event, errorhandler, http, typed
from .errors import (
    BadCloudEvent,
    BatchResultError,
    ContextError,
    Drop,
    EventDataError,
    FunctionLoadError,
    FunctionsFrameworkError,
    HTTPError,
    OutputError,
    PluginLoadError,
    Retry,
    SignatureError,
)
from .event import Event, Trigger
from .invocation import Invocation, Outcome, Status
from .model import FunctionContext, dump_context, parse_context
from .plugins import OutboundCall, Plugin, Rejected, WorkerInfo
from .replies import Response
from .runtime_context import RuntimeContext
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "BadCloudEvent",
    "BatchResultError",
    "ContextError",
    "Drop",
    "Event",
    "EventDataError",
    "FunctionContext",
    "FunctionLoadError",
    "FunctionsFrameworkError",
    "HTTPError",
    "Invocation",
    "OutboundCall",
    "Outcome",
    "OutputError",
    "Plugin",
    "PluginLoadError",
    "Rejected",
    "Response",
    "Retry",
    "RuntimeContext",
    "Settings",
    "SignatureError",
    "Status",
    "Trigger",
    "WorkerInfo",
    "__version__",
    "batch",
    "cloud_event",
    "dump_context",
    "errorhandler",
    "http",
    "parse_context",
    "typed",
]
