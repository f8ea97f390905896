"""Prometheus metrics for funcd functions (hook name ``metrics``). Under construction."""

from __future__ import annotations

from functions_framework import FunctionContext, Invocation, Outcome


class MetricsPlugin:
    name = "metrics"

    def __init__(self, context: FunctionContext | None = None) -> None:
        self.context = context

    def pre_hook(self, invocation: Invocation) -> None:
        raise NotImplementedError("the metrics plugin is being built")

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        raise NotImplementedError("the metrics plugin is being built")
