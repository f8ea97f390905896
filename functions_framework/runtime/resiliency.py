"""Dapr resiliency policies and dead-letter topics: what funcd warns about, and the retry policy it
writes for a local daprd.

In Dapr (1.15, and still 1.18) a subscription with a dead-letter topic and no resiliency
policy for its pub/sub component sends an event to the dead-letter topic the first time its
delivery fails: the handler answered RETRY, raised, or the app could not be reached. Only an
inbound retry policy on the component (a ``Resiliency`` resource,
``spec.targets.components.<name>.inbound.retry``) makes daprd retry first (dapr/dapr v1.15.4 and
v1.18.2 ``pkg/runtime/subscription/subscription.go``). Without a dead-letter topic, Redis streams
(Dapr 1.17 and later) acknowledge a message whose delivery failed once the retries are over: the
policy is then all that stands between a failure and a lost event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model import FunctionContext

__all__ = ["LOCAL_RETRY", "dead_letter_warnings", "local_retry_policy", "retry_targets"]

LOCAL_RETRY = {"policy": "constant", "duration": "1s", "maxRetries": 10}
"""The inbound retry funcd gives the pub/subs of a local daprd that runs on its default components."""


def retry_targets(folder: Path) -> set[str]:
    """The components that a Resiliency resource in ``folder`` (``*.yaml``/``*.yml``) gives an inbound
    retry policy. Files that do not parse are skipped: daprd reports them itself."""
    import yaml

    targeted: set[str] = set()
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError):
            continue
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "Resiliency":
                continue
            components = ((doc.get("spec") or {}).get("targets") or {}).get("components") or {}
            if not isinstance(components, dict):
                continue
            for name, target in components.items():
                inbound = target.get("inbound") if isinstance(target, dict) else None
                if isinstance(inbound, dict) and inbound.get("retry"):
                    targeted.add(str(name))
    return targeted


def dead_letter_warnings(context: FunctionContext, targeted: set[str] | None, where: str = "") -> list[str]:
    """One warning per pub/sub input with a dead-letter topic and no known inbound retry policy.

    ``targeted``: the components known to have one (from a local components folder, described by
    ``where``); None when funcd cannot know (an external sidecar)."""
    warnings = []
    for comp in context.inputs.values():
        if comp.kind != "pubsub" or not comp.dead_letter_topic:
            continue
        if targeted is not None and comp.component_name in targeted:
            continue
        known = (
            f"and {where} has no Resiliency resource with an inbound retry for component "
            f"{comp.component_name!r}"
            if targeted is not None
            else f"unless the sidecar has a resiliency policy with an inbound retry for component "
            f"{comp.component_name!r}"
        )
        warnings.append(
            f"input {comp.name!r} has the dead-letter topic {comp.dead_letter_topic!r}: Dapr sends an event "
            f"the function answers RETRY (or raises on) to it at once, without retrying, {known}; "
            "see 'Retries and dead letters' in docs/authoring.md"
        )
    return warnings


def local_retry_policy(components: list[str]) -> dict[str, Any]:
    """A Resiliency resource giving each of ``components`` funcd's inbound retry (``LOCAL_RETRY``)."""
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "funcd-local-retries"},
        "spec": {
            "policies": {"retries": {"funcd-inbound": dict(LOCAL_RETRY)}},
            "targets": {"components": {name: {"inbound": {"retry": "funcd-inbound"}} for name in components}},
        },
    }
