"""What a Function asks for that render does not make (yet), as notes for reconcile's conditions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from functions_framework.model import Function, Serving

__all__ = ["Note", "NoteCondition", "unsupported"]

NoteCondition = Literal["Rendered", "ScalerReady"]


@dataclass(frozen=True)
class Note:
    """Something reconcile reports in a condition: what render could not do, and why."""

    condition: NoteCondition
    """The condition type it belongs to (several notes may share one: join their messages)."""
    reason: str
    """A CamelCase reason, e.g. ``NoScaler``."""
    message: str
    """What happened, for people."""


def unsupported(fn: Function) -> list[Note]:
    """Notes for the parts of the spec that are accepted and not acted on."""
    notes = []
    if fn.spec.build is not None:
        message = "spec.build is accepted, but funcd does not build images yet: spec.image runs as given"
        notes.append(Note("Rendered", "BuildNotSupported", message))
    if not fn.spec.image:
        notes.append(
            Note("Rendered", "NoImage", "spec.image is empty: no workload is rendered until it is set")
        )
    if fn.spec.workload_runtime not in ("", "OCIContainer"):
        message = (
            f"spec.workloadRuntime {fn.spec.workload_runtime!r} is not supported: "
            "the image runs as a container"
        )
        notes.append(Note("Rendered", "RuntimeNotSupported", message))
    serving = fn.spec.serving or Serving()
    http = serving.triggers.http
    if http is not None and (http.route is not None or http.engine is not None):
        message = (
            "spec.serving.triggers.http.route and engine are not rendered yet: "
            "the function is reachable through its Service"
        )
        notes.append(Note("Rendered", "HttpRouteNotSupported", message))
    scale = serving.scale_options
    if scale is not None and (scale.knative is not None or (scale.keda and scale.keda.http_scaled_object)):
        message = "scaleOptions.knative and keda.httpScaledObject are not rendered yet"
        notes.append(Note("ScalerReady", "HttpScalingNotSupported", message))
    return notes
