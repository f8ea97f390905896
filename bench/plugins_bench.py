"""Plugins benchmark (observability issue): what tracing and metrics cost, in the same run.

HTTP, under wrk, the servers taking turns for ``--plugins-rounds`` rounds (best round reported):

- ``bench/peers/funcd_hello`` with no plugins;
- the same function with tracing (OTLP/gRPC to a local Jaeger, every call sampled) and metrics on;
- the same with tracing exporting to a dead collector (a port nothing listens on), metrics on;
- Google's functions-framework at its best WORKERS x THREADS, picked by a short exploration.

Async, end to end through real daprd + Redis streams (``dapr_bench.end_to_end``): ``bench/peers/dapr_fn``
with plugins off and on, over both app protocols.

After each plugins-on load the bench checks that the plugins really ran: Jaeger lists the function's
service, and ``/metrics`` counts at least as many calls as wrk completed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import common
import dapr_bench
import http_bench
from common import CORES, ROOT, log

NAME = "plugins"
DESCRIPTION = "tracing + metrics on vs off vs Google's best (HTTP), on vs off through daprd (async)"

HELLO = http_bench.PEERS / "funcd_hello"
TARGETS = (
    ("HTTP, plugins on >= 0.75x plugins off", "http_on_vs_off", 0.75),
    ("HTTP, plugins on >= 3x Google's best configuration", "http_on_vs_gcf", 3.0),
    ("async (gRPC app protocol), plugins on >= 0.8x plugins off", "async_grpc_on_vs_off", 0.8),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("plugins")
    g.add_argument("--plugins-rounds", type=int, default=3, help="HTTP rounds, best reported (3)")
    g.add_argument("--plugins-events", type=int, default=10000, help="events per async run (10000)")
    g.add_argument("--plugins-e2e-rounds", type=int, default=2, help="async rounds, best reported (2)")
    g.add_argument("--plugins-no-async", action="store_true", help="skip the async part")
    g.add_argument(
        "--plugins-sampling",
        type=float,
        default=0.1,
        help="tracing.samplingRate of the plugins-on functions (0.1); 1 is measured beside it over HTTP",
    )


def plugins_yaml(endpoint: str, sampling: float) -> str:
    return (
        "tracing:\n"
        "  enabled: true\n"
        f"  samplingRate: {sampling:g}\n"
        "  provider:\n"
        "    name: opentelemetry\n"
        f"    exporter: {{name: otlp, endpoint: '{endpoint}', protocol: grpc}}\n"
        "metrics: {enabled: true}\n"
    )


def variant(src: Path, dest: Path, name: str, extra_yaml: str) -> Path:
    """A copy of the function in ``src`` whose function.yaml adds ``extra_yaml``."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    yaml = dest / "function.yaml"
    base = yaml.read_text() if yaml.exists() else "triggers:\n  http:\n    port: 8080\n"
    lines = [x for x in base.splitlines() if not x.startswith("name:")]
    yaml.write_text(f"name: {name}\n" + "\n".join(lines) + "\n" + extra_yaml)
    return dest


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def metrics_count(port: int) -> float:
    """funcd_invocations_total summed over every label set, from a real scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "funcd_invocations"
        for s in fam.samples
        if s.name == "funcd_invocations_total"
    )


def load_checked(
    spec: common.ServerSpec, args: argparse.Namespace, logdir: Path, jaeger: Any, service: str
) -> dict[str, Any]:
    """One wrk load; for a plugins-on server, proof that its plugins ran."""
    with common.running(spec, logdir, http_bench.PROBE) as server:
        common.check(server.port, http_bench.PROBE)
        if args.warmup > 0:
            common.run_wrk(server.port, args.warmup, args.connections, args.wrk_threads)
        res = common.run_wrk(server.port, args.duration, args.connections, args.wrk_threads, server.pid)
        res.pop("raw", None)
        if service:
            counted = metrics_count(server.port)
            deadline = time.monotonic() + 5.0  # other workers' counts arrive within their flush interval
            while counted < res["requests"] and time.monotonic() < deadline:
                time.sleep(0.1)
                counted = metrics_count(server.port)
            res["metrics_invocations_total"] = counted
            if counted < res["requests"]:
                raise RuntimeError(f"{spec.key}: /metrics counts {counted} calls, wrk made {res['requests']}")
            t0 = time.perf_counter()
            res["exit_code"] = server.stop()
            res["stop_s"] = round(time.perf_counter() - t0, 3)  # SIGTERM -> exit, spans flushed
            if jaeger is not None:
                services = get_json(f"{jaeger.query_url}/api/services").get("data") or []
                if service not in services:
                    raise RuntimeError(f"{spec.key}: Jaeger has no service {service!r} ({services})")
        log(f"  {spec.key}: {res['rps']:.0f} req/s, p99 {res.get('p99_ms', float('nan')):.2f} ms")
    return res


def gcf_best(args: argparse.Namespace, logdir: Path) -> tuple[common.ServerSpec, dict[str, Any]]:
    """Google's framework: WORKERS in {1, cores} x THREADS in {1, 2, 4, 8}, 3 s each; the fastest."""
    quick = argparse.Namespace(**{**vars(args), "warmup": 0})
    seen: dict[str, float] = {}
    specs = {}
    for workers in sorted({1, CORES}):
        for threads in (1, 2, 4, 8):
            spec = http_bench.gcf_spec(workers, threads)
            specs[spec.key] = spec
            seen[spec.key] = http_bench.load(spec, quick, logdir, 3.0, with_memory=False)["rps"]
    best = max(seen, key=lambda k: seen[k])
    return specs[best], {"explored_rps": seen, "best": best}


