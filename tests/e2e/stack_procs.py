"""Process plumbing for the end-to-end stack: start, wait for readiness, show logs, stop by PID.

Every server runs on 127.0.0.1 with a port picked by binding to port 0. Readiness is polled with
a deadline, never slept for. A process that dies while we wait fails the wait at once, with the
tail of its log in the message.

Errors::

    StackError          a stack component failed to start, died, or missed its deadline (or redis
                        answered with an error)
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A stack component failed to start, died, or did not get ready in time."""


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (bound to port 0 and read back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 60) -> str:
    try:
        data = path.read_bytes()[-64_000:]
    except OSError as exc:
        return f"<no log: {exc}>"
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


@dataclass
class Proc:
    """One process we started; its stdout and stderr go to ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM this PID, then SIGKILL it after ``timeout``; reap it."""
        if self.popen.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=timeout)
        except ProcessLookupError:
            pass

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited with {self.popen.returncode}"
        return f"{self.name} (pid {self.pid}, {state}), log {self.log_path}"


def start(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start ``argv`` with output to ``<log_dir>/<name>.log`` (a new file per start).

    ``env`` is laid over this process's environment; a value of None removes the variable."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    n = 1
    while log_path.exists():
        n += 1
        log_path = log_dir / f"{name}-{n}.log"
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    with log_path.open("wb") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    return Proc(name, list(argv), log_path, popen)


def wait_until(
    check: Callable[[], Any], what: str, timeout: float, procs: Iterable[Proc] = (), interval: float = 0.1
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail early if one of ``procs`` exits."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for proc in procs:
            if not proc.alive():
                raise StackError(
                    f"{proc.describe()} while waiting for {what}\n"
                    f"--- last lines of {proc.name} log ---\n{proc.log_tail()}"
                )
        try:
            result = check()
        except Exception as exc:  # a check may raise while the server is still coming up
            last_error, result = exc, None
        if result:
            return result
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- last lines of {p.describe()} ---\n{p.log_tail()}" for p in procs)
            cause = f" (last error: {last_error!r})" if last_error else ""
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}{cause}\n{logs}")
        time.sleep(interval)


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_status(
    url: str,
    *,
    token: str | None = None,
    ca_file: Path | None = None,
    timeout: float = 2.0,
    insecure: bool = False,
) -> int:
    """The HTTP status of a GET, or 0 if no connection could be made. ``insecure`` skips TLS
    verification (for a component's self-signed loopback certificate)."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    if insecure:
        context = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


@dataclass
class ProcGroup:
    """Processes started by one fixture; stopped in reverse order of start."""

    procs: list[Proc] = field(default_factory=list)

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def log_sections(self, lines: int = 40) -> list[tuple[str, str]]:
        return [(f"{p.name} log ({p.log_path})", p.log_tail(lines)) for p in self.procs]
