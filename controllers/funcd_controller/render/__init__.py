"""Render a ``Function`` into the Kubernetes objects that run it. Pure: no I/O, no Kubernetes client.

``render(fn)`` returns a ``Rendered``: the objects in apply order and the ``Note``s reconcile turns into
conditions (e.g. why there is no scaler). ``render_all(fn)`` is just the objects.

What a Function becomes (every name deterministic, ``<fn>`` or ``<fn>-<part>``):
- Dapr Components ``<fn>-<component>`` for the inline ``bindings``/``pubsub``/``states`` (the
  FunctionContext names them so), a Configuration ``<fn>`` when tracing is on, a Resiliency ``<fn>``
  when an input has a dead-letter topic; in ``dapr.mode: container`` all of them go into the Secret
  ``<fn>-dapr`` that the daprd container reads instead;
- the Deployment, StatefulSet or Job ``<fn>`` (a Job is left to the ScaledJob when there is one);
- the Service ``<fn>`` of the HTTP trigger;
- the ScaledObject or ScaledJob ``<fn>`` when ``scaleOptions`` is given and KEDA triggers are written
  or can be derived from the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions_framework.model import Function, FunctionContext, Serving, function_context

from .dapr import dapr_resources, otel_target, tracing_on, wired_context
from .keda import scaler
from .notes import Note, unsupported
from .options import DEFAULT_OPTIONS, RenderOptions, with_cluster_hooks
from .standalone import dapr_secret, secret_refs
from .workload import pod_template, service, workload

__all__ = ["DEFAULT_OPTIONS", "Note", "RenderOptions", "Rendered", "render", "render_all"]


@dataclass(frozen=True)
class Rendered:
    """The objects of a Function, in apply order, and the notes about them."""

    objects: tuple[dict[str, Any], ...]
    """Kubernetes objects as plain dicts (fresh on every call: callers may change them)."""
    notes: tuple[Note, ...] = ()
    """What reconcile should report; empty when everything was rendered."""


def render(fn: Function, options: RenderOptions = DEFAULT_OPTIONS) -> Rendered:
    """Render ``fn`` with the cluster's ``options``. Raises ``ContextError`` (the model's message) when
    its references do not resolve."""
    serving = fn.spec.serving or Serving()
    ctx = with_cluster_hooks(fn, function_context(fn), options)
    wired = wired_context(fn, ctx)
    container_mode = wired.uses_dapr and serving.dapr.mode == "container"
    dapr_objects = dapr_resources(fn, wired) if wired.uses_dapr or serving.pubsub or serving.bindings else []
    template = pod_template(fn, wired, dapr_objects, options.daprd_image)
    scale = scaler(fn, ctx, template)
    notes = unsupported(fn) + _tracing_notes(wired)
    if scale.problems:
        reason = "NoScaler" if scale.obj is None else "InputsNotScaled"
        notes.append(Note("ScalerReady", reason, "; ".join(scale.problems)))
    objects: list[dict[str, Any]] = []
    if container_mode:
        objects.append(dapr_secret(fn, dapr_objects))
        if secret_refs(dapr_objects):
            message = (
                f"components {', '.join(secret_refs(dapr_objects))} read values from secrets (secretKeyRef), "
                "which a daprd in dapr.mode container cannot resolve: it has no secret store"
            )
            notes.append(Note("Rendered", "SecretRefsUnresolved", message))
    else:
        objects.extend(dapr_objects)
    is_job = serving.workload_type == "Job"
    runs = bool(fn.spec.image)  # without an image nothing can run: unsupported() says so
    if runs and not (is_job and scale.obj is not None):
        minimum = serving.scale_options.min_replicas if serving.scale_options else None
        replicas = None if scale.obj is not None or is_job else max(minimum or 1, 1)
        objects.append(workload(fn, template, replicas))
    if wired.has_http:
        objects.append(service(fn, wired))
    if scale.obj is not None and runs:
        objects.append(scale.obj)
    return Rendered(tuple(objects), tuple(notes))


def _tracing_notes(ctx: FunctionContext) -> list[Note]:
    """daprd posts OTLP/HTTP to ``/v1/traces`` only: say so when the endpoint names another path."""
    exporter = ctx.tracing.exporter if ctx.tracing is not None else None
    if not (ctx.uses_dapr and tracing_on(ctx)) or exporter is None or exporter.name == "zipkin":
        return []
    path = otel_target(exporter).path if exporter.endpoint else ""
    if path in ("", "/", "/v1/traces"):
        return []
    message = (
        f"tracing endpoint {exporter.endpoint!r} has the path {path!r}, which daprd does not take: "
        "its spans go to /v1/traces on the same host and port"
    )
    return [Note("Rendered", "TracingPathIgnored", message)]


def render_all(fn: Function, options: RenderOptions = DEFAULT_OPTIONS) -> list[dict[str, Any]]:
    """The objects of ``fn`` in apply order (``render(fn, options).objects``)."""
    return list(render(fn, options).objects)
