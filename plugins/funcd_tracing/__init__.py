"""OpenTelemetry tracing for funcd functions (hook name ``tracing``). Under construction."""

from __future__ import annotations

from functions_framework import FunctionContext, Invocation, Outcome


class TracingPlugin:
    name = "tracing"

    def __init__(self, context: FunctionContext | None = None) -> None:
        self.context = context

    def pre_hook(self, invocation: Invocation) -> None:
        raise NotImplementedError("the tracing plugin is being built")

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        raise NotImplementedError("the tracing plugin is being built")
