"""One port, one function: ``funcd run`` refuses a port that anybody holds, with one line, and the
workers of one funcd still share their ports."""

from __future__ import annotations

import socket
import time

import grpc
import pytest
import requests

from functions_framework.runtime.ports import PortClaim, PortInUseError, check_ports
from tests.support import run_cli, write_function

FUNCTION = """
import os

def handler(context, event):
    return {"who": os.environ.get("FUNCD_WHO", "?"), "pid": os.getpid()}
"""

ASYNC_CONTEXT = """
name: ports
triggers:
  http: {port: 8080}
  dapr:
    - {name: msg, type: pubsub.redis, topic: orders}
"""


def listening_socket(reuseport: bool = False) -> socket.socket:
    sock = socket.socket()
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def refused(result, port: int, what: str, option: str) -> None:
    """funcd exited 1 with exactly one line on stderr naming the port."""
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"funcd: error: port {port} on 127.0.0.1 is in use by another process ({what}); "
        f"choose another with {option}"
    ], result.stderr


# ------------------------------------------------------------------ the probe


def test_check_ports_refuses_a_port_with_a_listener_with_or_without_so_reuseport():
    for reuseport in (False, True):
        with listening_socket(reuseport) as held:
            port = held.getsockname()[1]
            with pytest.raises(
                PortInUseError, match=rf"^port {port} on 127\.0\.0\.1 is in use by another process"
            ):
                check_ports("127.0.0.1", [PortClaim(port, "HTTP trigger", "--port")])


def test_check_ports_accepts_a_port_left_in_time_wait_and_skips_port_0():
    # The side that closes first keeps the connection in TIME_WAIT: a restarted server must not be
    # refused because of it. Servers (granian among them) listen with SO_REUSEADDR, as here.
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()
        client.recv(1)
        client.close()
    check_ports("127.0.0.1", [PortClaim(port, "HTTP trigger", "--port"), PortClaim(0, "metrics", "--x")])


def test_the_same_port_asked_for_twice_is_refused():
    with pytest.raises(
        PortInUseError, match=r"asked for twice: by the HTTP trigger \(--port\) and by the Dapr"
    ):
        check_ports(
            "127.0.0.1",
            [
                PortClaim(9, "HTTP trigger", "--port"),
                PortClaim(9, "Dapr app callbacks (gRPC)", "--dapr-port"),
            ],
        )


# ------------------------------------------------------------------ funcd run against real servers


def test_a_second_funcd_on_the_same_port_exits_1_and_the_first_serves_every_request(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION)
    first = funcd(str(folder), env={"FUNCD_WHO": "first"}, workers="2")
    second = run_cli(
        "run", str(folder), "--port", str(first.port), "--workers", "2", env={"FUNCD_WHO": "second"}
    )
    refused(second, first.port, "HTTP trigger", "--port")
    # A new connection per request: had the second joined through SO_REUSEPORT, it would get some.
    answers = [requests.get(first.url, timeout=5).json()["who"] for _ in range(60)]
    assert answers == ["first"] * 60
    assert first.proc.poll() is None


def test_a_port_held_by_another_process_is_one_line_not_a_traceback(tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION)
    with listening_socket() as held:
        port = held.getsockname()[1]
        result = run_cli("run", str(folder), "--port", str(port), "--workers", "1")
    refused(result, port, "HTTP trigger", "--port")
    assert "Traceback" not in result.stderr


def test_the_dapr_app_callback_port_is_checked_too(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", FUNCTION, ASYNC_CONTEXT)
    common = ["--dapr-address", dapr_api.address, "--workers", "1"]
    # Held by a plain socket.
    with listening_socket() as held:
        port = held.getsockname()[1]
        result = run_cli("run", str(folder), "--port", "0", "--dapr-port", str(port), *common)
    refused(result, port, "Dapr app callbacks (gRPC)", "--dapr-port")
    # Served by another funcd: the second one exits, the first keeps its AppCallback port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dapr_port = s.getsockname()[1]
    first = funcd(str(folder), "--dapr-port", str(dapr_port), *common)
    result = run_cli("run", str(folder), "--port", "0", "--dapr-port", str(dapr_port), *common)
    refused(result, dapr_port, "Dapr app callbacks (gRPC)", "--dapr-port")
    with grpc.insecure_channel(f"127.0.0.1:{dapr_port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
    assert first.proc.poll() is None


def test_the_http_and_dapr_ports_must_differ(tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", FUNCTION, ASYNC_CONTEXT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli(
        "run", str(folder), "--port", str(port), "--dapr-port", str(port), "--dapr-address", dapr_api.address
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"funcd: error: port {port} on 127.0.0.1 is asked for twice: by the HTTP trigger (--port) and by "
        "the Dapr app callbacks (gRPC) (--dapr-port); give each its own port"
    ]


def test_the_workers_of_one_funcd_share_its_port(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION)
    server = funcd(str(folder), workers="2")
    # SO_REUSEPORT spreads new connections over both workers' sockets, once both listen.
    pids: set[int] = set()
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        pids.add(requests.get(server.url, timeout=5).json()["pid"])
    assert len(pids) == 2, f"one worker answered every request: {pids}"
