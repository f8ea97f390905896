"""Readiness and in-flight accounting shared by every worker process of one server."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any

MAX_PROCESSES = 256


class Lifecycle:
    """Draining flag and in-flight counts in shared memory, so that forked workers and the supervisor
    see the same values. Each process counts in its own slot, so a call takes no cross-process lock."""

    def __init__(self) -> None:
        self._draining: Any = multiprocessing.RawValue("b", 0)
        self._counts: Any = multiprocessing.RawArray("i", MAX_PROCESSES)
        self._next_slot: Any = multiprocessing.Value("i", 0)
        self._slot = -1
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def draining(self) -> bool:
        return bool(self._draining.value)

    def start_draining(self) -> None:
        self._draining.value = 1

    @property
    def inflight(self) -> int:
        return sum(self._counts)

    def _my_slot(self) -> int:
        if self._pid != os.getpid():
            with self._next_slot.get_lock():
                slot = self._next_slot.value
                self._next_slot.value = slot + 1
            if slot >= MAX_PROCESSES:
                raise RuntimeError(f"more than {MAX_PROCESSES} worker processes")
            self._lock = threading.Lock()
            self._slot, self._pid = slot, os.getpid()
        return self._slot

    def enter(self) -> None:
        slot = self._slot if self._pid == os.getpid() else self._my_slot()
        with self._lock:
            self._counts[slot] += 1

    def leave(self) -> None:
        with self._lock:
            self._counts[self._slot] -= 1

    def wait_idle(self, grace: float, poll: float = 0.02) -> bool:
        """Wait until nothing is in flight, at most ``grace`` seconds. True when idle."""
        deadline = time.monotonic() + grace
        while self.inflight > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True
