"""Lifecycle: in-flight counts and the draining flag shared by forked worker processes."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from functions_framework.runtime.lifecycle import Lifecycle

fork = multiprocessing.get_context("fork")
TIMEOUT = 20


def _worker(lifecycle: Lifecycle, calls: int, entered, release, saw_draining) -> None:
    """A forked worker: enter ``calls`` times, report, wait to be released, report draining, leave."""
    for _ in range(calls):
        lifecycle.enter()
    entered.set()
    if not release.wait(TIMEOUT):
        raise SystemExit(3)
    saw_draining.value = 1 if lifecycle.draining else 0
    for _ in range(calls):
        lifecycle.leave()


@pytest.fixture
def workers():
    """Start forked workers; each holds ``calls`` calls in flight until released."""
    started: list = []

    def start(lifecycle: Lifecycle, calls_per_worker: list[int]):
        release = fork.Event()
        procs = []
        for calls in calls_per_worker:
            entered, saw = fork.Event(), fork.Value("b", -1)
            proc = fork.Process(target=_worker, args=(lifecycle, calls, entered, release, saw))
            proc.start()
            started.append(proc)
            procs.append((proc, entered, saw))
        for _, entered, _ in procs:
            assert entered.wait(TIMEOUT), "a worker did not start"
        return release, procs

    yield start
    for proc in started:
        if proc.is_alive():
            proc.kill()
        proc.join(TIMEOUT)


def test_counts_of_every_forked_worker_add_up(workers):
    lifecycle = Lifecycle()
    lifecycle.enter()  # the supervisor's own process counts too, in its own slot
    release, procs = workers(lifecycle, [1, 2, 3])
    assert lifecycle.inflight == 1 + 1 + 2 + 3
    lifecycle.leave()
    assert lifecycle.inflight == 6
    release.set()
    for proc, _, _ in procs:
        proc.join(TIMEOUT)
        assert proc.exitcode == 0
    assert lifecycle.inflight == 0


def test_draining_set_in_the_supervisor_is_seen_by_every_worker(workers):
    lifecycle = Lifecycle()
    release, procs = workers(lifecycle, [1, 1])
    assert not lifecycle.draining
    lifecycle.start_draining()
    assert lifecycle.draining
    release.set()
    for proc, _, saw in procs:
        proc.join(TIMEOUT)
        assert proc.exitcode == 0 and saw.value == 1


def test_wait_idle_returns_when_the_last_worker_leaves(workers):
    lifecycle = Lifecycle()
    release, procs = workers(lifecycle, [2, 1])
    assert lifecycle.inflight == 3
    threading.Timer(0.1, release.set).start()  # the workers finish while we wait
    started = time.monotonic()
    assert lifecycle.wait_idle(TIMEOUT) is True
    assert time.monotonic() - started < TIMEOUT / 2
    assert lifecycle.inflight == 0
    for proc, _, _ in procs:
        proc.join(TIMEOUT)


def test_wait_idle_is_bounded_by_the_grace_period(workers):
    lifecycle = Lifecycle()
    release, _ = workers(lifecycle, [1])
    try:
        started = time.monotonic()
        assert lifecycle.wait_idle(0.3) is False
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 3, elapsed
        assert lifecycle.inflight == 1
    finally:
        release.set()


def test_wait_idle_with_nothing_in_flight_returns_at_once():
    lifecycle = Lifecycle()
    started = time.monotonic()
    assert lifecycle.wait_idle(10) is True
    assert time.monotonic() - started < 1


def test_concurrent_threads_of_one_process_keep_the_count():
    lifecycle = Lifecycle()

    def calls() -> None:
        for _ in range(2000):
            lifecycle.enter()
            lifecycle.leave()

    threads = [threading.Thread(target=calls) for _ in range(8)]
    lifecycle.enter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert lifecycle.inflight == 1
    lifecycle.leave()
    assert lifecycle.inflight == 0
