"""Functions end to end in real pods on the e2e node, in a namespace that enforces the restricted Pod
Security Standard.

The samples are built with ``funcd build`` and imported into the node's containerd; their own
``function.yaml`` is applied with the image named and, for pubsub-consumer, ``dapr.mode: container``
(the daprd container the controller renders, from the locally built daprd image) and the session
Redis as the pods reach it. What is proven:
- hello-http answers through its Service's endpoint (the pod IP) from the host, and the Function turns
  Ready only once a pod is Ready;
- pubsub-consumer handles events published to its Redis stream: its output lands on the next topic and
  its totals in state; KEDA scales it 0 -> 1 real pod on the stream's lag and back to 0 after the
  cooldown, with no event lost;
- changing the image of a consuming Function while events flow rolls the pod over and loses none.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.e2e.stack_funcd_controller import _get
from tests.e2e.stack_funcd_pods import (
    COOLDOWN,
    PodImages,
    consumer_function,
    delete_consumer_streams,
    deployment_replicas,
    endpoints,
    pod_is_ready,
    pods,
    processed_numbers,
    sample_function,
    stream_events,
    watch_ready,
    xadd_order,
)
from tests.e2e.stack_kube import KedaOperator, KubeAPIServer, Kubectl
from tests.e2e.stack_node import Node
from tests.e2e.stack_procs import Proc, wait_until
from tests.e2e.stack_redis import RedisServer
from tests.support import run_cli

pytestmark = pytest.mark.e2e


def test_http_sample_answers_from_its_pod_and_is_ready_only_then(
    controller: Proc, node: Node, pod_images: PodImages, kubectl: Kubectl, restricted_ns: str
) -> None:
    ns = restricted_ns
    fn = sample_function("hello-http", pod_images.function("hello-http"))
    kubectl.apply(fn, "-n", ns)
    seen = watch_ready(kubectl, "hello-http", ns, [controller, *node.group.procs], 90)
    assert seen[0] == "False/WorkloadUnavailable" and seen[-1] == "True/Available", seen

    addresses = wait_until(
        lambda: endpoints(kubectl, ns, "hello-http"), "a ready endpoint of Service hello-http", 30
    )
    r = requests.post(f"http://{addresses[0]}/", json={"name": "pods"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Hello, pods!"}
    status = (_get(kubectl, "fn", "hello-http", ns) or {})["status"]
    assert status["address"] == f"http://hello-http.{ns}.svc.cluster.local:80"
    assert status["replicas"] == 1
    table = kubectl("get", "fn", "hello-http", "-n", ns).stdout
    assert "True" in table.splitlines()[1] and "Available" in table, table


def _scaled_to_zero(kubectl: Kubectl, ns: str) -> bool:
    """pubsub-consumer's Deployment is at 0 replicas and no pod of it is left."""
    return deployment_replicas(kubectl, ns, "pubsub-consumer") == 0 and not pods(
        kubectl, ns, "pubsub-consumer"
    )


