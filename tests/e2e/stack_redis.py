"""redis-server on a loopback port for tests, and a minimal client to drive it."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.stack_procs import HOST, Proc, StackError, free_port, start, wait_until


class RedisClient:
    """A minimal RESP2 client, enough for tests to drive lists and streams (no redis-py needed)."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.host, self.port = host, port

    def command(self, *args: str | bytes | int) -> Any:
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            sock.sendall(self._encode(args))
            reader = sock.makefile("rb")
            return self._read(reader)

    @staticmethod
    def _encode(args: Sequence[str | bytes | int]) -> bytes:
        out = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    def _read(self, reader: Any) -> Any:
        line = reader.readline()
        if not line:
            raise StackError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise StackError(f"redis error: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else reader.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read(reader) for _ in range(size)]
        raise StackError(f"unexpected redis reply {line!r}")


@dataclass
class RedisServer:
    """A running redis-server (no persistence) on 127.0.0.1."""

    proc: Proc
    port: int
    version: str

    host = HOST

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    @property
    def address(self) -> str:
        """host:port, the form Dapr's and KEDA's redis components take."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    def client(self) -> RedisClient:
        return RedisClient(self.port)

    def command(self, *args: str | bytes | int) -> Any:
        """Run one command, e.g. ``command("LPUSH", "jobs", "a")``; returns the decoded reply."""
        return RedisClient(self.port).command(*args)

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"redis-server log ({self.proc.log_path})", self.proc.log_tail(40))]

    def stop(self) -> None:
        self.proc.stop()


def start_redis(binary: Path, workdir: Path) -> RedisServer:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start(
        "redis-server",
        [
            str(binary),
            "--bind",
            HOST,
            "--port",
            str(port),
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            "",
        ],
        workdir / "logs",
    )
    try:
        wait_until(lambda: RedisClient(port).command("PING") == "PONG", "redis PING", 30, [proc])
        info = RedisClient(port).command("INFO", "server").decode()
    except BaseException:
        proc.stop()
        raise
    version = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("redis_version:")),
        "unknown",
    )
    return RedisServer(proc, port, version)
