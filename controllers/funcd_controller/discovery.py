"""The dynamic client's resource lookup, safe across threads and cheap for kinds that are not served.

The ``kubernetes`` client's discoverer is not thread-safe: a lookup that misses drops and refills its
whole cache, and another thread reading it meanwhile fails with a ``KeyError`` ('resources', 'api').
Prune looks up every kind render may emit, KEDA's and Dapr's too, which a cluster may not serve, so
without this every reconcile re-ran full discovery and workers tripped over each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Discovery:
    """Stands in for a ``DynamicClient`` where only ``.resources.get(api_version=, kind=)`` is used:
    one lookup at a time, served kinds remembered, a kind not served looked up again after
    ``missing_ttl`` seconds (e.g. once KEDA's CRDs are installed)."""

    def __init__(
        self, dynamic: Any, missing_ttl: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._dynamic = dynamic
        self._missing_ttl = missing_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str], Any] = {}
        self._missing: dict[tuple[str, str], float] = {}
        self.resources = self  # callers write ``dynamic.resources.get(...)``

    def get(self, *, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        key = (api_version, kind)
        with self._lock:
            if key in self._found:
                return self._found[key]
            if self._clock() < self._missing.get(key, float("-inf")):
                raise ResourceNotFoundError(f"the API server does not serve {kind} ({api_version})")
            try:
                resource = self._dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                self._missing[key] = self._clock() + self._missing_ttl
                raise
            self._found[key] = resource
            self._missing.pop(key, None)
            return resource
