"""Cluster-wide render options (daprd image, hooks and their policy), the timeout, the prune plan and
which watch events requeue a Function (no cluster)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from funcd_controller.apply import OWNED_KINDS
from funcd_controller.manager import Manager, child_fingerprint, function_fingerprint
from funcd_controller.reconcile import (
    PrunePlan,
    concern_conditions,
    prune_plan,
    ready_condition,
    workload_condition,
)
from funcd_controller.render import RenderOptions, render

from functions_framework.cli import main
from functions_framework.model import parse_function


def _fn(serving: dict[str, Any]) -> Any:
    doc = {
        "apiVersion": "funcd.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "fn", "namespace": "apps"},
        "spec": {"version": "v1", "image": "example/fn:1", "serving": serving},
    }
    return parse_function(doc, "function.yaml")


def _context(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return dict(json.loads(next(e["value"] for e in env if e["name"] == "FUNC_CONTEXT_V1BETA2")))


HTTP = {"triggers": {"http": {"port": 8080}}}


@pytest.mark.parametrize(
    ("hooks", "pre", "post"),
    [
        (None, ["tracing", "audit"], ["metrics"]),
        ({"pre": ["audit", "mine"], "post": ["last"]}, ["tracing", "audit", "mine"], ["metrics", "last"]),
        ({"pre": ["mine"], "policy": "Override"}, ["mine"], []),
    ],
)
def test_cluster_hooks_come_first_unless_the_function_overrides_them(
    hooks: dict[str, Any] | None, pre: list[str], post: list[str]
) -> None:
    serving = {**HTTP, **({"hooks": hooks} if hooks else {})}
    options = RenderOptions(pre_hooks=("tracing", "audit"), post_hooks=("metrics",))
    ctx = _context(render(_fn(serving), options).objects)
    assert ctx.get("preHooks", []) == pre
    assert ctx.get("postHooks", []) == post


def test_the_daprd_image_is_the_operators_choice() -> None:
    serving = {
        "triggers": {"dapr": [{"name": "q", "topic": "orders"}]},
        "pubsub": {"q": {"type": "pubsub.redis", "version": "v1", "metadata": []}},
        "dapr": {"mode": "container"},
    }
    default = render(_fn(serving)).objects
    chosen = render(_fn(serving), RenderOptions(daprd_image="local/daprd:1")).objects

    def daprd(objects: tuple[dict[str, Any], ...]) -> str:
        pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
        return str(next(c for c in pod["containers"] if c["name"] == "daprd")["image"])

    assert daprd(default) == "ghcr.io/dapr/daprd:1.18.2"
    assert daprd(chosen) == "local/daprd:1"


@pytest.mark.parametrize(("timeout", "seconds"), [("90s", 90), ("1m30s", 90), ("5m", 300), ("250ms", 1)])
def test_the_timeout_is_the_deployments_progress_deadline(timeout: str, seconds: int) -> None:
    objects = render(_fn({**HTTP, "timeout": timeout})).objects
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["progressDeadlineSeconds"] == seconds
    assert (
        "progressDeadlineSeconds"
        not in next(o for o in render(_fn(HTTP)).objects if o["kind"] == "Deployment")["spec"]
    )


def test_ready_follows_the_workload_and_names_an_exceeded_progress_deadline() -> None:
    stalled = {
        "kind": "Deployment",
        "status": {
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "m",
                }
            ]
        },
    }
    available = workload_condition(stalled, False, "30s", 3)
    assert (available["type"], available["status"], available["reason"]) == (
        "WorkloadAvailable",
        "False",
        "ProgressDeadlineExceeded",
    )
    assert available["message"] == "no replica became available within the timeout (30s): m"
    ready = ready_condition(available)
    assert (ready["type"], ready["reason"], ready["observedGeneration"]) == (
        "Ready",
        "ProgressDeadlineExceeded",
        3,
    )

    def both(workload: dict[str, Any] | None, scaled_job: bool = False) -> tuple[str, str, str]:
        cond = workload_condition(workload, scaled_job, "", 1)
        return cond["status"], cond["reason"], ready_condition(cond)["reason"]

    assert both({"kind": "Deployment", "status": {}}) == (
        "False",
        "WorkloadUnavailable",
        "WorkloadUnavailable",
    )
    zero = {"kind": "Deployment", "spec": {"replicas": 0}, "status": {}}
    assert both(zero) == ("False", "ScaledToZero", "WorkloadUnavailable")
    up = {"kind": "Deployment", "status": {"availableReplicas": 2}}
    assert both(up) == ("True", "Available", "Available")
    assert both(None, scaled_job=True) == ("True", "JobsOnDemand", "Available")
    assert both(None) == ("False", "NoWorkload", "NoWorkload")


def test_each_concern_has_a_condition_when_the_function_has_it() -> None:
    redis = [{"name": "redisHost", "value": "127.0.0.1:6379"}]
    pubsub = {"q": {"type": "pubsub.redis", "version": "v1", "metadata": redis}}
    scaled = {
        "triggers": {"dapr": [{"name": "q", "topic": "orders"}]},
        "pubsub": pubsub,
        "scaleOptions": {"minReplicas": 0, "maxReplicas": 2},
    }
    conds = {c["type"]: c for c in concern_conditions(render(_fn(scaled)), "apps", 2)}
    assert conds["Rendered"]["status"] == "True"
    assert (conds["ScalerReady"]["status"], conds["ScalerReady"]["reason"]) == ("True", "ScalerApplied")
    assert (conds["ComponentsReady"]["status"], conds["ComponentsReady"]["message"]) == (
        "True",
        "Dapr components applied: fn-q",
    )
    container = {**scaled, "dapr": {"mode": "container"}}
    conds = {c["type"]: c for c in concern_conditions(render(_fn(container)), "apps", 2)}
    assert conds["ComponentsReady"]["reason"] == "InSecret"
    plain = {c["type"] for c in concern_conditions(render(_fn(HTTP)), "apps", 1)}
    assert plain == {"Rendered"}  # no scaler, no components: nothing to say about them


D = ("apps/v1", "Deployment", "fn")
S = ("keda.sh/v1alpha1", "ScaledObject", "fn")


def _status(generation: int, *objects: tuple[str, str, str]) -> dict[str, Any]:
    listed = [{"apiVersion": a, "kind": k, "name": n} for a, k, n in objects]
    return {"observedGeneration": generation, "objects": listed}


def test_the_prune_plan_lists_only_when_it_cannot_know() -> None:
    assert prune_plan({}, 1, {D}) == PrunePlan()  # a first pass: nothing can be left over
    assert prune_plan(_status(4, D, S), 4, {D, S}) == PrunePlan()  # steady state: no call at all
    assert prune_plan(_status(4, D, S), 4, {D}) == PrunePlan(by_name=(S,))
    assert prune_plan(_status(3, D, S), 4, {D}) == PrunePlan(by_label=OWNED_KINDS)  # the spec changed
    assert prune_plan({}, 2, {D}) == PrunePlan(by_label=OWNED_KINDS)  # no status after a change
    invalid = {"observedGeneration": 2, "conditions": []}  # an InvalidSpec pass lists no objects
    assert prune_plan(invalid, 2, {D}) == PrunePlan(by_label=OWNED_KINDS)


def _obj(generation: int, status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"uid": "u1", "generation": generation, **meta}, "status": status or {}}


def test_our_own_status_writes_do_not_requeue_a_function() -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    changed = Manager._changed
    assert changed("ADDED", _obj(1), seen, function_fingerprint)
    assert not changed("MODIFIED", _obj(1, {"conditions": [{"type": "Ready"}]}), seen, function_fingerprint)
    assert changed("MODIFIED", _obj(2), seen, function_fingerprint)  # a new spec
    assert changed("MODIFIED", _obj(2, labels={"team": "a"}), seen, function_fingerprint)
    assert changed("DELETED", _obj(2), seen, function_fingerprint)


def test_a_child_requeues_its_function_when_what_the_status_shows_changes() -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    changed = Manager._changed
    assert not changed("ADDED", _obj(1), seen, child_fingerprint)  # we just applied it
    assert not changed("MODIFIED", _obj(1, {"observedGeneration": 1}), seen, child_fingerprint)
    assert changed("MODIFIED", _obj(1, {"replicas": 1}), seen, child_fingerprint)
    assert changed("MODIFIED", _obj(1, {"replicas": 1, "availableReplicas": 1}), seen, child_fingerprint)
    assert changed("MODIFIED", _obj(2, {"replicas": 1, "availableReplicas": 1}), seen, child_fingerprint)
    assert changed("DELETED", _obj(2), seen, child_fingerprint)


def test_funcd_render_takes_the_cluster_options(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "function.yaml"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "funcd.dev/v1alpha1",
                "kind": "Function",
                "metadata": {"name": "fn"},
                "spec": {"image": "example/fn:1", "serving": HTTP},
            }
        )
    )
    assert main(["render", str(path), "--pre-hooks", "tracing,audit"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert _context(tuple(docs))["preHooks"] == ["tracing", "audit"]
    assert main(["render", str(path), "--pre-hooks", "bad name!"]) == 2
    err = capsys.readouterr().err
    assert "expected comma-separated plugin names, got 'bad name!'" in err
