"""The sidecar's address: the flags are enough on their own, the environment is Dapr's, and funcd
waits on the gRPC API it uses (never on the HTTP health port), printing nothing unformatted."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest
import requests

from functions_framework.dapr_client import SidecarAddress, sidecar_address
from functions_framework.errors import FunctionsFrameworkError
from tests.support import write_function

if TYPE_CHECKING:
    from tests.fakes.dapr_api import DaprApiFake


def test_flags_alone_name_the_sidecar_and_the_environment_is_not_mixed_in():
    env = {"DAPR_HTTP_PORT": "3999", "DAPR_GRPC_PORT": "5999", "DAPR_API_TOKEN": "t"}
    assert sidecar_address("127.0.0.1:6001", None, env) == SidecarAddress("127.0.0.1:6001", None, "t")
    assert sidecar_address("127.0.0.1:6001", "127.0.0.1:6002", {}) == SidecarAddress(
        "127.0.0.1:6001", "http://127.0.0.1:6002"
    )


def test_dapr_environment_variables():
    assert sidecar_address(None, None, {}) is None
    ports = {"DAPR_GRPC_PORT": "50001", "DAPR_HTTP_PORT": "3500"}
    assert sidecar_address(None, None, ports) == SidecarAddress("127.0.0.1:50001", "http://127.0.0.1:3500")
    env = {
        "DAPR_GRPC_ENDPOINT": "http://10.0.0.5:7001",
        "DAPR_HTTP_ENDPOINT": "http://10.0.0.5:7000",
        "DAPR_HEALTH_TIMEOUT": "5",
    }
    assert sidecar_address(None, None, env) == SidecarAddress(
        "10.0.0.5:7001", "http://10.0.0.5:7000", None, 5.0
    )
    assert sidecar_address(None, None, {"DAPR_GRPC_PORT": "1", "DAPR_RUNTIME_HOST": "h"}).grpc == "h:1"


@pytest.mark.parametrize(
    ("grpc", "http", "env", "message"),
    [
        ("localhost", None, {}, r"--dapr-address: expected host:port, got 'localhost'"),
        ("https://h:443", None, {}, r"--dapr-address: expected host:port of the sidecar's plain gRPC API"),
        (None, "h:1", {}, r"--dapr-http-address: give --dapr-address"),
        (None, None, {"DAPR_GRPC_PORT": "1", "DAPR_HEALTH_TIMEOUT": "soon"}, "DAPR_HEALTH_TIMEOUT: expected"),
    ],
)
def test_bad_addresses_say_what_was_expected(grpc, http, env, message):
    with pytest.raises(FunctionsFrameworkError, match=message):
        sidecar_address(grpc, http, env)


FUNCTION = """
def handler(context, event):
    context.send({"from": "handler"}, output="out")
    return "sent"
"""

OWN_CLIENT = """
from dapr.clients import DaprClient

def handler(context, event):
    with DaprClient() as client:   # the function's own client, as OpenFunction functions make
        client.publish_event(pubsub_name="msg", topic_name="own", data=b"mine")
    return "sent"
"""

CONTEXT = """
name: addr
triggers:
  http: {port: 8080}
outputs:
  out: {componentName: msg, componentType: pubsub.redis, topic: out}
"""


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, dapr_api: DaprApiFake) -> DaprApiFake:
    """No Dapr variable in the environment: only the flags name the sidecar."""
    for name in ("DAPR_GRPC_ENDPOINT", "DAPR_HTTP_ENDPOINT", "DAPR_GRPC_PORT", "DAPR_HTTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    dapr_api.healthy = False  # were anything to wait on the HTTP health endpoint, it would wait in vain
    return dapr_api


def only_json_lines(output: str) -> None:
    for line in output.splitlines():
        assert isinstance(json.loads(line), dict), line


def test_dapr_address_alone_is_enough(funcd, tmp_path, bare_env):
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    server = funcd(str(folder), "--dapr-address", bare_env.address)
    started = time.monotonic()
    assert requests.get(server.url, timeout=30).text == "sent"
    assert time.monotonic() - started < 10
    assert [(m.topic, m.data) for m in bare_env.published] == [("out", b'{"from": "handler"}')]
    assert bare_env.health_checks == 0
    server.stop()
    only_json_lines(server.output)


def test_the_sdk_settings_are_set_in_each_worker_for_the_functions_own_client(funcd, tmp_path, bare_env):
    bare_env.healthy = True
    folder = write_function(tmp_path / "f", OWN_CLIENT, CONTEXT)
    server = funcd(
        str(folder),
        "--dapr-address",
        bare_env.address,
        "--dapr-http-address",
        f"127.0.0.1:{bare_env.http_port}",
        workers="2",
    )
    for _ in range(4):
        assert requests.get(server.url, timeout=30).text == "sent"
    assert [(m.topic, m.data) for m in bare_env.published] == [("own", b"mine")] * 4
    server.stop()
    only_json_lines(server.output)


def test_what_the_sdk_prints_for_the_functions_own_client_is_logged(funcd, tmp_path, bare_env):
    # No HTTP address: the SDK's DaprClient() waits on its default HTTP port, where nothing answers,
    # and prints a line per failed probe. funcd routes those lines to its JSON log.
    folder = write_function(tmp_path / "f", OWN_CLIENT, CONTEXT)
    server = funcd(str(folder), "--dapr-address", bare_env.address, env={"DAPR_HEALTH_TIMEOUT": "1"})
    # The SDK's health check timed out: its TimeoutError is the handler's own, a 500 (not funcd's 504).
    assert requests.get(server.url, timeout=30).status_code == 500
    server.stop()
    only_json_lines(server.output)
    sdk = [x for x in server.json_logs() if x.get("message", "").startswith("Dapr SDK: Health check on")]
    assert sdk and all(x["level"] == "warning" for x in sdk), server.output