def _condition(kubectl: Kubectl, ns: str, kind: str) -> dict[str, Any]:
    status = (_get(kubectl, "fn", "pubsub-consumer", ns) or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def test_pubsub_consumer_scales_from_zero_handles_every_event_and_scales_back(
    controller: Proc,
    keda_operator: KedaOperator,
    node: Node,
    node_redis: str,
    redis_server: RedisServer,
    pod_images: PodImages,
    kubectl: Kubectl,
    restricted_ns: str,
) -> None:
    ns, tok = restricted_ns, uuid.uuid4().hex[:8]
    procs = [controller, keda_operator.proc, *node.group.procs]
    try:
        kubectl.apply(consumer_function(pod_images, node_redis, tok), "-n", ns)
        # No lag yet: KEDA sets the Deployment to minReplicaCount 0 at once.
        wait_until(
            lambda: _scaled_to_zero(kubectl, ns),
            "KEDA to scale the idle Function to zero",
            60,
            procs,
        )
        wait_until(
            lambda: _condition(kubectl, ns, "WorkloadAvailable").get("reason") == "ScaledToZero",
            "the Function's status to say it is scaled to zero",
            30,
            procs,
        )
        count = 20
        for n in range(count):
            xadd_order(redis_server, f"orders-{tok}", n, "ada")
        # No consumer group exists yet: KEDA counts the whole stream as lag.
        wait_until(
            lambda: deployment_replicas(kubectl, ns, "pubsub-consumer") >= 1,
            "KEDA to scale 0 -> 1 on the lag",
            60,
            procs,
        )
        seen = watch_ready(kubectl, "pubsub-consumer", ns, procs, 120)
        assert seen[-1] == "True/Available", seen
        wait_until(
            lambda: len(processed_numbers(redis_server, tok)) == count,
            f"all {count} orders handled in the new pod and published to processed-{tok}",
            120,
            procs,
        )
        assert processed_numbers(redis_server, tok) == set(range(count))
        totals = redis_server.command("KEYS", f"{tok}||*")
        assert totals, "expected the handler's totals in the Redis state store"
        wait_until(
            lambda: _scaled_to_zero(kubectl, ns),
            "KEDA to scale back to zero after the cooldown",
            COOLDOWN + 60,
            procs,
        )
        pending = redis_server.command("XPENDING", f"orders-{tok}", f"pubsub-consumer-{ns}")
        assert int(pending[0]) == 0, f"events left unacknowledged on the way down: {pending}"
        assert not stream_events(redis_server, f"orders-dead-{tok}"), "nothing should be dead-lettered"
    finally:
        delete_consumer_streams(redis_server, tok)


def test_changing_the_image_while_events_flow_loses_none(
    controller: Proc,
    node: Node,
    node_redis: str,
    redis_server: RedisServer,
    pod_images: PodImages,
    kubectl: Kubectl,
    restricted_ns: str,
) -> None:
    ns, tok = restricted_ns, uuid.uuid4().hex[:8]
    procs = [controller, *node.group.procs]
    count = 120
    try:
        kubectl.apply(consumer_function(pod_images, node_redis, tok, scale=False), "-n", ns)
        watch_ready(kubectl, "pubsub-consumer", ns, procs, 120)
        uid = (_get(kubectl, "deployment", "pubsub-consumer", ns) or {})["metadata"]["uid"]
        first_pods = {p["metadata"]["name"] for p in pods(kubectl, ns, "pubsub-consumer")}
        published = threading.Event()

        def publish() -> None:
            for n in range(count):
                xadd_order(redis_server, f"orders-{tok}", n, "grace")
                time.sleep(0.05)  # a steady flow across the rollover, not a synchronisation
            published.set()

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        wait_until(
            lambda: len(processed_numbers(redis_server, tok)) >= 10, "the first orders handled", 60, procs
        )
        kubectl.apply(consumer_function(pod_images, node_redis, tok, tag="2", scale=False), "-n", ns)

        def rolled() -> bool:
            current = pods(kubectl, ns, "pubsub-consumer")
            names = {p["metadata"]["name"] for p in current}
            return bool(names) and not names & first_pods and all(pod_is_ready(p) for p in current)

        wait_until(rolled, "the rollover to a new pod on the new image", 120, procs)
        publisher.join(timeout=60)
        assert published.is_set()
        wait_until(
            lambda: len(processed_numbers(redis_server, tok)) == count,
            f"all {count} orders handled across the rollover",
            120,
            procs,
        )
        assert processed_numbers(redis_server, tok) == set(range(count))
        deployment = _get(kubectl, "deployment", "pubsub-consumer", ns) or {}
        assert deployment["metadata"]["uid"] == uid, "the Deployment was recreated, not updated"
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == pod_images.function("pubsub-consumer", "2")
    finally:
        delete_consumer_streams(redis_server, tok)


def test_funcd_deploy_waits_until_a_real_pod_is_ready_and_exits_0(
    controller: Proc,
    node: Node,
    pod_images: PodImages,
    kube_apiserver: KubeAPIServer,
    kubectl: Kubectl,
    restricted_ns: str,
    tmp_path: Path,
) -> None:
    ns = restricted_ns
    path = tmp_path / "function.yaml"
    path.write_text(yaml.safe_dump(sample_function("json-echo", pod_images.function("json-echo"))))
    result = run_cli(
        "deploy", str(path), "--kubeconfig", str(kube_apiserver.kubeconfig),
        "--namespace", ns, "--timeout", "120", timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"applied Function {ns}/json-echo (generation 1)" in result.stdout, result.stdout
    assert "Ready=True Available" in result.stdout, result.stdout
    assert any(pod_is_ready(p) for p in pods(kubectl, ns, "json-echo"))
