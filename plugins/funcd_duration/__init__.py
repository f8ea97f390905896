"""A tiny built-in plugin: adds ``x-funcd-duration`` (seconds, handler and hooks) to HTTP responses."""

from __future__ import annotations

import time
from typing import Any

from functions_framework import FunctionContext, Invocation, Outcome

HEADER = "x-funcd-duration"


class DurationPlugin:
    name = "duration"

    def __init__(self, context: FunctionContext | None = None) -> None:
        self.context = context

    def pre_hook(self, invocation: Invocation) -> None:
        invocation.state[self.name] = time.perf_counter()

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        started: Any = invocation.state.get(self.name, invocation.started)
        invocation.response_headers[HEADER] = f"{time.perf_counter() - started:.6f}"
