"""Per-call cost of the metrics plugin: a micro-benchmark, run by hand (not part of bench/run.py).

    .venv/bin/python bench/metrics_overhead.py [--calls 200000]

For each prometheus_client mode (``single``: values in memory, as without a supervisor; ``multi``:
values in the memory-mapped files of a multiprocess directory, as under ``funcd run``) it runs, in a
fresh interpreter, the same HTTP event through ``Invoker.invoke`` with no plugin and with the
metrics plugin, and the plugin's ``pre_hook`` + ``post_hook`` alone; best of 5 rounds, in
nanoseconds per call.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
    bare = Invoker(adapter, rctx, Hooks())
    metered = Invoker(adapter, rctx, Hooks(pre=(plugin,), post=(plugin,), plugins=(plugin,)))
    event = Event(body=b"", trigger=HTTP_TRIGGER, method="POST", path="/")

    def reply(invocation: Invocation, outcome: Outcome) -> int:
        outcome.reply = 200
        return 200

    def run_invoke(invoker: Invoker) -> float:
        invoke = invoker.invoke
        started = time.perf_counter_ns()
        for _ in range(calls):
            invoke(event, "id", reply)
        return (time.perf_counter_ns() - started) / calls

    invocation = Invocation(rctx, event, "id")
    outcome = Outcome.refused(200)
    outcome.duration = 0.0042

    def run_hooks() -> float:
        pre, post = plugin.pre_hook, plugin.post_hook
        started = time.perf_counter_ns()
        for _ in range(calls):
            pre(invocation)
            post(invocation, outcome)
        return (time.perf_counter_ns() - started) / calls

    best = {"invoke, no plugin": 1e18, "invoke, metrics plugin": 1e18, "pre_hook + post_hook": 1e18}
    for _ in range(5):
        best["invoke, no plugin"] = min(best["invoke, no plugin"], run_invoke(bare))
        best["invoke, metrics plugin"] = min(best["invoke, metrics plugin"], run_invoke(metered))
        best["pre_hook + post_hook"] = min(best["pre_hook + post_hook"], run_hooks())
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--mode", choices=("single", "multi"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.calls)))
        return 0
    print(
        f"{'mode':8} {'invoke, no plugin':>18} {'invoke + metrics':>17} {'overhead':>9} {'hooks alone':>12}"
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
        bare, metered, hooks = r["invoke, no plugin"], r["invoke, metrics plugin"], r["pre_hook + post_hook"]
        print(f"{mode:8} {bare:15.0f} ns {metered:14.0f} ns {metered - bare:6.0f} ns {hooks:9.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
