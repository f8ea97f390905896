"""Functions in real pods: sample images built with ``funcd build`` and imported into the e2e node, a
restricted namespace, and the samples' own ``function.yaml`` wired to the session Redis.

Fixtures (registered in conftest):
    pod_images        session  PodImages: .daprd and .function(sample, tag) -> the stored image name
    restricted_ns     function a fresh namespace labelled pod-security.kubernetes.io/enforce=restricted
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.stack_kube import Kubectl
from tests.e2e.stack_node import Node
from tests.e2e.stack_procs import StackError, wait_until
from tests.e2e.stack_redis import RedisServer

ROOT = Path(__file__).resolve().parents[2]
DAPRD_IMAGE = "funcd.local/daprd:1.18.2"
"""The name the e2e node stores the slim daprd image under; the controller fixture renders it."""
COOLDOWN = 5
"""KEDA's cooldownPeriod for pubsub-consumer in the e2e tests (seconds), with a 1 s polling interval."""


@dataclass
class PodImages:
    """Images built here and imported into the node, by sample and tag."""

    node: Node
    workdir: Path
    daprd: str = ""
    built: dict[tuple[str, str], str] = field(default_factory=dict)

    def function(self, sample: str, tag: str = "1") -> str:
        """``samples/<sample>`` built with ``funcd build`` as ``funcd.local/<sample>:<tag>``, imported."""
        key = (sample, tag)
        if key not in self.built:
            from funcd_controller.image import build_function_image

            from tests.image_support import runtime_image_archive

            name = f"funcd.local/{sample}:{tag}"
            out = self.workdir / f"{sample}-{tag}.oci.tar"
            build_function_image(ROOT / "samples" / sample, name, runtime_image_archive(), output=out)
            self.built[key] = self.node.import_image(out, name)
        return self.built[key]


@pytest.fixture(scope="session")
def pod_images(node: Node, tmp_path_factory: Any) -> PodImages:
    from tests.image_support import daprd_image_archive

    images = PodImages(node, tmp_path_factory.mktemp("pod-images"))
    images.daprd = node.import_image(daprd_image_archive(), DAPRD_IMAGE)
    return images


@pytest.fixture
def restricted_ns(kubectl: Kubectl) -> Iterator[str]:
    name = create_restricted_namespace(kubectl, f"pods-{uuid.uuid4().hex[:8]}")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def create_restricted_namespace(kubectl: Kubectl, name: str) -> str:
    """A namespace labelled pod-security.kubernetes.io/enforce=restricted; returns its name."""
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    return name


def sample_function(sample: str, image: str, redis: str = "") -> dict[str, Any]:
    """The sample's own ``function.yaml`` with ``image`` and, for its Redis components, ``redis``
    (``host:port`` as pods reach it)."""
    fn: dict[str, Any] = yaml.safe_load((ROOT / "samples" / sample / "function.yaml").read_text())
    fn = copy.deepcopy(fn)
    fn["spec"]["image"] = image
    serving = fn["spec"].setdefault("serving", {})
    for section in ("pubsub", "bindings"):
        for spec in (serving.get(section) or {}).values():
            _set_redis(spec, redis)
    for state in (serving.get("states") or {}).values():
        _set_redis(state.get("spec") or {}, redis)
    return fn


def consumer_function(
    images: PodImages,
    redis: str,
    tok: str,
    tag: str = "1",
    scale: bool = True,
    *,
    min_replicas: int = 0,
    polling_interval: int = 1,
    cooldown: int = COOLDOWN,
) -> dict[str, Any]:
    """pubsub-consumer on its own topics (``orders-<tok>``, ``processed-<tok>``), its daprd in the pod
    (``dapr.mode: container``); when ``scale``, KEDA quick to act (1 replica at most)."""
    fn = sample_function("pubsub-consumer", images.function("pubsub-consumer", tag), redis)
    serving = fn["spec"]["serving"]
    serving["dapr"] = {"mode": "container"}
    trigger = serving["triggers"]["dapr"][0]
    trigger["topic"], trigger["deadLetterTopic"] = f"orders-{tok}", f"orders-dead-{tok}"
    serving["outputs"][0]["dapr"]["topic"] = f"processed-{tok}"
    # An event a stopped pod read and did not acknowledge goes to another consumer after 10 s.
    serving["pubsub"]["orders-pubsub"]["metadata"] += [
        {"name": "processingTimeout", "value": "10s"},
        {"name": "redeliverInterval", "value": "2s"},
    ]
    serving["states"]["totals"]["spec"]["metadata"].append({"name": "keyPrefix", "value": tok})
    if scale:
        serving["scaleOptions"] = {
            "minReplicas": min_replicas,
            "maxReplicas": 1,
            "keda": {"scaledObject": {"pollingInterval": polling_interval, "cooldownPeriod": cooldown}},
        }
    else:
        serving.pop("scaleOptions", None)
    return fn


def delete_consumer_streams(redis: RedisServer, tok: str) -> None:
    """Remove the streams ``consumer_function(..., tok)`` uses from the shared Redis."""
    for stream in (f"orders-{tok}", f"processed-{tok}", f"orders-dead-{tok}"):
        redis.command("DEL", stream)


def processed_numbers(redis: RedisServer, tok: str) -> set[int]:
    """The order numbers pubsub-consumer published to ``processed-<tok>``."""
    return {
        int(e["data"]["n"]) for e in stream_events(redis, f"processed-{tok}") if "n" in (e.get("data") or {})
    }


