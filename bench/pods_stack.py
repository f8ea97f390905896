"""The e2e stack for bench/pods_bench.py, started with the e2e tests' own code (tests/e2e/stack_*.py),
and plain-GET reads of what runs on it."""

from __future__ import annotations

import contextlib
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common


@dataclass(frozen=True)
class Cluster:
    """The running stack a round works against."""

    kubectl: Any
    """Admin kubectl (tests/e2e/stack_kube.Kubectl)."""
    api: common.Api
    """Plain GETs on the API server, for polling."""
    redis: Any
    """The Redis server (tests/e2e/stack_redis.RedisServer)."""
    node_redis: str
    """``host_ip:port``: Redis as pods reach it."""
    images: Any
    """tests/e2e/stack_funcd_pods.PodImages: samples built and imported into the node."""
    procs: list[Any]
    """Stack processes: a wait fails at once if one exits."""
    timeout: float
    """Seconds to wait for each step."""


def get(api: common.Api, path: str) -> Any:
    """GET ``path``; None when it is not found."""
    try:
        return api.get(path)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def pods(api: common.Api, ns: str, name: str) -> list[dict[str, Any]]:
    """The pods of the Function (or rendered objects) ``name`` in ``ns``."""
    found = get(api, f"/api/v1/namespaces/{ns}/pods?labelSelector=app.kubernetes.io/instance%3D{name}")
    return list((found or {}).get("items") or [])


def ready_endpoint(api: common.Api, ns: str, service: str) -> str:
    """The first ready ``ip:port`` of the Service's EndpointSlices, or ''."""
    path = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
    for s in (get(api, f"{path}?labelSelector=kubernetes.io/service-name%3D{service}") or {}).get(
        "items"
    ) or []:
        port = (s.get("ports") or [{}])[0].get("port")
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") and port and ep.get("addresses"):
                return f"{ep['addresses'][0]}:{port}"
    return ""


def start_cluster(es: contextlib.ExitStack, workdir: Path, timeout: float) -> tuple[Cluster, dict[str, Any]]:
    """The e2e stack, every part's stop registered on ``es``."""
    from tests.e2e.conftest import node_images, require_binary, require_data
    from tests.e2e.stack_control_plane import start_control_plane
    from tests.e2e.stack_funcd_controller import install_dapr_crds, install_funcd_crd, start_funcd_controller
    from tests.e2e.stack_funcd_pods import DAPRD_IMAGE, PodImages
    from tests.e2e.stack_kube import Kubectl, start_keda, start_kube_apiserver
    from tests.e2e.stack_node import start_node
    from tests.e2e.stack_redis import start_redis
    from tests.image_support import daprd_image_archive

    _stack = common.testbin()
    redis = start_redis(require_binary("redis-server"), workdir / "redis")
    es.callback(redis.stop)
    version = _stack.version("kube-apiserver")
    server = start_kube_apiserver(
        require_binary("etcd"), require_binary("kube-apiserver"), version, workdir / "kube"
    )
    es.callback(server.stop)
    kubectl = Kubectl(require_binary("kubectl"), server.kubeconfig)
    plane = start_control_plane(
        require_binary("kube-controller-manager"),
        require_binary("kube-scheduler"),
        _stack.version("kube-control-plane"),
        server,
        workdir / "control-plane",
    )
    es.callback(plane.stop)
    common.log("pods: starting the node")
    node = start_node(require_binary("kubelet"), server, kubectl, workdir / "node", node_images())
    es.callback(node.stop)
    keda = start_keda(
        require_binary("keda-operator"),
        _stack.version("keda"),
        require_data("keda", "crds"),
        server,
        kubectl,
        workdir / "keda",
    )
    es.callback(keda.stop)
    install_funcd_crd(kubectl)
    install_dapr_crds(kubectl, require_data("daprd", "crds"))
    controller = start_funcd_controller(
        kubectl,
        server,
        workdir / "controller",
        "--daprd-image",
        DAPRD_IMAGE,
        funcd=[str(common.ROOT / ".venv" / "bin" / "funcd")],
    )
    es.callback(controller.stop)
    common.log("pods: building the samples with funcd build and importing them into the node")
    t0 = time.perf_counter()
    images = PodImages(node, workdir / "images")
    (workdir / "images").mkdir()
    images.daprd = node.import_image(daprd_image_archive(), DAPRD_IMAGE)
    for sample in ("hello-http", "pubsub-consumer"):
        images.function(sample)
    facts = {
        "versions": {
            "kubernetes": version,
            "keda": _stack.version("keda"),
            "dapr": _stack.version("daprd"),
            "redis": redis.version,
        },
        "images_s": round(time.perf_counter() - t0, 1),
        "images": {"daprd": images.daprd, **{k[0]: v for k, v in images.built.items()}},
        "node": {"bridge": node.bridge, "pod_subnet": node.pod_subnet},
        "controller_command": f"funcd controller --kubeconfig SA_KUBECONFIG --daprd-image {DAPRD_IMAGE}",
    }
    procs = [*server.group.procs, *plane.group.procs, *node.group.procs, keda.proc, controller, redis.proc]
    api = common.Api(server.url, server.token, server.ca_file)
    return Cluster(kubectl, api, redis, node.expose(redis.port), images, procs, timeout), facts
