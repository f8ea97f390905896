"""daprd (the testbin build) delivers published messages to a plain dapr.ext.grpc App."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from dapr.ext.grpc import App, SubscriptionMessage

from tests.e2e.conftest import _stack
from tests.e2e.stack_dapr import component
from tests.e2e.stack_procs import free_port, port_open, wait_until
from tests.e2e.stack_redis import RedisServer


@pytest.fixture
def grpc_app() -> Iterator[tuple[App, int, queue.Queue[SubscriptionMessage]]]:
    """A dapr.ext.grpc App subscribed to pubsub/orders, served on a free loopback port in a thread."""

    received: queue.Queue[SubscriptionMessage] = queue.Queue()
    app = App()

    @app.subscribe(pubsub_name="pubsub", topic="orders")
    def orders(event: SubscriptionMessage) -> None:
        received.put(event)

    port = free_port()
    thread = threading.Thread(target=app.run, args=(port, "127.0.0.1"), daemon=True)
    thread.start()
    wait_until(lambda: port_open(port), "the gRPC app to listen", 15)
    yield app, port, received
    app.stop()
    thread.join(timeout=10)


def pubsub_components(kind: str, redis: RedisServer | None) -> list[dict[str, Any]]:
    if kind == "redis":
        assert redis is not None
        return [
            component(
                "pubsub",
                "pubsub.redis",
                {
                    "redisHost": redis.address,
                    "redisPassword": "",
                    "consumerID": f"e2e-{uuid.uuid4().hex[:6]}",
                },
            )
        ]
    return [component("pubsub", "pubsub.in-memory")]


@pytest.mark.parametrize("kind", ["redis", "in-memory"])
def test_publish_reaches_grpc_app(
    kind: str,
    request: pytest.FixtureRequest,
    daprd: Any,
    grpc_app: tuple[App, int, queue.Queue[SubscriptionMessage]],
) -> None:
    redis = request.getfixturevalue("redis_server") if kind == "redis" else None
    _, app_port, received = grpc_app
    sidecar = daprd(app_port, resources=pubsub_components(kind, redis), app_protocol="grpc")

    order = {"order": uuid.uuid4().hex}
    response = requests.post(f"{sidecar.http_url}/v1.0/publish/pubsub/orders", json=order, timeout=10)
    assert response.status_code == 204, response.text

    event = received.get(timeout=30)
    assert event.topic() == "orders"
    assert event.pubsub_name() == "pubsub"
    assert event.data() == order


def test_sidecar_reports_components_and_listens_on_loopback_only(daprd: Any) -> None:
    sidecar = daprd(resources=[component("statestore", "state.in-memory")])
    metadata = requests.get(f"{sidecar.http_url}/v1.0/metadata", timeout=10).json()
    assert metadata["id"] == sidecar.app_id
    assert {"name": "statestore", "type": "state.in-memory"}.items() <= metadata["components"][0].items()
    assert metadata["runtimeVersion"] == _stack.version("daprd")

    state = [{"key": "k", "value": {"v": 1}}]
    assert (
        requests.post(f"{sidecar.http_url}/v1.0/state/statestore", json=state, timeout=10).status_code == 204
    )
    assert requests.get(f"{sidecar.http_url}/v1.0/state/statestore/k", timeout=10).json() == {"v": 1}