def deployment_replicas(kubectl: Kubectl, ns: str, name: str) -> int:
    """The Deployment's ``spec.replicas`` (what KEDA set); 1 when none is set or there is no Deployment
    yet (so that a wait for 0 means scaled to zero)."""
    proc = kubectl("get", "deployment", name, "-n", ns, "-o", "json", check=False)
    spec = json.loads(proc.stdout)["spec"] if proc.returncode == 0 else {}
    return int(spec.get("replicas", 1))


def _set_redis(spec: dict[str, Any], redis: str) -> None:
    for item in spec.get("metadata") or []:
        if item.get("name") == "redisHost":
            item["value"] = redis


def pods(kubectl: Kubectl, ns: str, instance: str) -> list[dict[str, Any]]:
    listed = kubectl.json("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={instance}")
    return list(listed.get("items") or [])


def pod_is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
    return bool(ready and status.get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"))


def endpoints(kubectl: Kubectl, ns: str, service: str) -> list[str]:
    """``ip:port`` of the Service's ready endpoints, from its EndpointSlices."""
    slices = kubectl.json("get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={service}")
    out = []
    for s in slices.get("items") or []:
        port = (s.get("ports") or [{}])[0].get("port")
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") and port:
                out.extend(f"{ip}:{port}" for ip in ep.get("addresses") or [])
    return out


def stream_events(redis: RedisServer, stream: str) -> list[dict[str, Any]]:
    """The CloudEvents on a Dapr Redis stream (XRANGE), oldest first."""
    out = []
    for _id, fields in redis.command("XRANGE", stream, "-", "+") or []:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        raw = values.get(b"data") or values.get("data")
        if raw is not None:
            out.append(json.loads(raw))
    return out


def xadd_order(redis: RedisServer, stream: str, n: int, customer: str) -> None:
    """An order CloudEvent on the stream, as another publisher through Dapr would put it."""
    ce = {
        "specversion": "1.0",
        "id": f"order-{n}",
        "source": "e2e",
        "type": "com.dapr.event.sent",
        "datacontenttype": "application/json",
        "topic": stream,
        "pubsubname": "orders-pubsub",
        "data": {"n": n, "customer": customer, "amount": 1},
    }
    redis.command("XADD", stream, "*", "data", json.dumps(ce))


def watch_ready(kubectl: Kubectl, name: str, ns: str, procs: list[Any], timeout: float) -> list[str]:
    """Poll the Function's Ready condition and its pods until Ready=True; returns what was seen, and
    fails if Ready was ever True while no pod of the Function was Ready."""
    from tests.e2e.stack_funcd_controller import _ready  # it imports this module

    seen: list[str] = []

    def step() -> bool:
        ready = _ready(kubectl, name, ns)  # the Function first: a pod Ready now was Ready then too
        any_pod_ready = any(pod_is_ready(p) for p in pods(kubectl, ns, name))
        if ready is None:
            return False
        if not seen or seen[-1] != f"{ready['status']}/{ready['reason']}":
            seen.append(f"{ready['status']}/{ready['reason']}")
        if ready["status"] == "True":
            assert any_pod_ready, f"Ready=True while no pod of {name} is Ready: {ready}"
            return True
        return False

    try:
        wait_until(step, f"Function {ns}/{name} to be Ready", timeout, procs, interval=0.3)
    except StackError as exc:
        raise StackError(f"{describe(kubectl, ns, name)}\n{exc}") from None
    return seen


def describe(kubectl: Kubectl, ns: str, name: str) -> str:
    """The Function's status, its pods' container states and the namespace's events, for a failure."""
    from tests.e2e.stack_funcd_controller import _get  # it imports this module

    fn = _get(kubectl, "fn", name, ns) or {}
    lines = [f"Function {ns}/{name} status: {json.dumps(fn.get('status'))}"]
    for pod in pods(kubectl, ns, name):
        for c in (pod.get("status") or {}).get("containerStatuses") or []:
            lines.append(
                f"pod {pod['metadata']['name']} {c['name']}: ready={c.get('ready')} {c.get('state')}"
            )
            logs = kubectl(
                "logs", "-n", ns, pod["metadata"]["name"], "-c", c["name"], "--tail=15", check=False
            )
            lines.extend(f"    {line}" for line in logs.stdout.splitlines())
    events = kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False).stdout
    lines.extend(events.splitlines()[-15:])
    return "\n".join(lines)


def publisher_function(images: PodImages, redis: str, tok: str) -> dict[str, Any]:
    """http-to-pubsub publishing to ``orders-<tok>`` (what ``consumer_function(tok)`` reads), its daprd
    in the pod."""
    fn = sample_function("http-to-pubsub", images.function("http-to-pubsub"), redis)
    serving = fn["spec"]["serving"]
    serving["dapr"] = {"mode": "container"}
    serving["outputs"][0]["dapr"]["topic"] = f"orders-{tok}"
    return fn


def deploy_pipeline(
    kubectl: Kubectl, ns: str, consumer: dict[str, Any], publisher: dict[str, Any], procs: list[Any]
) -> str:
    """Apply pubsub-consumer and http-to-pubsub, wait until both are Ready; the publisher's address."""
    kubectl.apply(consumer, "-n", ns)
    kubectl.apply(publisher, "-n", ns)
    watch_ready(kubectl, "pubsub-consumer", ns, procs, 120)
    watch_ready(kubectl, "http-to-pubsub", ns, procs, 120)
    address: str = wait_until(
        lambda: endpoints(kubectl, ns, "http-to-pubsub"), "a ready endpoint of http-to-pubsub", 30
    )[0]
    return address
