"""The metrics plugin's per-call tallies and their flushes: before a scrape, at a worker's exit (a
SIGHUP restart), from the background thread within its interval, exact under concurrent threads; and
the one place that reaches into prometheus_client's histogram internals."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests
from funcd_metrics import DURATION_BUCKETS, MetricsPlugin
from funcd_metrics.tally import BOUNDS, Flusher, add_to_histogram
from prometheus_client import CollectorRegistry, Histogram
from werkzeug.test import Client

from functions_framework import FunctionContext, Trigger
from functions_framework.event import HTTP_TRIGGER, Event
from functions_framework.invocation import Invocation, Outcome
from functions_framework.plugins import WorkerInfo
from functions_framework.runtime_context import RuntimeContext
from functions_framework.settings import Settings
from tests.metrics_support import Scrape, scrape, scrape_until
from tests.support import write_function
from tests.test_metrics_plugin import samples


def call(
    plugin: MetricsPlugin, duration: float, reply: int | str = 200, trigger: Trigger = HTTP_TRIGGER
) -> None:
    """One call through the plugin's hooks, as the invoker runs them."""
    invocation = Invocation(RuntimeContext(plugin.context), Event(body=b"", trigger=trigger), "id")
    outcome = Outcome.refused(reply)
    outcome.duration = duration
    plugin.pre_hook(invocation)
    plugin.post_hook(invocation, outcome)


def value(plugin: MetricsPlugin, name: str, **labels: str) -> float:
    """A sample read straight from the registry: what the last flush wrote, nothing flushed now."""
    return plugin.registry.get_sample_value(name, {"function": plugin.function, **labels}) or 0.0


def test_add_to_histogram_matches_observe():
    """Fails if prometheus_client changes the histogram internals ``add_to_histogram`` writes."""
    registry = CollectorRegistry()
    h = Histogram("h", "h", ["x"], buckets=DURATION_BUCKETS, registry=registry)
    durations = [0.0, 0.001, 0.0011, 0.003, 0.7, 59.0, 60.0, 61.0, 1e9]
    for d in durations:
        h.labels("observed").observe(d)
    counts = [0] * len(BOUNDS)
    for d in durations:
        counts[next(i for i, bound in enumerate(BOUNDS) if d <= bound)] += 1
    add_to_histogram(h.labels("added"), counts, sum(durations))

    def series(x: str) -> dict[tuple[str, str | None], float]:
        return {
            (s.name, s.labels.get("le")): s.value
            for m in registry.collect()
            for s in m.samples
            if s.labels.get("x") == x and not s.name.endswith("_created")
        }

    assert series("added") == series("observed")
    assert len(series("added")) == len(BOUNDS) + 2  # the buckets, _count, _sum
    other = Histogram("o", "o", buckets=(1.0, 2.0), registry=registry)
    with pytest.raises(ValueError, match="not the plugin's"):
        add_to_histogram(other, counts, 1.0)


def test_a_scrape_flushes_the_calls_before_it():
    context = FunctionContext(name="scraped")
    plugin = MetricsPlugin(context)
    for d in (0.0005, 0.002, 0.2):
        call(plugin, d)
    call(plugin, 0.03, reply=500)
    assert value(plugin, "funcd_invocations_total", trigger="http", outcome="200") == 0  # not yet flushed

    s = samples(Client(plugin.routes()["/metrics"]).get("/metrics").get_data(as_text=True))
    fn, http = ("function", "scraped"), ("trigger", "http")
    assert s[("funcd_invocations_total", (fn, ("outcome", "200"), http))] == 3
    assert s[("funcd_invocations_total", (fn, ("outcome", "500"), http))] == 1
    assert s[("funcd_invocation_duration_seconds_bucket", (fn, ("le", "0.001"), http))] == 1
    assert s[("funcd_invocation_duration_seconds_bucket", (fn, ("le", "0.0025"), http))] == 2
    assert s[("funcd_invocation_duration_seconds_bucket", (fn, ("le", "0.25"), http))] == 4
    assert s[("funcd_invocation_duration_seconds_sum", (fn, http))] == pytest.approx(0.2325)
    assert s[("funcd_in_flight", (fn,))] == 0


def test_in_flight_is_started_minus_finished_at_the_flush():
    plugin = MetricsPlugin(FunctionContext(name="flight"))
    held = [Invocation(RuntimeContext(plugin.context), Event(body=b""), str(i)) for i in range(3)]
    for invocation in held:
        plugin.pre_hook(invocation)
    plugin.flush()
    assert value(plugin, "funcd_in_flight") == 3
    outcome = Outcome.refused(200)
    for invocation in held[:2]:
        plugin.post_hook(invocation, outcome)
    plugin.flush()
    assert value(plugin, "funcd_in_flight") == 1


