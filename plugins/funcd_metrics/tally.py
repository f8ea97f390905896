"""Per-call counting in plain Python, flushed into the prometheus_client metrics now and then.

A call of the function costs the plugin a few integer and float additions, not five prometheus_client
value writes (each under a lock, and in multiprocess mode an mmap write). Each OS thread that runs
calls has a ``Tally`` of its own, keyed by ``threading.get_ident()``: only that thread writes it, so
``x += 1`` cannot lose an update to another writer (it is a read-modify-write, not atomic across
threads). The flusher only reads the tallies: an int or float read, a ``list``/``dict`` copy are single
C operations under the GIL, so it sees each value whole, at worst one call early. A thread's ident is
reused only after the thread is gone, and a new thread with the same ident simply continues its tally.
(A free-threaded interpreter would need a lock here; funcd runs on CPython with the GIL.)

``Tallies.flush`` sums the tallies, takes the difference from what it flushed before, and adds that
to the prometheus_client children (``Counter.inc(n)``, ``Gauge.set``, and the histogram through
``add_to_histogram``). In flight is ``started - finished`` over all tallies (a call may end on
another thread than it started on), set as this worker's gauge value.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from .families import DURATION_BUCKETS, Families

log = logging.getLogger("funcd_metrics")

BOUNDS = (*DURATION_BUCKETS, float("inf"))
"""The histogram's upper bounds as prometheus_client holds them (with +Inf last)."""


class SeriesTally:
    """One thread's counts for one trigger: calls per duration bucket, the durations' sum, calls per
    reply."""

    __slots__ = ("buckets", "replies", "total")

    def __init__(self) -> None:
        self.buckets = [0] * len(BOUNDS)
        self.total = 0.0
        self.replies: dict[int | str | None, int] = {}


class Tally:
    """What one thread counted since the worker started (never reset: the flusher keeps the
    difference)."""

    __slots__ = ("finished", "series", "started")

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.series: dict[str, dict[str, SeriesTally]] = {}

    def record(self, kind: str, name: str, duration: float, reply: int | str | None) -> None:
        by_name = self.series.get(kind)
        if by_name is None:
            by_name = self.series[kind] = {}
        series = by_name.get(name)
        if series is None:
            series = by_name[name] = SeriesTally()
        series.buckets[bisect_left(BOUNDS, duration)] += 1
        series.total += duration
        replies = series.replies
        replies[reply] = replies.get(reply, 0) + 1


def add_to_histogram(child: Any, buckets: list[int], total: float) -> None:
    """Add ``buckets[i]`` observations to bucket ``i`` and ``total`` to the sum of a prometheus_client
    histogram child, as that many ``observe()`` calls would, in one write per bucket.

    prometheus_client has no public call for this: it uses the child's ``_upper_bounds``,
    ``_buckets`` and ``_sum`` (prometheus_client 0.2x; tests/test_metrics_plugin.py fails if these
    change).
    """
    if tuple(child._upper_bounds) != BOUNDS:
        raise ValueError(f"histogram bounds {child._upper_bounds!r} are not the plugin's {BOUNDS!r}")
    for i, n in enumerate(buckets):
        if n:
            child._buckets[i].inc(n)
    child._sum.inc(total)


@dataclass
class _Flushed:
    """What one trigger's series held at the last flush, and its prometheus_client children."""

    duration: Any
    """The histogram child."""
    outcomes: dict[int | str | None, Any] = field(default_factory=dict)
    """The counter child per reply."""
    buckets: list[int] = field(default_factory=lambda: [0] * len(BOUNDS))
    """Bucket counts flushed so far."""
    total: float = 0.0
    """Sum flushed so far."""
    replies: dict[int | str | None, int] = field(default_factory=dict)
    """Calls per reply flushed so far."""


class Tallies:
    """Every thread's ``Tally`` in one worker, and the flush into the metric families."""

    def __init__(self, families: Families, function: str) -> None:
        self.families = families
        self.function = function
        self.by_thread: dict[int, Tally] = {}
        self._in_flight = families.in_flight.labels(function)
        self._flushed: dict[tuple[str, str], _Flushed] = {}
        self._flushed_in_flight = 0
        self._lock = threading.Lock()  # one flush at a time (never taken by a call)

    def mine(self) -> Tally:
        """The calling thread's tally, made on its first call (``setdefault`` is one dict operation)."""
        tally = self.by_thread.get(threading.get_ident())
        if tally is None:
            tally = self.by_thread.setdefault(threading.get_ident(), Tally())
        return tally

    def flush(self) -> None:
        """Add what the threads counted since the last flush to the prometheus_client metrics."""
        with self._lock:
            started = finished = 0
            sums: dict[tuple[str, str], SeriesTally] = {}
            for tally in list(self.by_thread.values()):
                started += tally.started
                finished += tally.finished
                for kind, by_name in tally.series.copy().items():
                    for name, series in by_name.copy().items():
                        into = sums.get((kind, name))
                        if into is None:
                            into = sums[kind, name] = SeriesTally()
                        for i, n in enumerate(list(series.buckets)):
                            into.buckets[i] += n
                        into.total += series.total
                        for reply, n in series.replies.copy().items():
                            into.replies[reply] = into.replies.get(reply, 0) + n
            in_flight = started - finished
            if in_flight != self._flushed_in_flight:
                self._in_flight.set(in_flight)
                self._flushed_in_flight = in_flight
            for key, now in sums.items():
                self._flush_series(key, now)

    def _flush_series(self, key: tuple[str, str], now: SeriesTally) -> None:
        kind, name = key
        label = "http" if kind == "http" else f"{kind}:{name}"
        last = self._flushed.get(key)
        if last is None:
            last = self._flushed[key] = _Flushed(self.families.duration.labels(self.function, label))
        delta = [n - before for n, before in zip(now.buckets, last.buckets, strict=True)]
        if any(delta):
            add_to_histogram(last.duration, delta, now.total - last.total)
            last.buckets, last.total = now.buckets, now.total
        for reply, n in now.replies.items():
            added = n - last.replies.get(reply, 0)
            if added:
                child = last.outcomes.get(reply)
                if child is None:
                    child = last.outcomes[reply] = self.families.invocations.labels(
                        self.function, label, str(reply)
                    )
                child.inc(added)
                last.replies[reply] = n


class Flusher:
    """A daemon thread that flushes every ``interval`` seconds until ``stop()``."""

    def __init__(self, tallies: Tallies, interval: float) -> None:
        self.tallies = tallies
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="funcd-metrics-flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tallies.flush()
            except Exception:  # keep flushing: the next flush carries what this one missed
                log.exception("metrics: flushing the counts failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
