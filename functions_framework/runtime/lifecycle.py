"""Readiness, in-flight accounting and what the drain watches, shared by every worker process of one
server: the Dapr deliveries (when the last one started or ended) and the answers given to daprd's app
health probes (how many said "unhealthy" since draining began)."""

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
        self._probes: Any = multiprocessing.Value("i", 0)
        self._unhealthy: Any = multiprocessing.Value("i", 0)
        self._last_delivery: Any = multiprocessing.RawValue("d", 0.0)
        self._drain_deliveries: Any = multiprocessing.Value("i", 0)
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

    def enter_delivery(self) -> None:
        """A Dapr delivery starts: counted in flight, and as activity the drain waits out."""
        self._last_delivery.value = time.monotonic()
        if self.draining:
            with self._drain_deliveries.get_lock():
                self._drain_deliveries.value += 1
        self.enter()

    def leave_delivery(self) -> None:
        self.leave()
        self._last_delivery.value = time.monotonic()

    @property
    def last_delivery(self) -> float:
        """``time.monotonic()`` when a Dapr delivery last started or ended; 0.0 before the first."""
        return float(self._last_delivery.value)

    @property
    def drain_deliveries(self) -> int:
        """Dapr deliveries that arrived, and were served, after draining began."""
        return int(self._drain_deliveries.value)

    def health_probe(self) -> bool:
        """Answer one of daprd's app health probes: False (unhealthy) once draining. Counted."""
        healthy = not self.draining
        with self._probes.get_lock():
            self._probes.value += 1
        if not healthy:
            with self._unhealthy.get_lock():
                self._unhealthy.value += 1
        return healthy

    @property
    def health_probes(self) -> int:
        """daprd's app health probes answered so far."""
        return int(self._probes.value)

    @property
    def unhealthy_answers(self) -> int:
        """Probes answered "unhealthy" (all of them since draining began: they are consecutive)."""
        return int(self._unhealthy.value)

    def wait_idle(self, grace: float, poll: float = 0.02) -> bool:
        """Wait until nothing is in flight, at most ``grace`` seconds. True when idle."""
        deadline = time.monotonic() + grace
        while self.inflight > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True
