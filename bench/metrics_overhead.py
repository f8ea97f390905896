"""Per-call cost of the metrics plugin: a micro-benchmark, run by hand (not part of bench/run.py).

    .venv/bin/python bench/metrics_overhead.py [--calls 100000]

For each prometheus_client mode (``single``: values in memory, as without a supervisor; ``multi``:
values in the memory-mapped files of a multiprocess directory, as under ``funcd run``) it runs, in a
fresh interpreter, the same HTTP event through ``Invoker.invoke`` with no plugin and with the
metrics plugin, and the plugin's ``pre_hook`` + ``post_hook`` alone; best of 5 rounds of CPU time
(``time.process_time``), in nanoseconds per call. The plugin's figures include one flush per round
(its tallies written into prometheus_client), as a scrape or the background flush would do.

``previous`` is the plugin's per-call work before the tallies (kept here to compare in the same run):
five prometheus_client value writes per call (in flight up and down, the histogram's sum and
bucket, the counter).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class PreviousHooks:
    """The plugin's hooks as they were: every call writes prometheus_client values."""

    name = "metrics"

    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin
        self.in_flight = plugin.families.in_flight.labels(plugin.function)
        self.series: dict[tuple[str, str], tuple[Any, dict[Any, Any]]] = {}

    def pre_hook(self, invocation: Any) -> None:
        invocation.state[self.name] = True
        self.in_flight.inc()

    def post_hook(self, invocation: Any, outcome: Any) -> None:
        if invocation.state.pop(self.name, False):
            self.in_flight.dec()
        trigger = invocation.event.trigger
        series = self.series.get((trigger.kind, trigger.name))
        if series is None:
            families, label = self.plugin.families, f"previous-{trigger.kind}:{trigger.name}"
            series = self.series[trigger.kind, trigger.name] = (
                families.duration.labels(self.plugin.function, label),
                {},
            )
        duration, outcomes = series
        duration.observe(outcome.duration)
        counter = outcomes.get(outcome.reply)
        if counter is None:
            counter = outcomes[outcome.reply] = self.plugin.families.invocations.labels(
                self.plugin.function, "previous", str(outcome.reply)
            )
        counter.inc()


def measure(mode: str, calls: int) -> dict[str, float]:
    from funcd_metrics import MetricsPlugin

    from functions_framework import FunctionContext
    from functions_framework.event import HTTP_TRIGGER, Event
    from functions_framework.invocation import Invocation, Invoker, Outcome
    from functions_framework.plugins import Hooks
    from functions_framework.runtime_context import RuntimeContext
    from functions_framework.signatures import ADAPTERS

    if mode == "multi":
        MetricsPlugin.supervisor_setup(None)  # type: ignore[arg-type]  # the directory, as the supervisor makes it

    def handler(context: object, event: object) -> str:
        return "ok"

    context = FunctionContext(name="bench")
    adapter = ADAPTERS["funcd"](handler, None)
    rctx = RuntimeContext(context)
    plugin = MetricsPlugin(context)
    previous = PreviousHooks(plugin)
    bare = Invoker(adapter, rctx, Hooks())
    metered = Invoker(adapter, rctx, Hooks(pre=(plugin,), post=(plugin,), plugins=(plugin,)))
    metered_before = Invoker(adapter, rctx, Hooks(pre=(previous,), post=(previous,), plugins=()))
    event = Event(body=b"", trigger=HTTP_TRIGGER, method="POST", path="/")

    def reply(invocation: Invocation, outcome: Outcome) -> int:
        outcome.reply = 200
        return 200

    def run_invoke(invoker: Invoker, flush: Any = None) -> float:
        invoke = invoker.invoke
        started = time.process_time_ns()
        for _ in range(calls):
            invoke(event, "id", reply)
        if flush is not None:
            flush()
        return (time.process_time_ns() - started) / calls

    invocation = Invocation(rctx, event, "id")
    outcome = Outcome.refused(200)

    def run_hooks(hooks: Any, flush: Any = None) -> float:
        pre, post = hooks.pre_hook, hooks.post_hook
        durations = [0.0005 * (i % 64) for i in range(calls)]  # spread over the buckets
        started = time.process_time_ns()
        for duration in durations:
            outcome.duration = duration
            pre(invocation)
            post(invocation, outcome)
        if flush is not None:
            flush()
        return (time.process_time_ns() - started) / calls

    runs = {
        "invoke, no plugin": lambda: run_invoke(bare),
        "invoke, metrics plugin": lambda: run_invoke(metered, plugin.flush),
        "invoke, previous plugin": lambda: run_invoke(metered_before),
        "hooks": lambda: run_hooks(plugin, plugin.flush),
        "hooks, previous": lambda: run_hooks(previous),
    }
    best = dict.fromkeys(runs, 1e18)
    for _ in range(5):
        for label, run in runs.items():
            best[label] = min(best[label], run())
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--mode", choices=("single", "multi"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.calls)))
        return 0
    print(
        f"{'mode':8} {'invoke, no plugin':>18} {'+ metrics':>10} {'+ previous':>11}"
        f" {'hooks':>9} {'hooks, previous':>16}"
    )
    for mode in ("single", "multi"):
        out = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--calls", str(args.calls)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        bare = r["invoke, no plugin"]
        print(
            f"{mode:8} {bare:15.0f} ns {r['invoke, metrics plugin'] - bare:+7.0f} ns"
            f" {r['invoke, previous plugin'] - bare:+8.0f} ns"
            f" {r['hooks']:6.0f} ns {r['hooks, previous']:13.0f} ns"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
