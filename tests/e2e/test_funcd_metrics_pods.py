"""Metrics in real pods: http-to-pubsub and the async-only pubsub-consumer, with ``serving.metrics``,
serve Prometheus metrics on their pods' ``http`` port at the path their ``prometheus.io/*`` annotations
name, and count the calls they handled.

The metrics plugin's behaviour is tested in tests/test_metrics_*.py and tests/e2e (Prometheus); this
proves the image carries it and the rendered pod (read-only root filesystem, port and annotations)
serves it, for an async-only function too.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from tests.e2e.stack_funcd_pods import (
    PodImages,
    consumer_function,
    delete_consumer_streams,
    deploy_pipeline,
    describe,
    pod_is_ready,
    pods,
    processed_numbers,
    publisher_function,
)
from tests.e2e.stack_kube import Kubectl
from tests.e2e.stack_node import Node
from tests.e2e.stack_procs import Proc, wait_until
from tests.e2e.stack_redis import RedisServer

pytestmark = pytest.mark.e2e


def counted(text: str, function: str) -> float:
    """The sum of ``funcd_invocations_total`` of ``function`` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("funcd_invocations_total{") and f'function="{function}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(pod: dict[str, Any]) -> str:
    """GET the pod's metrics where its annotations say they are."""
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    url = f"http://{pod['status']['podIP']}:{annotations['prometheus.io/port']}{annotations['prometheus.io/path']}"
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return r.text


def test_http_and_async_only_functions_serve_their_metrics_from_their_pods(
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
    consumer = consumer_function(pod_images, node_redis, tok, scale=False)
    consumer["spec"]["serving"]["metrics"] = {"enabled": True}
    publisher = publisher_function(pod_images, node_redis, tok)
    publisher["spec"]["serving"]["metrics"] = {"enabled": True, "path": "/internal/metrics"}
    try:
        address = deploy_pipeline(kubectl, ns, consumer, publisher, procs)
        for n in range(3):
            r = requests.post(f"http://{address}/", json={"n": n, "customer": "ada", "amount": 1}, timeout=10)
            assert r.status_code == 202, r.text
        wait_until(
            lambda: processed_numbers(redis_server, tok) == {0, 1, 2},
            "pubsub-consumer to handle 3 orders",
            60,
            procs,
        )
        [producer_pod] = [p for p in pods(kubectl, ns, "http-to-pubsub") if pod_is_ready(p)]
        [consumer_pod] = [p for p in pods(kubectl, ns, "pubsub-consumer") if pod_is_ready(p)]
        assert producer_pod["metadata"]["annotations"]["prometheus.io/path"] == "/internal/metrics"
        # A scrape flushes the worker that answers it; the other worker's counts follow within its
        # flush interval (0.5 s), so poll (bounded) until both pods show all 3 calls, then check exactly.
        for pod, function in ((producer_pod, "http-to-pubsub"), (consumer_pod, "pubsub-consumer")):
            wait_until(
                lambda p=pod, f=function: counted(scrape(p), f) >= 3, f"{function}: 3 calls", 10, procs
            )
            assert counted(scrape(pod), function) == 3
    except BaseException:
        print(describe(kubectl, ns, "http-to-pubsub"))
        print(describe(kubectl, ns, "pubsub-consumer"))
        raise
    finally:
        delete_consumer_streams(redis_server, tok)
