"""Test helpers: real funcd servers on ephemeral ports, stopped by PID."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import requests

ROOT = Path(__file__).resolve().parent.parent


def load_module(name: str, path: Path) -> ModuleType:
    """A module from a file outside the packages (e.g. ``testbin/stack.py``), loaded once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def testbin_stack() -> ModuleType:
    """``testbin/stack.py``: versions and cache paths of the built test stack."""
    return load_module("funcd_testbin_stack", ROOT / "testbin" / "stack.py")


SAMPLES = ROOT / "samples"
FUNCD = [sys.executable, "-m", "functions_framework.cli"]
_LISTENING = re.compile(r"serving '.*' on http://([\d.]+):(\d+)")


class Server:
    """A ``funcd run`` subprocess. Its output lines are collected in ``lines``."""

    def __init__(self, args: list[str], env: dict[str, str] | None, cwd: Path | None) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [*FUNCD, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            text=True,
            start_new_session=True,  # its own process group, so that teardown stops the workers too
        )
        self.lines: list[str] = []
        self.port = 0
        self._bound = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = _LISTENING.search(line)
            if m and not self._bound.is_set():
                self.port = int(m.group(2))
                self._bound.set()
        self._bound.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def json_logs(self) -> list[dict]:
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_for_log(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        """The first JSON log line matching ``predicate``, waiting for it at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.json_logs():
                if predicate(line):
                    return line
            if time.monotonic() >= deadline or (self.proc.poll() is not None and not self._reading()):
                raise AssertionError(f"no matching log line within {timeout}s:\n{self.output}")
            time.sleep(0.01)

    def _reading(self) -> bool:
        return self._reader.is_alive()

    def wait_ready(self, timeout: float = 30.0) -> Server:
        deadline = time.monotonic() + timeout
        self._bound.wait(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"funcd exited with {self.proc.returncode}:\n{self.output}")
            if self.port:
                try:
                    if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                        return self
                except requests.ConnectionError:
                    pass
            time.sleep(0.02)
        raise AssertionError(f"funcd not ready within {timeout}s:\n{self.output}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"funcd did not stop within {timeout}s:\n{self.output}") from None

    def kill(self) -> None:
        """SIGKILL the whole process group (supervisor and workers) started for this server."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*FUNCD, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout
    )


def write_function(folder: Path, source: str, context: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(source)
    if context is not None:
        (folder / "function.yaml").write_text(context)
    return folder


def receiving_worker(pids: set[int], port: int) -> int:
    """The worker holding the established TCP connection to ``port`` (read from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    raise AssertionError(f"no worker of {pids} holds a connection to port {port}")