def http_part(args: argparse.Namespace, logdir: Path, jaeger: Any) -> dict[str, Any]:
    work = logdir / "functions"
    rate = args.plugins_sampling
    otlp = jaeger.otlp_grpc_endpoint
    on = variant(HELLO, work / "hello-plugins-on", "hello-on", plugins_yaml(otlp, rate))
    every = variant(HELLO, work / "hello-every-call", "hello-all", plugins_yaml(otlp, 1))
    dead_otlp = f"127.0.0.1:{common.free_port()}"
    dead = variant(HELLO, work / "hello-dead-collector", "hello-dead", plugins_yaml(dead_otlp, rate))
    off = variant(HELLO, work / "hello-plugins-off", "hello-off", "")
    gcf, exploration = gcf_best(args, logdir)
    servers = [
        (http_bench.funcd_spec("off", "funcd, no plugins", off), ""),
        (
            http_bench.funcd_spec("on", f"funcd, tracing (to Jaeger, sampling {rate:g}) + metrics", on),
            "hello-on",
        ),
        (
            http_bench.funcd_spec("all", "funcd, tracing (to Jaeger, every call) + metrics", every),
            "hello-all",
        ),
        (
            http_bench.funcd_spec(
                "dead", f"funcd, tracing (sampling {rate:g}) to a dead collector + metrics", dead
            ),
            "hello-dead",
        ),
        (gcf, ""),
    ]
    rounds: dict[str, list[dict[str, Any]]] = {spec.key: [] for spec, _ in servers}
    for rnd in range(1, args.plugins_rounds + 1):
        log(f"HTTP round {rnd}/{args.plugins_rounds}")
        for spec, service in servers:
            traced = jaeger if service in ("hello-on", "hello-all") else None
            rounds[spec.key].append(load_checked(spec, args, logdir, traced, service))
    out: dict[str, Any] = {"gcf_exploration": exploration, "servers": {}}
    for spec, _ in servers:
        runs = rounds[spec.key]
        best = max(runs, key=lambda r: r["rps"])
        out["servers"][spec.key] = {
            "label": spec.label,
            "command": http_bench.command_line(spec),
            "rps_all_rounds": [r["rps"] for r in runs],
            "best": best,
        }
    return out


