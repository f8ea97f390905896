"""JSON log lines carrying the function name, execution id, trace id and span id.

The trace and span ids come from ``span_ids``, when a tracing plugin set it (``set_span_ids``): a
function returning the active span's (trace id, span id) in hex, or None. Without one, a line in a call
carries the inbound ``traceparent``'s trace id. This module imports no tracing library.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

from .invocation import current_invocation

SpanIds = Callable[[], "tuple[str, str] | None"]
span_ids: SpanIds | None = None
"""Where the active span's ids come from (set by the tracing plugin), or None."""


def set_span_ids(source: SpanIds | None) -> None:
    """Make log lines carry the ids ``source`` returns (None: back to the inbound trace id)."""
    global span_ids
    span_ids = source


class JsonFormatter(logging.Formatter):
    def __init__(self, function_name: str) -> None:
        super().__init__()
        self.function_name = function_name

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "function": self.function_name,
        }
        access = getattr(record, "access", None)
        if access is not None:
            line.update({k: v for k, v in access.items() if v not in ("", None)})
            return json.dumps(line, default=str)
        invocation = current_invocation.get()
        ids = span_ids() if span_ids is not None else None
        if invocation is not None:
            line["execution_id"] = invocation.execution_id
            trace_id = invocation.trace_id
            if trace_id and ids is None:
                line["trace_id"] = trace_id
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(function_name: str, level: int = logging.INFO) -> None:
    """Send every record to stderr as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(function_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
