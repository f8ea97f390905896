"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import Server

pytest_plugins = ["tests.fakes.dapr_api"]


@pytest.fixture
def funcd() -> Iterator[Callable[..., Server]]:
    """Start ``funcd run ARGS`` on an ephemeral port and wait until it is ready."""
    started: list[Server] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready: bool = True,
        port: str = "0",
        workers: str = "1",
    ) -> Server:
        argv = ["run", *args]
        if "--port" not in args and port:
            argv += ["--port", port]
        if "--workers" not in args:
            argv += ["--workers", workers]
        server = Server(argv, env, cwd)
        started.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in started:
        server.kill()
