"""Server-side apply with one field manager, and pruning of what we own but no longer render."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .errors import classify

log = logging.getLogger("funcd_controller.apply")

FIELD_MANAGER = "funcd-controller"
MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"

OWNED_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "ScaledJob"),
    ("dapr.io/v1alpha1", "Component"),
    ("dapr.io/v1alpha1", "Resiliency"),
    ("dapr.io/v1alpha1", "Configuration"),
)
"""Every kind render may emit; prune looks for our leftovers among them."""


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]


class Applier:
    """Applies and prunes a Function's objects through the dynamic client."""

    def __init__(self, dynamic: Any) -> None:
        self.dynamic = dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            return None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj``; returns the object as stored."""
        api_version, kind, name = key(obj)
        resource = self._resource(api_version, kind)
        if resource is None:
            raise classify(
                RuntimeError(f"the API server does not serve {kind} ({api_version}); is its CRD installed?"),
                f"apply {kind} {name}",
            )
        namespace = obj["metadata"].get("namespace")
        try:
            result = resource.server_side_apply(
                body=obj, name=name, namespace=namespace, field_manager=FIELD_MANAGER, force_conflicts=True
            )
        except Exception as exc:
            raise classify(exc, f"apply {kind} {namespace}/{name}") from exc
        return result.to_dict() if hasattr(result, "to_dict") else dict(result)

    def delete(self, namespace: str, keys: Iterable[tuple[str, str, str]]) -> list[str]:
        """Delete the named objects; one already gone is fine. Returns what went."""
        gone = []
        for api_version, kind, name in keys:
            resource = self._resource(api_version, kind)
            if resource is None:
                continue
            try:
                resource.delete(name=name, namespace=namespace, body={"propagationPolicy": "Background"})
                gone.append(f"{kind}/{name}")
            except Exception as exc:
                if getattr(exc, "status", None) != 404:
                    raise classify(exc, f"delete {kind} {namespace}/{name}") from exc
        if gone:
            log.info("pruned %s in %s", ", ".join(gone), namespace)
        return gone

    def prune(
        self,
        namespace: str,
        instance: str,
        keep: Iterable[tuple[str, str, str]],
        kinds: Iterable[tuple[str, str]] = OWNED_KINDS,
    ) -> list[str]:
        """Delete objects labelled as ours for ``instance`` that are not in ``keep``; returns what went.

        ``kinds`` limits the search (e.g. to the kinds the Function's status says were applied)."""
        kept = set(keep)
        gone = []
        selector = f"{MANAGED_BY}=funcd,{INSTANCE}={instance}"
        for api_version, kind in kinds:
            resource = self._resource(api_version, kind)
            if resource is None:
                continue  # that API (KEDA, Dapr) is not installed: nothing of ours can be there
            try:
                listed = resource.get(namespace=namespace, label_selector=selector)
                for item in listed.items:
                    name = item.metadata.name
                    if (api_version, kind, name) in kept:
                        continue
                    resource.delete(name=name, namespace=namespace, body={"propagationPolicy": "Background"})
                    gone.append(f"{kind}/{name}")
            except Exception as exc:
                if getattr(exc, "status", None) == 404:
                    continue
                raise classify(exc, f"prune {kind} in {namespace}") from exc
        if gone:
            log.info("pruned %s of %s/%s", ", ".join(gone), namespace, instance)
        return gone
