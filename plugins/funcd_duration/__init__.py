"""A tiny built-in plugin: adds ``x-funcd-duration`` (seconds: hooks and handler) to HTTP replies."""

from __future__ import annotations

import time

from functions_framework import FunctionContext, Invocation, Outcome

HEADER = "x-funcd-duration"


class DurationPlugin:
    name = "duration"

    def __init__(self, context: FunctionContext | None = None) -> None:
        self.context = context

    def pre_hook(self, invocation: Invocation) -> None:
        invocation.state[self.name] = time.perf_counter()

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        if invocation.event.trigger.kind != "http":
            return  # a Dapr delivery has no reply headers
        started = invocation.state.get(self.name, invocation.started)
        invocation.response_headers[HEADER] = f"{time.perf_counter() - started:.6f}"
