"""Render: golden files for every sample, OpenFunction's ported subscriber and the edge cases, plus
properties every rendered object must have. Regenerate the golden files with FUNCD_UPDATE_GOLDEN=1
(then read the diff)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from funcd_controller.render import Rendered, render, render_all

from functions_framework.cli import main
from functions_framework.model import (
    ContextError,
    DaprOutput,
    Function,
    FunctionSpec,
    ObjectMeta,
    Output,
    Serving,
    parse_context,
    parse_function,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
UID = "6f1c1d2e-0000-4000-8000-00000000f00d"
UPDATE = os.environ.get("FUNCD_UPDATE_GOLDEN") == "1"

CASES: dict[str, Path] = {
    **{f"sample-{p.parent.name}": p for p in sorted((ROOT / "samples").glob("*/function.yaml"))},
    "openfunction-subscriber": ROOT / "tests/fixtures/openfunction-subscriber.yaml",
    **{p.stem: p for p in sorted((ROOT / "tests/fixtures/render").glob("*.yaml"))},
}


def load(path: Path) -> Function:
    """The Function as the API server hands it to the controller: with a uid and a namespace."""
    data = yaml.safe_load(path.read_text())
    data["metadata"]["uid"] = UID
    data["metadata"].setdefault("namespace", "default")
    return parse_function(data, str(path))


def dump(rendered: Rendered) -> str:
    notes = "".join(f"# note: {n.condition} {n.reason}: {n.message}\n" for n in rendered.notes)
    return notes + yaml.safe_dump_all(rendered.objects, sort_keys=False)


def test_every_sample_has_a_case() -> None:
    samples = {p.name for p in (ROOT / "samples").iterdir() if p.is_dir()}
    assert {f"sample-{s}" for s in samples} <= CASES.keys()


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    text = dump(render(load(CASES[case])))
    golden = GOLDEN / f"{case}.yaml"
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden}: run with FUNCD_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), (
        f"{case}: render differs from {golden} (FUNCD_UPDATE_GOLDEN=1 rewrites)"
    )


def test_no_golden_file_without_a_case() -> None:
    assert {p.stem for p in GOLDEN.glob("*.yaml")} == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_is_deterministic_and_fresh(case: str) -> None:
    fn = load(CASES[case])
    first = render_all(fn)
    snapshot = copy.deepcopy(first)
    for obj in first:  # a caller changing what it got must not change the next render
        obj["metadata"]["labels"]["changed"] = "yes"
        obj.setdefault("spec", {})["changed"] = True
    again = render_all(load(CASES[case]))
    assert again == snapshot == render_all(fn)
    text = yaml.safe_dump_all(again)
    assert text == yaml.safe_dump_all(snapshot)
    assert "&id" not in text, "an object is shared between two places (YAML anchors)"


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
        return [spec["template"]]
    if obj["kind"] == "ScaledJob":
        return [spec["jobTargetRef"]["template"]]
    return []


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_labelled_owned_and_named(case: str) -> None:
    fn = load(CASES[case])
    objects = render_all(fn)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), f"duplicate objects: {keys}"
    for obj in objects:
        meta = obj["metadata"]
        assert "generateName" not in meta
        assert meta["name"] == fn.metadata.name or meta["name"].startswith(f"{fn.metadata.name}-")
        assert meta["namespace"] == fn.metadata.namespace
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == fn.metadata.name
        assert labels["app.kubernetes.io/instance"] == fn.metadata.name
        assert labels["app.kubernetes.io/managed-by"] == "funcd"
        assert labels["app.kubernetes.io/component"]
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "funcd.dev/v1alpha1",
                "kind": "Function",
                "name": fn.metadata.name,
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_pods_meet_the_restricted_standard_and_carry_the_context(case: str) -> None:
    fn = load(CASES[case])
    templates = [t for o in render_all(fn) for t in pod_templates(o)]
    assert len(templates) == 1
    pod = templates[0]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        if c["name"] == "helper":  # a user's own container is theirs
            continue
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["runAsNonRoot"] is True, c["name"]
    function = next(c for c in pod["containers"] if c["name"] == "function")
    assert function["image"] == fn.spec.image
    assert function["args"][:2] == ["--host", "0.0.0.0"]
    assert {"name": "tmp", "mountPath": "/tmp"} in function["volumeMounts"]
    env = {e["name"]: e for e in function["env"]}
    assert env["FUNC_CONTEXT"]["value"] == env["FUNC_CONTEXT_V1BETA2"]["value"]
    ctx = parse_context(json.loads(env["FUNC_CONTEXT_V1BETA2"]["value"]))
    assert ctx.name == fn.metadata.name
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert function["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert function["readinessProbe"]["httpGet"]["path"] == "/readyz"


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [o["kind"] for o in objects]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def test_components_are_named_per_function_and_the_context_follows() -> None:
    objects = render_all(load(CASES["sample-pubsub-consumer"]))
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "Component"}
    assert names == {"pubsub-consumer-orders-pubsub", "pubsub-consumer-totals"}
    for o in objects:
        if o["kind"] in ("Component", "Resiliency"):
            assert o["scopes"] == ["pubsub-consumer-default"]
    env = {e["name"]: e.get("value") for e in by_kind(objects, "Deployment")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}  # fmt: skip
    ctx = parse_context(json.loads(env["FUNC_CONTEXT_V1BETA2"]))
    assert ctx.inputs["orders-pubsub"].component_name == "pubsub-consumer-orders-pubsub"
    assert ctx.states["totals"].component_name == "pubsub-consumer-totals"
    resiliency = by_kind(objects, "Resiliency")["spec"]
    assert resiliency["targets"]["components"] == {
        "pubsub-consumer-orders-pubsub": {"inbound": {"retry": "pubsub-consumer-inbound"}}
    }


def test_redis_input_scales_on_lag_with_the_dapr_consumer_group() -> None:
    objects = render_all(load(CASES["sample-pubsub-consumer"]))
    deployment = by_kind(objects, "Deployment")
    assert "replicas" not in deployment["spec"]  # KEDA owns it
    spec = by_kind(objects, "ScaledObject")["spec"]
    assert spec["minReplicaCount"] == 0
    [trigger] = spec["triggers"]
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"]["consumerGroup"] == "pubsub-consumer-default"
    assert trigger["metadata"]["stream"] == "orders"
    assert trigger["metadata"]["address"] == "redis:6379"
    assert "lagCount" in trigger["metadata"]


def test_no_scale_options_means_one_replica_and_no_scaler() -> None:
    objects = render_all(load(CASES["sample-cron-binding"]))
    assert "ScaledObject" not in kinds(objects)
    assert by_kind(objects, "Deployment")["spec"]["replicas"] == 1
    assert "Service" not in kinds(objects)


def test_http_only_has_a_service_and_no_dapr() -> None:
    objects = render_all(load(CASES["sample-hello-http"]))
    assert kinds(objects) == ["Deployment", "Service"]
    template = by_kind(objects, "Deployment")["spec"]["template"]
    # No Dapr annotation: only the scrape annotations of its metrics (the sample turns them on).
    assert set(template["metadata"]["annotations"]) == {
        "prometheus.io/scrape",
        "prometheus.io/port",
        "prometheus.io/path",
    }


def test_scale_options_without_a_derivable_trigger_say_why() -> None:
    rendered = render(load(CASES["http-scaled"]))
    assert "ScaledObject" not in kinds(list(rendered.objects))
    [note] = rendered.notes
    assert (note.condition, note.reason) == ("ScalerReady", "NoScaler")
    assert "keda.triggers" in note.message
    assert by_kind(list(rendered.objects), "Deployment")["spec"]["replicas"] == 2


def test_derived_triggers_for_every_known_kind() -> None:
    rendered = render(load(CASES["derived-scalers"]))
    triggers = by_kind(list(rendered.objects), "ScaledObject")["spec"]["triggers"]
    assert [(t["name"], t["type"]) for t in triggers] == [
        ("orders", "redis-streams"),
        ("clicks", "kafka"),
        ("tasks", "rabbitmq"),
        ("events", "nats-jetstream"),
        ("audit", "kafka"),
    ]
    assert triggers[1]["metadata"]["consumerGroup"] == "clickers"
    assert triggers[4]["metadata"]["topic"] == "audit"
    [note] = rendered.notes
    assert note.reason == "InputsNotScaled"
    assert "'tick'" in note.message and "'external'" in note.message


def test_job_with_scaled_job_renders_no_job() -> None:
    objects = render_all(load(CASES["job-scaledjob"]))
    assert kinds(objects) == ["Component", "ScaledJob"]
    spec = by_kind(objects, "ScaledJob")["spec"]
    assert spec["jobTargetRef"]["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["maxReplicaCount"] == 4
    assert spec["triggers"][0]["metadata"]["consumerGroup"] == "batchers"
    assert kinds(render_all(load(CASES["job-plain"]))) == ["Job", "Service"]


def test_container_mode_renders_daprd_and_its_secret() -> None:
    objects = render_all(load(CASES["container-mode"]))
    assert kinds(objects) == ["Secret", "Deployment"]
    secret = by_kind(objects, "Secret")
    files = secret["stringData"]
    assert set(files) == {"standalone-queue.yaml", "standalone.yaml", "config.yaml"}
    component = yaml.safe_load(files["standalone-queue.yaml"])
    assert component["kind"] == "Component" and component["scopes"] == ["standalone-edge"]
    assert yaml.safe_load(files["standalone.yaml"])["kind"] == "Resiliency"
    pod = by_kind(objects, "Deployment")["spec"]["template"]
    assert "annotations" not in pod["metadata"]  # no injector in this mode
    daprd = next(c for c in pod["spec"]["containers"] if c["name"] == "daprd")
    args = daprd["args"]
    expected = {
        "--mode": "standalone",
        "--app-id": "standalone-edge",
        "--app-port": "50051",
        "--app-protocol": "grpc",
        "--resources-path": "/components",
        "--app-channel-address": "127.0.0.1",
        "--config": "/dapr-config/config.yaml",
    }
    for flag, value in expected.items():
        assert args[args.index(flag) + 1] == value
    assert "--enable-app-health-check" in args
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["DAPR_GRPC_PORT"] == "50001"
    assert "--app-max-concurrency" not in args  # gRPC: no limit


def test_an_http_app_channel_is_called_one_at_a_time(tmp_path: Path) -> None:
    """daprd's HTTP app channel can ack an event the app never got when it calls concurrently
    (docs/architecture.md): every daprd rendered for the HTTP app protocol gets max concurrency 1."""
    data = yaml.safe_load(CASES["container-mode"].read_text())
    data["spec"]["serving"].setdefault("annotations", {})["dapr.io/app-protocol"] = "http"
    path = tmp_path / "container-http.yaml"
    path.write_text(yaml.safe_dump(data))
    pod = by_kind(render_all(load(path)), "Deployment")["spec"]["template"]
    args = next(c for c in pod["spec"]["containers"] if c["name"] == "daprd")["args"]
    assert args[args.index("--app-protocol") + 1] == "http"
    assert args[args.index("--app-max-concurrency") + 1] == "1"
    annotated = render_all(load(CASES["user-override"]))
    annotations = by_kind(annotated, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dapr.io/app-max-concurrency"] == "1"
    grpc = render_all(load(CASES["sample-pubsub-consumer"]))
    assert (
        "dapr.io/app-max-concurrency"
        not in by_kind(grpc, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    )


def test_tracing_names_the_configuration() -> None:
    objects = render_all(load(CASES["tracing-on"]))
    annotations = by_kind(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dapr.io/config"] == "traced"
    config = by_kind(objects, "Configuration")
    assert config["metadata"]["name"] == "traced"
    assert config["spec"]["tracing"]["zipkin"]["endpointAddress"] == "http://zipkin:9411/api/v2/spans"


def test_the_users_template_and_annotations_win() -> None:
    objects = render_all(load(CASES["user-override"]))
    template = by_kind(objects, "Deployment")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["dapr.io/app-protocol"] == "http"
    assert annotations["dapr.io/app-port"] == "8081"  # the HTTP port: daprd calls the app over HTTP
    assert annotations["dapr.io/app-health-probe-interval"] == "10"
    assert annotations["example.com/owner"] == "team-a"
    assert template["metadata"]["labels"]["team"] == "a"
    pod = template["spec"]
    assert pod["serviceAccountName"] == "custom"
    assert [c["name"] for c in pod["containers"]] == ["function", "helper"]
    function = pod["containers"][0]
    assert function["imagePullPolicy"] == "Always"
    assert function["resources"]["limits"] == {"memory": "256Mi"}
    assert function["securityContext"]["readOnlyRootFilesystem"] is True  # ours, where they said nothing
    env = {e["name"]: e.get("value") for e in function["env"]}
    assert env["LOG_LEVEL"] == "info" and env["GREETING"] == "hi"
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]


def test_render_refuses_unresolved_references_with_the_models_message() -> None:
    # parse_function refuses this too; reconcile may hand render a Function built otherwise.
    serving = Serving(outputs=(Output(dapr=DaprOutput(name="nowhere")),))
    fn = Function(metadata=ObjectMeta(name="x"), spec=FunctionSpec(serving=serving))
    with pytest.raises(ContextError, match=r"spec\.serving\.outputs\[0\]\.dapr\.name"):
        render(fn)


# ---------------------------------------------------------------- funcd render


def test_cli_render_prints_the_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(CASES["sample-http-to-pubsub"])]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    # The Configuration carries the sample's tracing to its daprd.
    assert [d["kind"] for d in docs] == ["Component", "Configuration", "Deployment", "Service"]
    assert "ownerReferences" not in docs[0]["metadata"]  # no uid in a file: nothing to own by
    assert "namespace" not in docs[0]["metadata"]


def test_cli_render_refuses_an_invalid_function(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "function.yaml"
    bad.write_text(
        "apiVersion: funcd.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\n"
        "spec: {serving: {scaleOptions: {minReplicas: 3, maxReplicas: 1}}}\n"
    )
    assert main(["render", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "spec.serving.scaleOptions.minReplicas: expected at most maxReplicas (1), got 3" in err
    assert main(["render", str(tmp_path / "missing.yaml")]) == 2


def test_what_is_not_supported_is_noted() -> None:
    notes = render(load(CASES["openfunction-subscriber"])).notes
    assert [(n.condition, n.reason) for n in notes] == [("Rendered", "BuildNotSupported")]
    fn = parse_function(
        {
            "apiVersion": "funcd.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "unbuilt", "namespace": "default", "uid": UID},
            "spec": {
                "workloadRuntime": "WasmEdge",
                "serving": {"triggers": {"http": {"engine": "knative"}}, "scaleOptions": {"knative": {}}},
            },
        }
    )
    rendered = render(fn)
    assert kinds(list(rendered.objects)) == ["Service"]  # no image: nothing that runs
    assert [(n.condition, n.reason) for n in rendered.notes] == [
        ("Rendered", "NoImage"),
        ("Rendered", "RuntimeNotSupported"),
        ("Rendered", "HttpRouteNotSupported"),
        ("ScalerReady", "HttpScalingNotSupported"),
        ("ScalerReady", "NoScaler"),
    ]


def test_no_app_channel_without_inputs() -> None:
    """daprd given an app port waits for it to open; funcd opens none for a function without inputs."""
    objects = render_all(load(CASES["sample-http-to-pubsub"]))
    annotations = by_kind(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dapr.io/enabled"] == "true"
    assert annotations["dapr.io/app-id"] == "http-to-pubsub-default"
    assert not {"dapr.io/app-port", "dapr.io/app-protocol", "dapr.io/enable-app-health-check"} & set(
        annotations
    )
    consumer = render_all(load(CASES["sample-pubsub-consumer"]))
    annotations = by_kind(consumer, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dapr.io/app-port"] == "50051"
    assert annotations["dapr.io/app-protocol"] == "grpc"
    assert annotations["dapr.io/app-health-check-path"] == "/readyz"


def test_bulk_subscribe_settings_reach_the_functions_context() -> None:
    from functions_framework.model.bulk import BulkSubscribe, bulk_subscribe

    objects = render_all(load(CASES["sample-pubsub-bulk"]))
    env = {e["name"]: e.get("value") for e in by_kind(objects, "Deployment")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}  # fmt: skip
    ctx = parse_context(json.loads(env["FUNC_CONTEXT_V1BETA2"]))
    assert bulk_subscribe(ctx.inputs["orders-pubsub"].metadata) == BulkSubscribe(100, 500)
    data = yaml.safe_load(CASES["sample-pubsub-bulk"].read_text())
    data["spec"]["serving"]["triggers"]["dapr"][0]["metadata"]["maxBulkSubCount"] = "many"
    with pytest.raises(ContextError) as info:
        parse_function(data)
    assert info.value.problems == [
        "spec.serving.triggers.dapr[0].metadata.maxBulkSubCount: expected a whole number 1-2147483647 "
        '(as a string), got "many"'
    ]
