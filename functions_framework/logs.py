"""JSON log lines carrying the function name, execution id and trace id."""

from __future__ import annotations

import json
import logging
import sys
import time

from .invocation import current_invocation


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
        if invocation is not None:
            line["execution_id"] = invocation.execution_id
            trace_id = invocation.trace_id
            if trace_id:
                line["trace_id"] = trace_id
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