def test_threads_calling_while_a_flusher_runs_lose_nothing():
    plugin = MetricsPlugin(FunctionContext(name="busy"))
    threads, calls = 8, 5000
    pubsub = Trigger("pubsub", "msg")
    flusher = Flusher(plugin._tallies, 0.001)  # flushing all the time, reading what the threads write
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        start.wait()
        for i in range(calls):
            call(
                plugin,
                0.001 * (i % 7),
                reply=200 if i % 5 else "RETRY",
                trigger=pubsub if n % 2 else HTTP_TRIGGER,
            )

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    flusher.stop()
    plugin.flush()
    half = threads // 2 * calls
    for trigger in ("http", "pubsub:msg"):
        assert value(plugin, "funcd_invocations_total", trigger=trigger, outcome="200") == half * 4 / 5
        assert value(plugin, "funcd_invocations_total", trigger=trigger, outcome="RETRY") == half / 5
        assert value(plugin, "funcd_invocation_duration_seconds_count", trigger=trigger) == half
        expected_sum = threads // 2 * sum(0.001 * (i % 7) for i in range(calls))
        assert value(plugin, "funcd_invocation_duration_seconds_sum", trigger=trigger) == pytest.approx(
            expected_sum
        )
        assert (
            value(plugin, "funcd_invocation_duration_seconds_bucket", trigger=trigger, le="0.001")
            == threads // 2 * sum(1 for i in range(calls) if i % 7 <= 1)  # 0 and 1 ms
        )
    assert value(plugin, "funcd_in_flight") == 0
    assert len(plugin._tallies.by_thread) == threads  # one tally per calling thread


def test_the_background_flush_comes_within_its_interval():
    plugin = MetricsPlugin(FunctionContext(name="timed"))  # its own registry, readable here
    plugin.flush_interval = 0.2
    plugin.background_flush = True  # as in multiprocess mode
    plugin.worker_started(WorkerInfo(os.getpid(), plugin.context, Settings()))
    try:
        for _ in range(3):
            rounds = []
            for _ in range(5):
                call(plugin, 0.001)
                began = time.monotonic()
                deadline = began + 5
                target = value(plugin, "funcd_invocation_duration_seconds_count", trigger="http") + 1
                while value(plugin, "funcd_invocation_duration_seconds_count", trigger="http") < target:
                    assert time.monotonic() < deadline, "no background flush within 5 s"
                    time.sleep(0.005)
                rounds.append(time.monotonic() - began)
            # each call showed up within one interval (plus scheduling slack on a shared machine)
            assert max(rounds) < 0.2 + 0.3, rounds
    finally:
        plugin.worker_stopping()
    assert plugin._flusher is None


def test_worker_stopping_flushes_and_stops_the_background_thread():
    plugin = MetricsPlugin(FunctionContext(name="stopping"))
    plugin.flush_interval = 3600.0  # only the stop can flush
    plugin.background_flush = True
    plugin.worker_started(WorkerInfo(os.getpid(), plugin.context, Settings()))
    flusher = plugin._flusher
    assert flusher is not None and flusher._thread.is_alive()
    for _ in range(7):
        call(plugin, 0.01)
    assert value(plugin, "funcd_invocations_total", trigger="http", outcome="200") == 0
    plugin.worker_stopping()
    assert value(plugin, "funcd_invocations_total", trigger="http", outcome="200") == 7
    assert not flusher._thread.is_alive()


# ---------------------------------------------------------------- with real worker processes

FUNCTION = """
import os
from funcd_metrics import MetricsPlugin

MetricsPlugin.flush_interval = 3600.0  # no background flush in this test: only scrapes and exits

def handler(context, event):
    return {"pid": os.getpid()}
"""

CONTEXT = """
name: lazy
metrics: {enabled: true}
"""


def post(url: str) -> requests.Response:
    return requests.post(url + "/", json={}, timeout=30)


def test_a_worker_flushes_its_own_counts_when_it_answers_a_scrape(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    server = funcd(str(folder), env={"TMPDIR": str(tmp_path)}, workers="1")  # multiprocess mode, one worker
    for n in range(1, 4):
        assert post(server.url).status_code == 200
        assert scrape(server.url).total("funcd_invocations_total", outcome="200") == n  # no wait


def test_a_restarted_worker_flushes_at_its_exit_and_nothing_is_lost(funcd, tmp_path):
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    server = funcd(str(folder), env={"TMPDIR": str(tmp_path)}, workers="2")
    scrape_until(server.url, lambda s: s.total("funcd_cold_start_seconds_count") == 2)
    pids = [post(server.url).json()["pid"] for _ in range(40)]  # new connections: both workers serve
    assert len(set(pids)) == 2, f"expected both workers to serve, got {set(pids)}"

    os.kill(server.proc.pid, signal.SIGHUP)  # every worker restarts; none has flushed in the background

    def restarted(s: Scrape) -> bool:
        return s.total("funcd_cold_start_seconds_count") == 4

    s = scrape_until(server.url, restarted, timeout=40)
    # the new workers counted nothing: all 40 came from the old workers' exit flushes, via the archive
    s = scrape_until(
        server.url, lambda s: restarted(s) and s.total("funcd_invocations_total") >= 40, timeout=10
    )
    assert s.total("funcd_invocations_total", outcome="200") == 40, s.text
    assert s.total("funcd_invocation_duration_seconds_count") == 40
    assert s.total("funcd_in_flight") == 0
    assert server.stop() == 0
