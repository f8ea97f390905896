"""Readiness and in-flight accounting shared by every worker process of one server."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any


class Lifecycle:
    """Draining flag and in-flight count, in shared memory so that forked workers see one value."""

    def __init__(self) -> None:
        self._draining: Any = multiprocessing.RawValue("b", 0)
        self._inflight: Any = multiprocessing.Value("i", 0)

    @property
    def draining(self) -> bool:
        return bool(self._draining.value)

    def start_draining(self) -> None:
        self._draining.value = 1

    @property
    def inflight(self) -> int:
        return int(self._inflight.value)

    def enter(self) -> None:
        with self._inflight.get_lock():
            self._inflight.value += 1

    def leave(self) -> None:
        with self._inflight.get_lock():
            self._inflight.value -= 1

    def wait_idle(self, grace: float, poll: float = 0.02) -> bool:
        """Wait until nothing is in flight, at most ``grace`` seconds. True when idle."""
        deadline = time.monotonic() + grace
        while self.inflight > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True
