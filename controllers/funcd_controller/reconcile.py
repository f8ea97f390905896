"""Level-based reconcile of one Function: re-read, validate, render, apply, prune, write status.

``reconcile(namespace, name)`` is idempotent: in steady state it applies objects that do not change
(server-side apply leaves their resourceVersion alone) and writes no status, because conditions are
written only when they change. A Function the model refuses gets ``Ready=False`` with the model's own,
path-exact message and is not retried until it changes; API trouble raises ``TemporaryError`` for the
manager to requeue with backoff.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

from functions_framework.errors import ContextError
from functions_framework.model import Function, parse_function

from .apply import INSTANCE, OWNED_KINDS, Applier, key
from .errors import PermanentError, classify
from .render import DEFAULT_OPTIONS, Note, Rendered, RenderOptions, render

log = logging.getLogger("funcd_controller.reconcile")

GROUP, VERSION, KIND = "funcd.dev", "v1alpha1", "Function"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Result:
    """What the manager does next with this key."""

    requeue_after: float | None = None
    """Seconds until the key is looked at again (e.g. while the workload becomes available)."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message[:32000],
        "observedGeneration": generation,
    }


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``new`` with each condition's lastTransitionTime kept from ``old`` when its status is the same."""
    before = {c.get("type"): c for c in old}
    out = []
    for cond in new:
        prev = before.get(cond["type"])
        same = prev is not None and prev.get("status") == cond["status"]
        out.append({**cond, "lastTransitionTime": prev["lastTransitionTime"] if same else _now()})  # type: ignore[index]
    return out


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


@dataclass(frozen=True)
class PrunePlan:
    """What the prune step looks at."""

    by_name: tuple[tuple[str, str, str], ...] = ()
    """Objects to delete by name, with no list call."""
    by_label: tuple[tuple[str, str], ...] = ()
    """Kinds to list by our labels, deleting what is not rendered."""


def prune_plan(status: dict[str, Any], generation: int, rendered: set[tuple[str, str, str]]) -> PrunePlan:
    """The cheapest prune that leaves nothing behind.

    A status of this generation lists everything the last complete pass applied: what it lists and
    no longer renders is deleted by name (usually nothing). A Function's first pass has nothing to
    prune. Otherwise (the spec changed, or a pass failed before its status was written) every owned
    kind is listed by label, so that nothing applied by an earlier pass is left behind.
    """
    listed = status.get("objects")
    if isinstance(listed, list) and status.get("observedGeneration") == generation:
        recorded = {
            (str(o.get("apiVersion")), str(o.get("kind")), str(o.get("name")))
            for o in listed
            if isinstance(o, dict)
        }
        return PrunePlan(by_name=tuple(sorted(recorded - rendered)))
    if generation <= 1 and not status:
        return PrunePlan()
    return PrunePlan(by_label=OWNED_KINDS)


def _triggers(fn: Function) -> str:
    serving = fn.spec.serving
    if serving is None:
        return ""
    parts = []
    if serving.triggers.http is not None:
        parts.append("http")
    refs: list[tuple[str, str, str]] = [(t.type, t.topic, t.name) for t in serving.triggers.dapr]
    refs += [(i.dapr.type, i.dapr.topic, i.dapr.name) for i in serving.triggers.inputs if i.dapr]
    for type_, topic, name in refs:
        parts.append(f"{type_.split('.', 1)[0] or 'dapr'}:{topic or name}")
    return ",".join(parts)


def workload_replicas(workload: dict[str, Any] | None) -> int:
    st = (workload or {}).get("status") or {}
    return int(st.get("replicas") or st.get("active") or 0)


def workload_condition(
    workload: dict[str, Any] | None, scaled_job: bool, timeout: str, generation: int
) -> dict[str, Any]:
    """``WorkloadAvailable`` from the workload as stored: available, coming up, scaled to zero, or past
    its ``timeout``."""
    if workload is None:
        if scaled_job:
            return condition(
                "WorkloadAvailable", True, "JobsOnDemand", "KEDA creates a Job per event", generation
            )
        return condition("WorkloadAvailable", False, "NoWorkload", "no workload is rendered", generation)
    st = workload.get("status") or {}
    if workload.get("kind") == "Job":
        return condition("WorkloadAvailable", True, "JobCreated", "the Job is created", generation)
    if int(st.get("availableReplicas", st.get("readyReplicas")) or 0) > 0:
        message = f"{st.get('availableReplicas', st.get('readyReplicas'))} replica(s) available"
        return condition("WorkloadAvailable", True, "Available", message, generation)
    stalled = next(
        (
            c
            for c in st.get("conditions") or []
            if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        ),
        None,
    )
    if stalled is not None:
        within = f"within the timeout ({timeout or '600s'})"
        message = f"no replica became available {within}: {stalled.get('message', '')}"
        return condition("WorkloadAvailable", False, "ProgressDeadlineExceeded", message, generation)
    if (workload.get("spec") or {}).get("replicas") == 0:
        message = "scaled to zero: no replica runs until its scaler sees work"
        return condition("WorkloadAvailable", False, "ScaledToZero", message, generation)
    message = "no replica of the workload is available yet"
    return condition("WorkloadAvailable", False, "WorkloadUnavailable", message, generation)


def ready_condition(available: dict[str, Any]) -> dict[str, Any]:
    """``Ready`` follows ``WorkloadAvailable``: True once a replica serves, False with why not."""
    ok = available["status"] == "True"
    reason = available["reason"]
    if ok:
        reason = "Available"
    elif reason not in ("ProgressDeadlineExceeded", "NoWorkload"):
        reason = "WorkloadUnavailable"
    return {**available, "type": "Ready", "reason": reason}