def async_part(args: argparse.Namespace, logdir: Path, jaeger: Any) -> dict[str, Any]:
    work = logdir / "functions"
    yaml = plugins_yaml(jaeger.otlp_grpc_endpoint, args.plugins_sampling)
    on = variant(dapr_bench.FN, work / "dapr-plugins-on", "dapr-on", yaml)
    specs = [
        dapr_bench.Spec("grpc-off", "funcd gRPC, no plugins", "funcd", workers=CORES),
        dapr_bench.Spec("grpc-on", "funcd gRPC, tracing + metrics", "funcd", workers=CORES, folder=on),
        dapr_bench.Spec("http-off", "funcd HTTP, no plugins", "funcd-http", workers=CORES),
        dapr_bench.Spec("http-on", "funcd HTTP, tracing + metrics", "funcd-http", workers=CORES, folder=on),
    ]
    dargs = argparse.Namespace(
        **{
            **vars(args),
            "dapr_events": args.plugins_events,
            "dapr_e2e_rounds": args.plugins_e2e_rounds,
            "dapr_e2e_concurrency": 10,
        }
    )
    return dapr_bench.end_to_end(dargs, logdir, specs)


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.e2e.stack_jaeger import start_jaeger

    logdir = common.make_logdir()
    machine = common.machine_info()
    log(f"machine: {machine['cores']} cores, load average {machine['loadavg_start']}; logs in {logdir}")
    http_bench.ensure_gcf_venv()
    stack = common.testbin()
    jaeger = start_jaeger(stack.binary("jaeger"), stack.version("jaeger"), logdir / "jaeger")
    result: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine,
        "jaeger": stack.version("jaeger"),
        "settings": f"{args.duration:g} s, {args.connections} connections, {args.plugins_rounds} rounds",
        "sampling": args.plugins_sampling,
    }
    ok = False
    try:
        result["http"] = http_part(args, logdir, jaeger)
        if not args.plugins_no_async:
            result["async"] = async_part(args, logdir, jaeger)
        ok = True
    finally:
        jaeger.stop()
        if not ok:
            log(f"logs kept in {logdir}")
    srv = result["http"]["servers"]
    gcf_key = result["http"]["gcf_exploration"]["best"]
    figures = {
        "http_on_vs_off": ratio(srv["on"]["best"]["rps"], srv["off"]["best"]["rps"]),
        "http_on_vs_gcf": ratio(srv["on"]["best"]["rps"], srv[gcf_key]["best"]["rps"]),
        "http_dead_vs_off": ratio(srv["dead"]["best"]["rps"], srv["off"]["best"]["rps"]),
        "http_every_call_vs_off": ratio(srv["all"]["best"]["rps"], srv["off"]["best"]["rps"]),
    }
    if "async" in result:
        subs = result["async"]["subscribers"]
        for proto in ("grpc", "http"):
            figures[f"async_{proto}_on_vs_off"] = ratio(
                subs[f"{proto}-on"]["best"]["events_per_s"], subs[f"{proto}-off"]["best"]["events_per_s"]
            )
    result["figures"] = figures
    result["targets"] = [
        {"target": text, "ratio": figures[key], "limit": limit, "pass": figures[key] >= limit}
        for text, key, limit in TARGETS
        if key in figures
    ]
    machine["loadavg_end"] = common.loadavg()
    if ok:
        shutil.rmtree(logdir, ignore_errors=True)
    return result


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Run on {m['cores']} cores (load average at start {m['loadavg_start']}), Jaeger {r['jaeger']}, "
        f"tracing.samplingRate {r['sampling']:g} for the plugins-on rows; "
        f"`.venv/bin/python bench/run.py --only plugins --plugins-sampling {r['sampling']:g}`.",
        "",
        common.md_table(
            ["target", "ratio", "limit", "pass"],
            [[t["target"], t["ratio"], t["limit"], "yes" if t["pass"] else "NO"] for t in r["targets"]],
        ),
        "",
        f"HTTP: the hello request under wrk ({r['settings']}), best of rounds:",
        "",
        common.md_table(
            ["server", "req/s (best)", "all rounds", "p99 ms"],
            [
                [
                    s["label"],
                    f"{s['best']['rps']:,.0f}",
                    ", ".join(f"{x:,.0f}" for x in s["rps_all_rounds"]),
                    s["best"].get("p99_ms", ""),
                ]
                for s in r["http"]["servers"].values()
            ],
        ),
        "",
        f"Tracing every call (sampling 1) against no plugins: {r['figures']['http_every_call_vs_off']}x. "
        f"Dead collector against no plugins: {r['figures']['http_dead_vs_off']}x; SIGTERM to exit "
        f"(spans flushed) {r['http']['servers']['on']['best'].get('stop_s')} s with Jaeger, "
        f"{r['http']['servers']['dead']['best'].get('stop_s')} s with the dead collector.",
    ]
    if "async" in r:
        subs = r["async"]["subscribers"]
        lines += [
            "",
            f"Async, end to end through daprd + Redis ({r['async']['events']} events, best of rounds):",
            "",
            common.md_table(
                ["subscriber", "events/s (best)", "all rounds"],
                [
                    [
                        s["label"],
                        f"{s['best']['events_per_s']:,.0f}",
                        ", ".join(f"{x:,.0f}" for x in s["events_per_s_all_rounds"]),
                    ]
                    for s in subs.values()
                ],
            ),
        ]
    return "\n".join(lines)
