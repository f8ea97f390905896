"""The record a local daprd leaves for ``funcd publish``, and the clean-up of stale ones.

One JSON file per app id in the state directory names the funcd supervisor and its daprd, each by
pid and by the start time the kernel gives that pid (``/proc/<pid>/stat``), so that a pid reused by
another process is never taken for them. A record whose funcd is gone is stale (a ``kill -9`` of
funcd leaves it behind): its daprd is stopped, if it still runs and is still that daprd, and the
file is removed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("functions_framework.sidecar")

__all__ = ["SidecarRecord", "live_records", "process_started", "stop_process"]


def process_started(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, field 22 of ``/proc/<pid>/stat``); None when no
    such process runs (or it is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    if fields[0] == "Z":
        return None
    return int(fields[19])


def stop_process(pid: int, started: int, timeout: float = 10.0) -> bool:
    """SIGTERM ``pid`` if it is still the process that started at ``started``, then SIGKILL after
    ``timeout``. True when it ran and was stopped."""
    if process_started(pid) != started:
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout
        while process_started(pid) == started and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_started(pid) != started:
            return True
    return process_started(pid) != started


@dataclass(frozen=True)
class SidecarRecord:
    """A running local daprd and the funcd that started it."""

    app_id: str
    """The function's name, daprd's ``--app-id``."""
    funcd_pid: int
    """The funcd supervisor."""
    funcd_started: int
    """Its start time, as ``process_started`` reads it."""
    daprd_pid: int
    """The daprd it started."""
    daprd_started: int
    """daprd's start time."""
    http_port: int
    """daprd's HTTP API port."""
    grpc_port: int
    """daprd's gRPC API port."""
    subscriptions: list[list[str]] = field(default_factory=list)
    """The ``[pub/sub component, topic]`` pairs the function subscribes to."""

    @property
    def pubsubs(self) -> list[str]:
        """The pub/sub components the function subscribes through."""
        return sorted({pubsub for pubsub, _ in self.subscriptions})

    @property
    def funcd_alive(self) -> bool:
        return process_started(self.funcd_pid) == self.funcd_started

    @property
    def daprd_alive(self) -> bool:
        return process_started(self.daprd_pid) == self.daprd_started

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> SidecarRecord | None:
        """The record in ``path``; None when it does not parse (an older or a damaged file)."""
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None


def live_records(state_dir: Path) -> dict[str, SidecarRecord]:
    """The records whose funcd still runs, by app id. Stale records are cleaned on the way: their
    daprd is stopped (if it is still that daprd) and their file removed."""
    live: dict[str, SidecarRecord] = {}
    for path in sorted(state_dir.glob("*.json")):
        record = SidecarRecord.read(path)
        if record is not None and record.funcd_alive:
            live[record.app_id] = record
            continue
        if record is not None and stop_process(record.daprd_pid, record.daprd_started):
            log.warning(
                "stopped the daprd (pid %d) that a funcd (pid %d) which is gone left running for %r",
                record.daprd_pid,
                record.funcd_pid,
                record.app_id,
            )
        path.unlink(missing_ok=True)
    return live
