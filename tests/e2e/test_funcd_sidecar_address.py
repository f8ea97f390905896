"""``--dapr-address`` alone is enough against a real daprd: no Dapr variable in funcd's environment,
outputs and state work at once, and nothing unformatted reaches funcd's output."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.stack_dapr import DaprdFactory, component
from tests.e2e.test_funcd_async_runtime import FuncdFactory
from tests.support import write_function

FUNCTION = """
def handler(context, event):
    store = context.state("store")
    store.save("n", store.get("n", 0) + 1)
    context.send({"n": store.get("n")}, output="out")
    return {"n": store.get("n")}
"""

CONTEXT = """
name: address-e2e
triggers:
  http: {port: 8080}
outputs:
  out: {componentName: bus, componentType: pubsub.in-memory, topic: out}
states:
  store: {componentName: store, componentType: state.in-memory}
"""


@pytest.fixture
def funcd_group(tmp_path: Path) -> Iterator[FuncdFactory]:
    factory = FuncdFactory(tmp_path)
    yield factory
    factory.stop_all()


def test_dapr_address_alone_reaches_a_real_daprd(
    tmp_path: Path, daprd: DaprdFactory, funcd_group: FuncdFactory
) -> None:
    sidecar = daprd(
        None, resources=[component("bus", "pubsub.in-memory"), component("store", "state.in-memory")]
    )
    folder = write_function(tmp_path / "fn", FUNCTION, CONTEXT)
    # FuncdFactory removes every DAPR_* variable from funcd's environment: only the flag names daprd.
    server = funcd_group(folder, "--dapr-address", sidecar.grpc_address, "--workers", "2", env={})
    started = time.monotonic()
    answers = [requests.get(server.url, timeout=30).json()["n"] for _ in range(3)]
    assert time.monotonic() - started < 10, "the first call waited for something other than the gRPC API"
    assert answers == [1, 2, 3]  # one store, shared by both workers
    assert server.terminate(timeout=30) == 0
    for line in server.lines:  # JSON log lines only: no SDK health-check output
        assert isinstance(json.loads(line), dict), line
