"""A real Prometheus scrapes a function served by two workers under a paced load, and its query API
agrees with the requests the test sent.

The arithmetic. The test sends ``RATE`` requests per second for ``DURATION`` seconds, each on a new
connection (so both workers serve), and notes when each reply arrived. Prometheus scrapes every
second. Then:

1. The last scraped value of ``sum(funcd_invocations_total)`` is exactly the number of requests sent
   (every worker's count, summed by the scrape, whichever worker answers it).
2. ``sum(rate(funcd_invocations_total[WINDOW]))`` evaluated at ``t`` (a time inside the load, with the
   whole window inside it too) is Prometheus's per-second increase over the samples in
   ``(t - WINDOW, t]``, extrapolated to the window's edges. The requests that actually completed in
   that window, counted by the test, divided by ``WINDOW`` is the expected rate; the two must agree
   within 10 %. (At 40 requests/s over 10 s the window holds ~400 requests; a one-second scrape
   interval makes the sampled part ~9 s of it, and pacing keeps the rate steady, so the edges cost
   well under 10 %.)

Waits are readiness-driven: both workers started, the target up, and Prometheus holding the final
count before anything is asserted.
"""

from __future__ import annotations

import time

import requests

from tests.e2e.stack_procs import wait_until
from tests.metrics_support import scrape_until
from tests.support import write_function

NAME = "metered"
FUNCTION = """
import os

def handler(context, event):
    return {"pid": os.getpid()}
"""
CONTEXT = f"""
name: {NAME}
metrics: {{enabled: true}}
"""

RATE = 40.0
"""Requests per second sent."""
DURATION = 16.0
"""Seconds of load."""
WINDOW = 10
"""Seconds: the range of rate(), evaluated inside the load."""


def test_prometheus_rate_matches_the_requests_sent(funcd, tmp_path, prometheus):
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    server = funcd(str(folder), env={"TMPDIR": str(tmp_path)}, workers="2")
    scrape_until(server.url, lambda s: s.total("funcd_cold_start_seconds_count") == 2)  # both workers up
    prom = prometheus([f"127.0.0.1:{server.port}"], scrape_interval=1.0)
    prom.wait_target_up()

    total = f'sum(funcd_invocations_total{{function="{NAME}"}})'
    count = int(RATE * DURATION)
    completed: list[float] = []
    pids = set()
    start = time.time()
    for i in range(count):
        delay = start + i / RATE - time.time()
        if delay > 0:
            time.sleep(delay)  # pacing the load (not waiting for a state)
        reply = requests.post(server.url + "/", json={"i": i}, timeout=30)
        assert reply.status_code == 200, reply.text
        completed.append(time.time())
        pids.add(reply.json()["pid"])
    assert len(pids) == 2, f"expected both workers to serve, got {pids}"

    # 1. Prometheus holds the final count (readiness), and it is exact.
    wait_until(
        lambda: prom.value(total) == count, f"Prometheus to scrape {total} == {count}", 30, [prom.proc]
    )

    # 2. rate() inside the load against the requests completed in the same window.
    at = start + DURATION * 0.8  # the window (at - 10 s, at] lies within the 16 s of load
    measured = prom.value(f'sum(rate(funcd_invocations_total{{function="{NAME}"}}[{WINDOW}s]))', at=at)
    sent = sum(1 for t in completed if at - WINDOW < t <= at)
    expected = sent / WINDOW
    assert measured is not None, f"no rate at {at}"
    print(f"rate over {WINDOW}s: Prometheus {measured:.3f}/s, sent {sent} ({expected:.3f}/s)")
    assert abs(measured - expected) <= 0.10 * expected, (
        f"rate over [{at - WINDOW:.3f}, {at:.3f}]: Prometheus says {measured:.2f}/s, "
        f"the test sent {sent} requests in that window ({expected:.2f}/s)"
    )

    # The duration histogram counted every call, and nothing is left in flight.
    histogram = f'sum(funcd_invocation_duration_seconds_count{{function="{NAME}"}})'
    assert prom.value(histogram) == count
    assert prom.value(f'sum(funcd_in_flight{{function="{NAME}"}})') == 0
    buckets = f'funcd_invocation_duration_seconds_bucket{{function="{NAME}"}}'
    p99 = prom.value(f"histogram_quantile(0.99, sum by (le) (rate({buckets}[{WINDOW}s])))", at=at)
    assert p99 is not None and 0 < p99 <= 60
