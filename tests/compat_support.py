"""Helpers of the compatibility tests: the function folders, bounded waits, Dapr deliveries."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from dapr.proto import appcallback_service_v1, appcallback_v1

from tests.support import Server

FUNCTIONS = Path(__file__).resolve().parent / "functions"
"""Functions written the way Google's and OpenFunction's docs write them, one folder each."""

SUCCESS = appcallback_v1.TopicEventResponse.SUCCESS
RETRY = appcallback_v1.TopicEventResponse.RETRY
DROP = appcallback_v1.TopicEventResponse.DROP

_DAPR_LINE = re.compile(r"serving Dapr app callbacks for .* on grpc://127\.0\.0\.1:(\d+)")
T = TypeVar("T")


def wait_until(probe: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def wait_exit(server: Server, timeout: float = 20.0) -> int:
    """The exit code of a server expected to fail at start-up; fails if it starts serving instead."""
    deadline = time.monotonic() + timeout
    while server.proc.poll() is None:
        if server.port:
            raise AssertionError(f"funcd started serving instead of refusing to start:\n{server.output}")
        if time.monotonic() > deadline:
            raise AssertionError(f"funcd neither served nor exited within {timeout:g}s:\n{server.output}")
        time.sleep(0.02)
    return server.proc.returncode


def read_jsonl(path: Path) -> list[Any]:
    """The JSON lines a function appended to ``path`` (none yet: an empty list)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dapr_stub(server: Server) -> tuple[grpc.Channel, Any]:
    """A channel and an AppCallback stub on the server's Dapr port, read from its start-up log."""

    def port() -> int:
        for line in server.lines:
            m = _DAPR_LINE.search(line)
            if m:
                return int(m.group(1))
        return 0

    channel = grpc.insecure_channel(f"127.0.0.1:{wait_until(port, 'the Dapr app callback port')}")
    grpc.channel_ready_future(channel).result(timeout=10)
    return channel, appcallback_service_v1.AppCallbackStub(channel)


def topic_event(
    data: bytes,
    event_id: str = "e1",
    topic: str = "orders",
    pubsub: str = "msg",
    event_type: str = "com.example.order",
    content_type: str = "application/json",
) -> Any:
    """A TopicEventRequest as daprd sends it."""
    return appcallback_v1.TopicEventRequest(
        id=event_id,
        source="tests",
        type=event_type,
        spec_version="1.0",
        data_content_type=content_type,
        data=data,
        topic=topic,
        pubsub_name=pubsub,
    )


def binding_event(name: str, data: bytes, metadata: dict[str, str] | None = None) -> Any:
    """A BindingEventRequest as daprd sends it."""
    return appcallback_v1.BindingEventRequest(name=name, data=data, metadata=metadata or {})
