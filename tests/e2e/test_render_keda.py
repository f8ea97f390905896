"""The ScaledObject render derives for a Redis pub/sub input drives a real KEDA operator: the
Function's Deployment goes to zero with no lag, to one when the Dapr consumer group lags on the
topic's stream, and back to zero once the entries are read. No kubelet runs: KEDA writes the
Deployment's scale subresource, which is what we watch."""

from __future__ import annotations

from typing import Any

import yaml
from funcd_controller.render import render_all

from functions_framework.model import parse_function
from tests.e2e.stack_kube import KedaOperator, Kubectl
from tests.e2e.stack_procs import wait_until
from tests.e2e.stack_redis import RedisServer
from tests.test_render import CASES


def _replicas(kubectl: Kubectl, namespace: str) -> int:
    deployment = kubectl.json("get", "deployment", "pubsub-consumer", "-n", namespace)
    return int(deployment["spec"].get("replicas", 1))


def _rendered(namespace: str, redis: str) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(CASES["sample-pubsub-consumer"].read_text())
    # No uid, so no ownerReference: with the controller-manager running, the garbage collector would
    # delete objects whose owning Function does not exist.
    data["metadata"].update(namespace=namespace)
    for component in data["spec"]["serving"]["pubsub"].values():
        component["metadata"] = [{"name": "redisHost", "value": redis}]
    data["spec"]["serving"]["scaleOptions"]["keda"]["scaledObject"].update(
        pollingInterval=1, cooldownPeriod=2
    )
    return {o["kind"]: o for o in render_all(parse_function(data))}


def test_a_derived_redis_streams_trigger_scales_from_zero_and_back(
    keda_operator: KedaOperator, kubectl: Kubectl, k8s_namespace: str, redis_server: RedisServer
) -> None:
    ns = k8s_namespace
    objects = _rendered(ns, redis_server.address)
    trigger = objects["ScaledObject"]["spec"]["triggers"][0]["metadata"]
    group = f"pubsub-consumer-{ns}"
    assert trigger["consumerGroup"] == group  # what daprd names its consumer group: the app id
    # The stream and the group as daprd creates them when it subscribes.
    redis_server.command("XGROUP", "CREATE", "orders", group, "$", "MKSTREAM")
    try:
        kubectl.apply([objects["Deployment"], objects["ScaledObject"]], server_side=True)

        wait_until(lambda: _replicas(kubectl, ns) == 0, "no lag: scaled to zero", 90, [keda_operator.proc])
        redis_server.command("XADD", "orders", "*", "data", '{"customer": "ada", "amount": 3}')
        wait_until(lambda: _replicas(kubectl, ns) == 1, "lag: scaled 0 -> 1", 60, [keda_operator.proc])

        redis_server.command("XREADGROUP", "GROUP", group, "worker", "COUNT", "10", "STREAMS", "orders", ">")
        wait_until(lambda: _replicas(kubectl, ns) == 0, "read: scaled 1 -> 0", 90, [keda_operator.proc])
    finally:
        # The session's Redis is shared: later tests subscribe to a topic "orders" through daprd and
        # must not receive this test's raw entries.
        redis_server.command("DEL", "orders")
