"""Temporary vs permanent errors of the controller, and the backoff of its work queue (no cluster)."""

from __future__ import annotations

import threading
import time

import pytest
from funcd_controller.errors import PermanentError, TemporaryError, classify
from funcd_controller.manager import Manager, WorkQueue, backoff
from funcd_controller.reconcile import Result
from kubernetes.client.rest import ApiException


@pytest.mark.parametrize("status", [409, 429, 500, 503, 504])
def test_conflicts_throttling_and_server_errors_are_temporary(status: int) -> None:
    err = classify(ApiException(status=status, reason="Busy"), "apply Deployment ns/a")
    assert isinstance(err, TemporaryError)
    assert str(err).startswith(f"apply Deployment ns/a: {status} Busy")


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_refusals_are_permanent_and_name_what_was_done(status: int) -> None:
    err = classify(ApiException(status=status, reason="Invalid"), "apply Service ns/a")
    assert isinstance(err, PermanentError)
    assert err.reason == "ApplyFailed"
    assert f"apply Service ns/a: {status} Invalid" in str(err)


def test_an_unreachable_api_server_is_temporary() -> None:
    err = classify(ConnectionRefusedError(111, "Connection refused"), "get Function ns/a")
    assert isinstance(err, TemporaryError)
    assert "get Function ns/a: ConnectionRefusedError" in str(err)


def test_backoff_doubles_from_half_a_second_to_a_minute() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff(8) == 60.0 and backoff(100) == 60.0


def test_a_delayed_key_waits_its_delay_and_is_deduplicated() -> None:
    queue = WorkQueue()
    queue.add("ns/a", 0.3)
    queue.add("ns/b")
    queue.add("ns/b")
    started = time.monotonic()
    assert queue.get() == "ns/b"
    queue.done("ns/b")
    assert queue.get() == "ns/a"
    assert time.monotonic() - started >= 0.3
    queue.done("ns/a")
    queue.close()
    assert queue.get() is None


def test_a_delay_that_falls_due_while_the_key_is_busy_runs_it_again_after() -> None:
    queue = WorkQueue()
    queue.add("ns/a")
    assert queue.get() == "ns/a"
    queue.add("ns/a", 0.05)  # due while a worker still has the key
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(queue.get()))
    t.start()
    t.join(0.3)
    assert t.is_alive()  # not handed to a second worker while busy
    queue.done("ns/a")
    t.join(5)
    assert got == ["ns/a"]
    queue.close()


class Flaky:
    """A reconciler that fails with ``error`` ``failures`` times, then succeeds; records call times."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls: list[float] = []
        self.settled = threading.Event()

    def reconcile(self, namespace: str, name: str) -> Result:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise self.error
        self.settled.set()
        return Result()


def _run(reconciler: Flaky) -> Manager:
    manager = Manager(None, workers=1, reconciler=reconciler)
    threading.Thread(target=manager._work, daemon=True).start()
    manager.queue.add("ns/a")
    return manager


def test_temporary_failures_are_retried_with_growing_delays() -> None:
    flaky = Flaky(TemporaryError("apply Deployment ns/a: 503 Unavailable"), failures=3)
    manager = _run(flaky)
    try:
        assert flaky.settled.wait(10), f"expected a success after 3 failures, got {len(flaky.calls)} calls"
        gaps = [b - a for a, b in zip(flaky.calls, flaky.calls[1:], strict=False)]
        for gap, expected in zip(gaps, (0.5, 1.0, 2.0), strict=True):
            assert expected <= gap < expected + 0.5, gaps
    finally:
        manager.stop()


def test_a_permanent_failure_is_not_retried_until_the_key_changes() -> None:
    flaky = Flaky(PermanentError("InvalidSpec", "spec.image: expected a string"), failures=1)
    manager = _run(flaky)
    try:
        deadline = time.monotonic() + 1.5  # three backoff periods: a retry would have happened
        while time.monotonic() < deadline and len(flaky.calls) < 2:
            time.sleep(0.05)
        assert len(flaky.calls) == 1
        manager.queue.add("ns/a")  # e.g. the Function was edited
        assert flaky.settled.wait(5)
    finally:
        manager.stop()


def test_leader_election_timing_is_checked_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    from functions_framework.cli import main

    argv = ["controller", "--leader-elect", "--lease-duration", "3", "--renew-deadline", "4"]
    assert main([*argv, "--kubeconfig", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "expected --lease-duration > --renew-deadline > 1.2 x --retry-period >= 1 s, got 3 / 4 / 2" in err


class Discoverer:
    """The part of a DynamicClient that Discovery uses: serves ``served`` kinds, counts lookups."""

    def __init__(self, served: set[tuple[str, str]]) -> None:
        self.served = served
        self.lookups = 0
        self.resources = self

    def get(self, *, api_version: str, kind: str) -> object:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        self.lookups += 1
        if (api_version, kind) not in self.served:
            raise ResourceNotFoundError(kind)
        return (api_version, kind)


def test_discovery_remembers_served_kinds_and_looks_again_for_missing_ones_after_a_while() -> None:
    from funcd_controller.discovery import Discovery
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    now = [0.0]
    inner = Discoverer({("apps/v1", "Deployment")})
    discovery = Discovery(inner, missing_ttl=30, clock=lambda: now[0])
    for _ in range(3):
        assert discovery.resources.get(api_version="apps/v1", kind="Deployment") == ("apps/v1", "Deployment")
        with pytest.raises(ResourceNotFoundError):
            discovery.resources.get(api_version="keda.sh/v1alpha1", kind="ScaledObject")
    assert inner.lookups == 2  # one each: a miss does not re-run discovery on every reconcile
    inner.served.add(("keda.sh/v1alpha1", "ScaledObject"))  # KEDA installed
    now[0] = 31.0
    assert discovery.resources.get(api_version="keda.sh/v1alpha1", kind="ScaledObject")
