"""Names, labels and owner references shared by every rendered object. Pure."""

from __future__ import annotations

from typing import Any

from functions_framework.model import API_VERSION, Function

__all__ = [
    "DEFAULT_NAMESPACE",
    "app_id",
    "component_object_name",
    "labels",
    "object_meta",
    "selector_labels",
]

DEFAULT_NAMESPACE = "default"
"""The namespace in the Dapr app id of a Function read without one (``funcd render`` of a file)."""
MANAGED_BY = "funcd"


def app_id(fn: Function) -> str:
    """The Dapr app id: ``<fn>-<namespace>``."""
    return f"{fn.metadata.name}-{fn.metadata.namespace or DEFAULT_NAMESPACE}"


def component_object_name(fn: Function, name: str) -> str:
    """The name of the Dapr Component made from the Function's inline component ``name``.

    Components are namespaced, so two Functions defining the same name must not collide."""
    return f"{fn.metadata.name}-{name}"


def selector_labels(fn: Function) -> dict[str, str]:
    """The labels that select the Function's pods (immutable once a workload exists)."""
    return {"app.kubernetes.io/name": fn.metadata.name, "app.kubernetes.io/instance": fn.metadata.name}


def labels(fn: Function, component: str) -> dict[str, str]:
    """Every object's labels: the selector labels, ``managed-by`` and ``component``."""
    return {
        **selector_labels(fn),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/component": component,
    }


def owner_reference(fn: Function) -> dict[str, Any]:
    """The controller reference to the Function (garbage collection deletes what it owns)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Function",
        "name": fn.metadata.name,
        "uid": fn.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(
    fn: Function, name: str, component: str, extra_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """``metadata`` of a rendered object. The namespace and owner reference are set when known: a
    Function read from a file (``funcd render``) has no uid, and the API server refuses an empty one."""
    meta: dict[str, Any] = {"name": name}
    if fn.metadata.namespace:
        meta["namespace"] = fn.metadata.namespace
    meta["labels"] = {**(extra_labels or {}), **labels(fn, component)}
    if fn.metadata.uid:
        meta["ownerReferences"] = [owner_reference(fn)]
    return meta
