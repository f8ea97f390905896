"""Fixtures for the real test stack: Redis, daprd, etcd + kube-apiserver + kubectl, KEDA, Jaeger,
and a node (containerd + kubelet) that runs real pods.

Every test under tests/e2e/ is marked ``e2e`` (``make test-fast`` leaves them out). Binaries come
from the testbin cache (``make testbin``); a missing one fails the test and says how to build it.
When a test fails, the tail of the log of every stack process it used is added to its report.

Fixtures (scope, what they give):

    redis_server    session   RedisServer: .port .address .url .pid .log_path .command(*args)
    daprd           function  DaprdFactory: daprd(app_port, resources=..., config=..., app_protocol=...)
                              -> Sidecar: .http_port .grpc_port .http_url .grpc_address .pid .log_path
    kube_apiserver  session   KubeAPIServer: .url .kubeconfig .token .ca_file .version .pid .log_path
    control_plane   session   ControlPlane: kube-controller-manager + kube-scheduler
    node            session   Node: containerd + kubelet joined to the cluster (needs control_plane):
                              .name .host_ip .bridge .pod_subnet .pause_image .probe_image
                              .import_image(archive, name) .expose(port) -> "host_ip:port" .ctr(*args)
    node_redis      session   "host_ip:port": the session Redis as pods reach it
    pod_images      session   PodImages: samples built with funcd build and the daprd image, imported
    restricted_ns   function  a fresh namespace enforcing the restricted Pod Security Standard
    kubectl         session   Kubectl: kubectl(*args) -> CompletedProcess; .json(*args); .apply(obj)
    k8s_namespace   function  a fresh namespace name, deleted afterwards
    keda_operator   session   KedaOperator: .namespace .crds_dir .version .pid .log_path
    keda_metrics_adapter  session  KedaMetricsAdapter (needs node, keda_operator): .address .netns
                              .pid .log_path; in a netns on the node's bridge; external.metrics.k8s.io
                              is Available, the HPA scales 1 -> N
    jaeger          session   Jaeger: .otlp_http_url .otlp_grpc_endpoint .query_url .pid .log_path
    prometheus      function  PrometheusFactory: prometheus(targets, metrics_path=..., scrape_interval=...)
                              -> Prometheus: .url .query(promql, at) .value(promql, at) .wait_target_up()
    crds            session   {"dapr": Path, "keda": Path}: upstream CRD directories at the pinned versions
    testbin         session   the testbin/stack.py module (versions, binary paths)
    funcd_crd, dapr_crds, controller   module   see stack_funcd_controller.py
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.stack_control_plane import ControlPlane, start_control_plane
from tests.e2e.stack_dapr import DaprdFactory
from tests.e2e.stack_funcd_controller import controller, dapr_crds, funcd_crd  # noqa: F401 (fixtures)
from tests.e2e.stack_funcd_pods import pod_images, restricted_ns  # noqa: F401 (fixtures)
from tests.e2e.stack_jaeger import Jaeger, start_jaeger
from tests.e2e.stack_keda_adapter import KedaMetricsAdapter, start_keda_adapter
from tests.e2e.stack_kube import KedaOperator, KubeAPIServer, Kubectl, start_keda, start_kube_apiserver
from tests.e2e.stack_node import PAUSE_IMAGE, PROBE_IMAGE, Node, start_node
from tests.e2e.stack_prometheus import prometheus  # noqa: F401 (fixture)
from tests.e2e.stack_redis import RedisServer, start_redis
from tests.support import testbin_stack

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]


_stack = testbin_stack()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed or E2E_DIR not in Path(str(item.path)).resolve().parents:
        return
    for value in getattr(item, "funcargs", {}).values():
        sections = getattr(value, "log_sections", None)
        if callable(sections):
            for title, text in sections():
                report.sections.append((title, text))


def require_binary(name: str) -> Path:
    """The cached path of a stack binary; fails the test (never skips) if it is not built."""
    try:
        return Path(_stack.binary(name))
    except _stack.MissingBinary as exc:
        problem = str(exc)
    pytest.fail(
        f"{problem}\nThe end-to-end tests need the pinned test stack: run `make testbin`.", pytrace=False
    )


def require_image(recipe: str, archive: str) -> Path:
    """An OCI image archive the testbin build packed (e.g. the pause image); fails if not built."""
    try:
        return Path(_stack.image_archive(recipe, archive))
    except _stack.MissingBinary as exc:
        problem = str(exc)
    pytest.fail(
        f"{problem}\nThe end-to-end tests need the pinned test stack: run `make testbin`.", pytrace=False
    )


def node_images() -> dict[str, Path]:
    """The images every e2e node imports at start: the sandbox (pause) and the probe test image."""
    for name in ("containerd", "ctr", "runc", "nft", "ip", "umoci"):
        require_binary(name)
    return {
        PAUSE_IMAGE: require_image("pause", "pause.oci.tar"),
        PROBE_IMAGE: require_image("pause", "probe.oci.tar"),
    }


def require_data(recipe: str, subdir: str) -> Path:
    """A data directory the testbin build copied into the cache (e.g. CRDs); fails if not built."""
    try:
        return Path(_stack.data_dir(recipe, subdir))
    except _stack.MissingBinary as exc:
        problem = str(exc)
    pytest.fail(
        f"{problem}\nThe end-to-end tests need the pinned test stack: run `make testbin`.", pytrace=False
    )


@pytest.fixture(scope="session")
def testbin() -> ModuleType:
    return _stack


@pytest.fixture(scope="session")
def crds() -> dict[str, Path]:
    """Directories of upstream CRD manifests at the pinned versions: {"dapr": ..., "keda": ...}."""
    return {"dapr": require_data("daprd", "crds"), "keda": require_data("keda", "crds")}


@pytest.fixture(scope="session")
def stack_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def redis_server(stack_workdir: Path) -> Iterator[RedisServer]:
    server = start_redis(require_binary("redis-server"), stack_workdir / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _daprd_nr_dir(stack_workdir: Path) -> Path:
    path = stack_workdir / "dapr-name-resolution"
    path.mkdir()
    return path


@pytest.fixture
def daprd(stack_workdir: Path, _daprd_nr_dir: Path) -> Iterator[DaprdFactory]:
    factory = DaprdFactory(
        require_binary("daprd"), _stack.version("daprd"), stack_workdir / "daprd", _daprd_nr_dir
    )
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def kube_apiserver(stack_workdir: Path) -> Iterator[KubeAPIServer]:
    etcd, apiserver = require_binary("etcd"), require_binary("kube-apiserver")
    server = start_kube_apiserver(etcd, apiserver, _stack.version("kube-apiserver"), stack_workdir / "kube")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kubectl(kube_apiserver: KubeAPIServer) -> Kubectl:
    return Kubectl(require_binary("kubectl"), kube_apiserver.kubeconfig)


@pytest.fixture(scope="session")
def control_plane(kube_apiserver: KubeAPIServer, stack_workdir: Path) -> Iterator[ControlPlane]:
    """kube-controller-manager and kube-scheduler against the test apiserver (pods run on ``node``)."""
    plane = start_control_plane(
        require_binary("kube-controller-manager"),
        require_binary("kube-scheduler"),
        _stack.version("kube-control-plane"),
        kube_apiserver,
        stack_workdir / "control-plane",
    )
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def node(
    control_plane: ControlPlane, kube_apiserver: KubeAPIServer, kubectl: Kubectl, stack_workdir: Path
) -> Iterator[Node]:
    """containerd + kubelet on bridge funcd0 (10.244.0.0/24), Ready; pods run on it."""
    started = start_node(
        require_binary("kubelet"), kube_apiserver, kubectl, stack_workdir / "node", node_images()
    )
    yield started
    started.stop()


@pytest.fixture(scope="session")
def node_redis(node: Node, redis_server: RedisServer) -> str:
    """``host_ip:port`` at which pods reach the session Redis (a relay to its loopback port)."""
    return node.expose(redis_server.port)


@pytest.fixture
def k8s_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    # Without a controller-manager the namespace stays Terminating; that is harmless here.
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def keda_operator(
    kube_apiserver: KubeAPIServer, kubectl: Kubectl, stack_workdir: Path
) -> Iterator[KedaOperator]:
    binary = require_binary("keda-operator")
    operator = start_keda(
        binary,
        _stack.version("keda"),
        require_data("keda", "crds"),
        kube_apiserver,
        kubectl,
        stack_workdir / "keda",
    )
    yield operator
    operator.stop()


@pytest.fixture(scope="session")
def keda_metrics_adapter(
    keda_operator: KedaOperator,
    node: Node,
    kube_apiserver: KubeAPIServer,
    kubectl: Kubectl,
    stack_workdir: Path,
) -> Iterator[KedaMetricsAdapter]:
    """KEDA's metrics adapter in a netns on the node's bridge, Available as external.metrics.k8s.io."""
    adapter = start_keda_adapter(
        require_binary("keda-adapter"),
        _stack.version("keda-adapter"),
        kube_apiserver,
        kubectl,
        keda_operator,
        node,
        stack_workdir / "keda-adapter",
    )
    yield adapter
    adapter.stop()


@pytest.fixture(scope="session")
def jaeger(stack_workdir: Path) -> Iterator[Jaeger]:
    server = start_jaeger(require_binary("jaeger"), _stack.version("jaeger"), stack_workdir / "jaeger")
    yield server
    server.stop()
