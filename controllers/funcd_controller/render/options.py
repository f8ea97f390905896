"""What a cluster's operator sets for every Function: the flags of ``funcd controller`` and ``render``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from functions_framework.model import Function, FunctionContext

DAPRD_IMAGE = "ghcr.io/dapr/daprd:1.18.2"
"""The daprd image of ``dapr.mode: container`` unless the operator names another; the same Dapr
version the tests run."""


@dataclass(frozen=True)
class RenderOptions:
    """Cluster-wide settings that render applies to every Function."""

    daprd_image: str = DAPRD_IMAGE
    """The daprd container's image in ``dapr.mode: container``."""
    pre_hooks: tuple[str, ...] = ()
    """Cluster-wide plugins run before every call; a Function's ``hooks.policy: Append`` (the default)
    runs its own after these, ``Override`` runs only its own."""
    post_hooks: tuple[str, ...] = ()
    """Cluster-wide plugins run after every call, with the same policy."""


DEFAULT_OPTIONS = RenderOptions()
"""No cluster-wide hooks, the default daprd image."""


def with_cluster_hooks(fn: Function, ctx: FunctionContext, options: RenderOptions) -> FunctionContext:
    """``ctx`` with the cluster-wide hooks put first, unless the Function's policy is ``Override``."""
    serving = fn.spec.serving
    hooks = serving.hooks if serving else None
    if hooks is not None and hooks.policy == "Override":
        return ctx
    if not (options.pre_hooks or options.post_hooks):
        return ctx

    def merged(cluster: tuple[str, ...], own: tuple[str, ...]) -> tuple[str, ...]:
        return (*cluster, *(h for h in own if h not in cluster))

    return dataclasses.replace(
        ctx,
        pre_hooks=merged(options.pre_hooks, ctx.pre_hooks),
        post_hooks=merged(options.post_hooks, ctx.post_hooks),
    )