def concern_conditions(rendered: Rendered, namespace: str, generation: int) -> list[dict[str, Any]]:
    """``Rendered``, and ``ScalerReady`` / ``ComponentsReady`` when the Function has a scaler or Dapr
    components: False with the render notes' reasons, else True with what was applied."""
    notes: dict[str, list[Note]] = {}
    for note in rendered.notes:
        notes.setdefault(note.condition, []).append(note)
    kinds = [o["kind"] for o in rendered.objects]
    names = {k: [o["metadata"]["name"] for o in rendered.objects if o["kind"] == k] for k in set(kinds)}
    out = []

    def add(kind: str, ok_reason: str, ok_message: str) -> None:
        if kind in notes:
            message = "; ".join(n.message for n in notes[kind])
            out.append(condition(kind, False, notes[kind][0].reason, message, generation))
        else:
            out.append(condition(kind, True, ok_reason, ok_message, generation))

    add("Rendered", "Applied", f"{len(kinds)} object(s) applied in {namespace}")
    scalers = names.get("ScaledObject", []) + names.get("ScaledJob", [])
    if scalers or "ScalerReady" in notes:
        add("ScalerReady", "ScalerApplied", f"KEDA scales it: {', '.join(scalers)}")
    components = names.get("Component", [])
    if components:
        add("ComponentsReady", "Applied", f"Dapr components applied: {', '.join(components)}")
    elif "Secret" in names:
        secret = names["Secret"][0]
        add("ComponentsReady", "InSecret", f"Dapr components in Secret {secret}, read by the daprd container")
    return out


class Reconciler:
    """Reconciles Functions through the dynamic client."""

    def __init__(self, dynamic: Any, options: RenderOptions = DEFAULT_OPTIONS) -> None:
        self.dynamic = dynamic
        self.options = options
        self.applier = Applier(dynamic)
        self.functions = dynamic.resources.get(api_version=API_VERSION, kind=KIND)

    def reconcile(self, namespace: str, name: str) -> Result:
        try:
            obj = self.functions.get(name=name, namespace=namespace).to_dict()
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return Result()  # deleted: the garbage collector removes what it owned
            raise classify(exc, f"get Function {namespace}/{name}") from exc
        generation = int(obj["metadata"].get("generation") or 0)
        status = obj.get("status") or {}
        try:
            fn = parse_function(obj, f"Function {namespace}/{name}")
        except ContextError as exc:
            problems = "; ".join(exc.problems)
            self._write_status(obj, [condition("Ready", False, "InvalidSpec", problems, generation)], {})
            return Result()
        try:
            return self._realise(obj, fn, generation, status)
        except ContextError as exc:  # render found a reference that does not resolve
            problems = "; ".join(exc.problems)
            self._write_status(obj, [condition("Ready", False, "InvalidSpec", problems, generation)], {})
            return Result()
        except PermanentError as exc:
            self._write_status(obj, [condition("Ready", False, exc.reason, str(exc), generation)], {})
            return Result()

    def _realise(self, obj: dict[str, Any], fn: Function, generation: int, status: dict[str, Any]) -> Result:
        namespace = obj["metadata"]["namespace"]
        rendered = render(fn, self.options)
        applied = [self.applier.apply(o) for o in rendered.objects]
        keep = {key(o) for o in rendered.objects}
        plan = prune_plan(status, generation, keep)
        self.applier.delete(namespace, plan.by_name)
        if plan.by_label:
            self.applier.prune(namespace, obj["metadata"]["name"], keep, plan.by_label)
        workload = next((a for a in applied if a.get("kind") in WORKLOAD_KINDS), None)
        timeout = fn.spec.serving.timeout if fn.spec.serving else ""
        scaled_job = any(o["kind"] == "ScaledJob" for o in rendered.objects)
        available = workload_condition(workload, scaled_job, timeout, generation)
        conditions = [
            ready_condition(available),
            available,
            *concern_conditions(rendered, namespace, generation),
        ]
        replicas = workload_replicas(workload)
        service = next((a for a in applied if a.get("kind") == "Service"), None)
        address = ""
        if service is not None:
            port = (service.get("spec", {}).get("ports") or [{}])[0].get("port", 80)
            address = f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local:{port}"
        extra = {
            "replicas": replicas,
            "address": address,
            "triggers": _triggers(fn),
            "objects": [{"apiVersion": a, "kind": k, "name": n} for a, k, n in map(key, rendered.objects)],
        }
        self._write_status(obj, conditions, extra)
        # No polling: the watch on our Deployments brings the Function back when availability changes.
        return Result()

    def _write_status(
        self, obj: dict[str, Any], conditions: list[dict[str, Any]], extra: dict[str, Any]
    ) -> None:
        old = obj.get("status") or {}
        generation = int(obj["metadata"].get("generation") or 0)
        merged = merge_conditions(old.get("conditions") or [], conditions)
        new = {**{k: v for k, v in old.items() if k in extra}, **extra}
        new["conditions"] = merged
        new["observedGeneration"] = generation
        if _same_status(old, new):
            return  # steady state: no write
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": obj["metadata"]["name"]},
            "status": new,
        }
        try:
            self.functions.status.patch(
                body=body,
                name=obj["metadata"]["name"],
                namespace=obj["metadata"]["namespace"],
                content_type="application/merge-patch+json",
            )
        except Exception as exc:
            raise classify(exc, f"write the status of Function {obj['metadata']['name']}") from exc


def _same_status(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def strip(conds: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
            for c in conds
        ]

    for k, v in new.items():
        if k == "conditions":
            if strip(old.get("conditions") or []) != strip(v):
                return False
        elif old.get(k) != v:
            return False
    return True


__all__ = ["INSTANCE", "Reconciler", "Result"]
