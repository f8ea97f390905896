"""Async benchmark (issue 11): subscribers end to end through one daprd build and one Redis, in one run.

For each handler (tiny; CPU-bound, a calibrated busy loop of about ``--async-spin-ms``) and each
subscriber (bench/async_peers.py: funcd over gRPC and HTTP with 1 and 2 workers, funcd bulk and batch,
the bare Dapr Python SDK App, OpenFunction's Python framework, a no-op Go app on the Dapr Go SDK):

1. throughput: ``--async-events`` events sit in the Redis stream (published once, before any
   subscriber, through a publisher-only daprd's bulk-publish API); the consumer group is reset to the
   stream's start, the subscriber and then its daprd start, and events/s is counted from the first
   handled event to the last (every handler appends a 16-byte record per event to a file);
2. latency: then ``--async-latency-events`` events are published one by one at
   ``--async-latency-rate`` per second, each stamped with its publish time (``t``, ns, in the data);
   the handler records now - t. p50 and p99 of those, then the paced entries are deleted from the
   stream so that the next subscriber sees the same stream.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import sys
import time
from typing import Any

import async_peers
import common
import dapr_bench
from async_peers import OFN_REQUIREMENTS, OFN_VENV, Peer
from common import CORES, ROOT, log

NAME = "async"
DESCRIPTION = "async end to end through daprd + Redis: funcd vs the Dapr App, OpenFunction and a Go ceiling"
TOPIC, PUBSUB, GROUP = "bench", "pubsub", "funcd-async-bench"
NON_BULK = ("funcd-grpc-w1", "funcd-grpc-w2", "funcd-http-w1", "funcd-http-w2")
BULK = ("funcd-bulk-grpc", "funcd-batch-grpc", "funcd-bulk-http", "funcd-batch-http")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("async")
    g.add_argument("--async-events", type=int, default=20000, help="events per throughput run (20000)")
    g.add_argument(
        "--async-rounds", type=int, default=2, help="rounds, subscribers taking turns, best shown (2)"
    )
    g.add_argument("--async-spin-ms", type=float, default=1.0, help="CPU-bound handler's work in ms (1.0)")
    g.add_argument("--async-latency-events", type=int, default=1000, help="paced events for latency (1000)")
    g.add_argument(
        "--async-latency-rate", type=float, default=200.0, help="paced publish rate, events/s (200)"
    )
    g.add_argument(
        "--async-bulk-concurrency",
        type=int,
        default=100,
        help="pubsub.redis concurrency for the bulk rows' daprd (100: a bulk holds at most this many)",
    )
    g.add_argument("--async-peers", default="", help="comma-separated subscriber keys (default: all)")
    g.add_argument(
        "--async-handlers", default="tiny,cpu", help="handlers to run: tiny, cpu or both (tiny,cpu)"
    )
    g.add_argument(
        "--async-quick",
        action="store_true",
        help="a smoke run (about 1-2 min): 1 round, 2000 events, 100 paced events",
    )


# ---------------------------------------------------------------- one subscriber


def publish_paced(conn: http.client.HTTPConnection, m: int, rate: float) -> float:
    """Publish ``m`` events stamped with their publish time, at ``rate``/s; returns the achieved rate."""
    t0 = time.perf_counter()
    for i in range(m):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = json.dumps({"n": i, "t": time.time_ns()}).encode()
        conn.request(
            "POST", f"/v1.0/publish/{PUBSUB}/{TOPIC}", body=body, headers={"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        resp.read()
        if resp.status not in (200, 204):
            raise RuntimeError(f"publish {i}: HTTP {resp.status}")
    return m / (time.perf_counter() - t0)


def pct(values: list[int], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))] / 1000, 2)


def consume(ctx: dict[str, Any], peer: Peer, handler: str, rnd: int) -> dict[str, Any]:
    """One subscriber, one handler: drain the preloaded stream, then the paced latency phase."""
    redis, factory, args = ctx["redis"], ctx["factory"], ctx["args"]
    n, m = ctx["events"], ctx["latency_events"]
    with contextlib.suppress(Exception):
        redis.command("XGROUP", "DESTROY", TOPIC, GROUP)
    redis.command("XGROUP", "CREATE", TOPIC, GROUP, "0")
    count = ctx["work"] / f"count-{peer.key}-{handler}-{rnd}"
    count.unlink(missing_ok=True)
    env = {
        "BENCH_COUNT_FILE": str(count),
        "BENCH_SPIN": str(ctx["spin"] if handler == "cpu" else 0),
        "BENCH_SPIN_MS": str(args.async_spin_ms if handler == "cpu" else 0),
    }
    svc = async_peers.Service(peer, ctx["logdir"], env=env).start()
    sidecar = None
    try:
        try:
            svc.wait_ready(timeout=40)
        except RuntimeError as exc:
            return {"skipped": first_error(str(exc))}
        if peer.bulk:
            why = async_peers.bulk_refusal(svc)
            if why:
                return {"skipped": why}
        base = async_peers.count_records(count)  # the readiness call was counted
        sidecar = factory(
            svc.port,
            resources=ctx["bulk_resources"] if peer.bulk else ctx["resources"],
            app_protocol=peer.protocol,
            app_id=f"async-{peer.key}-{handler}-{rnd}",
            wait=None,
            # As funcd runs its own daprds for the HTTP app protocol: daprd's HTTP app channel can
            # acknowledge events it never delivered when it calls the app concurrently.
            extra_args=["--app-max-concurrency", "1"] if peer.protocol == "http" else [],
        )
        win = dapr_bench.CpuWindow({"subscriber": svc.pid, "daprd": sidecar.pid, "redis": redis.pid})
        deadline = time.perf_counter() + 60 + n / 20
        first_n, t_first, got = 0, 0.0, 0
        while True:
            got = async_peers.count_records(count) - base
            now = time.perf_counter()
            if got and not first_n:
                first_n, t_first = got, now
                win.start()
            if got >= n:
                break
            if not sidecar.proc.alive() or now > deadline:
                raise RuntimeError(
                    f"{peer.key}: {got}/{n} events handled; "
                    f"daprd {'alive' if sidecar.proc.alive() else 'exited'}"
                    f"\n{sidecar.log_tail(20)}\n{svc.log_tail()}"
                )
            time.sleep(0.005)
        t_last = time.perf_counter()
        cpu = win.stop()
        # Latency: paced, stamped events through the same daprd and subscriber.
        conn = http.client.HTTPConnection("127.0.0.1", ctx["publisher"].http_port, timeout=30)
        achieved = publish_paced(conn, m, args.async_latency_rate)
        conn.close()
        deadline = time.perf_counter() + 30 + m / 20
        while async_peers.count_records(count) - base < n + m and time.perf_counter() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        total = async_peers.count_records(count) - base
        lats = async_peers.latencies_us(count, base + n)
    finally:
        if sidecar is not None:
            sidecar.stop()
        svc.stop()
        # Drop the paced entries: every subscriber sees the same preloaded stream.
        extra = redis.command("XRANGE", TOPIC, "(" + ctx["last_id"], "+")
        if extra:
            redis.command("XDEL", TOPIC, *[e[0] for e in extra])
    handled = n - first_n
    seconds = t_last - t_first
    rate = handled / seconds if seconds > 0 else float("nan")
    capacity = cpu["elapsed_s"] * CORES
    res: dict[str, Any] = {
        "events_per_s": round(rate, 1),
        "seconds": round(seconds, 3),
        "handled_total": total,
        "extra_or_missing": total - n - m,
        "latency": {
            "events": len(lats),
            "publish_rate": round(achieved, 1),
            "p50_ms": pct(lats, 50),
            "p99_ms": pct(lats, 99),
            "max_ms": round(max(lats) / 1000, 2) if lats else None,
        },
        "cpu": {
            k: {
                "pct": round(100 * cpu[k]["cpu_s"] / capacity, 1),
                "us_per_event": round(1e6 * cpu[k]["cpu_s"] / handled, 1) if handled else None,
                "per_process_pct": [round(100 * x / capacity, 1) for x in cpu[k]["per_process_s"]],
            }
            for k in ("subscriber", "daprd", "redis")
        },
    }
    known = sum(cpu[k]["cpu_s"] for k in ("subscriber", "daprd", "redis"))
    res["cpu"]["other_pct"] = round(100 * max(0.0, cpu["busy_s"] - known) / capacity, 1)
    c = res["cpu"]
    log(
        f"  {peer.key} [{handler}]: {rate:,.0f} events/s; p50 {res['latency']['p50_ms']} ms p99 "
        f"{res['latency']['p99_ms']} ms at {achieved:.0f}/s; "
        f"subscriber {c['subscriber']['per_process_pct']}%, "
        f"daprd {c['daprd']['us_per_event']} us/event; other {c['other_pct']}%; "
        f"extra {res['extra_or_missing']}"
    )
    return res


def first_error(text: str) -> str:
    """The most telling line of a failed start: the last exception line of the subscriber's log."""
    lines = [x.strip() for x in text.replace(str(ROOT) + "/", "").splitlines() if x.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line or "Exception" in line:
            return f"{lines[0][:120]} ... {line[:300]}"
    return " | ".join(lines[-3:])[:400]


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.e2e.stack_dapr import DaprdFactory, component
    from tests.e2e.stack_redis import start_redis

    if args.async_quick:
        args.async_events, args.async_rounds, args.async_latency_events = 2000, 1, 100
    logdir = common.make_logdir()
    machine = common.machine_info()
    log(f"machine: {CORES} cores, load average {machine['loadavg_start']}; logs in {logdir}")
    ofn = common.ensure_venv(OFN_VENV, OFN_REQUIREMENTS, "import functions_framework.runner")
    go_bin, go_note = async_peers.ensure_go_peer()
    spin = async_peers.spin_iterations(args.async_spin_ms)
    spin_ms = round(1000 * async_peers.check_cost(spin), 3)
    log(f"CPU-bound handler: {spin} iterations of async_work.spin, {spin_ms} ms here now")
    wanted = {k for k in args.async_peers.split(",") if k}
    rows = [
        p for p in async_peers.peers(go_bin, go_note, ofn.get("error", "")) if not wanted or p.key in wanted
    ]
    handlers = [h for h in args.async_handlers.split(",") if h]

    stack = common.testbin()
    daprd_bin, redis_bin = stack.binary("daprd"), stack.binary("redis-server")
    work = logdir / "e2e"
    (work / "nr").mkdir(parents=True)
    redis = start_redis(redis_bin, work / "redis")
    factory = DaprdFactory(daprd_bin, stack.version("daprd"), work / "daprd", work / "nr")
    meta = {
        "redisHost": redis.address,
        "redisPassword": "",
        "consumerID": GROUP,
        "concurrency": 10,
        "queueDepth": 100,
    }
    resources = [component(PUBSUB, "pubsub.redis", meta)]
    # daprd fills a bulk from the component's deliveries in flight: pubsub.redis has at most
    # ``concurrency`` of them, so bulks hold at most that many events (10: 1,000 events/s at a 10 ms await).
    bulk_meta = {**meta, "concurrency": args.async_bulk_concurrency}
    bulk_resources = [component(PUBSUB, "pubsub.redis", bulk_meta)]
    out: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine,
        "settings": {
            "events": args.async_events,
            "rounds": args.async_rounds,
            "latency_events": args.async_latency_events,
            "latency_rate": args.async_latency_rate,
            "spin_ms": args.async_spin_ms,
            "spin_iterations": spin,
            "spin_measured_ms": spin_ms,
            "component": {k: v for k, v in meta.items() if k != "redisHost"},
            "bulk_component_concurrency": args.async_bulk_concurrency,
        },
        "versions": {
            "local": dapr_bench.versions(),
            "ofn_venv": ofn,
            "go_sdk": async_peers.go_sdk_version(),
            "daprd": stack.version("daprd"),
            "redis": redis.version,
        },
        "command": command_line(args),
        "handlers": {
            h: {p.key: {"label": p.label, "command": p.command(), "rounds": []} for p in rows}
            for h in handlers
        },
    }
    skipped: dict[str, str] = {}
    for p in rows:
        if p.kind == "ofn" and ofn.get("error"):
            skipped[p.key] = f"its virtualenv does not import: {ofn['error']}"
        if p.kind == "go" and go_bin is None:
            skipped[p.key] = go_note
    try:
        publisher = factory(None, resources=resources, app_id="async-publisher", wait="outbound")
        out["publish"] = preload(publisher, redis, args.async_events)
        ctx = {
            "redis": redis,
            "factory": factory,
            "args": args,
            "events": args.async_events,
            "latency_events": args.async_latency_events,
            "work": work,
            "logdir": logdir,
            "resources": resources,
            "bulk_resources": bulk_resources,
            "publisher": publisher,
            "spin": spin,
            "last_id": out["publish"]["last_id"],
        }
        for rnd in range(1, args.async_rounds + 1):
            for handler in handlers:
                log(
                    f"round {rnd}/{args.async_rounds}, {handler} handler: "
                    f"{args.async_events} events per subscriber"
                )
                for p in rows:
                    if p.key in skipped:
                        continue
                    try:
                        r = consume(ctx, p, handler, rnd)
                    except RuntimeError as exc:
                        r = {"failed": first_error(str(exc))}
                        log(f"  {p.key} [{handler}]: failed: {r['failed']}")
                    if "skipped" in r:
                        skipped[p.key] = r["skipped"]
                        log(f"  {p.key}: skipped: {r['skipped']}")
                        continue
                    out["handlers"][handler][p.key]["rounds"].append(r)
    finally:
        factory.stop_all()
        redis.stop()
    out["skipped"] = skipped
    for by_peer in out["handlers"].values():
        for row in by_peer.values():
            ok = [r for r in row["rounds"] if "events_per_s" in r]
            if ok:
                row["best"] = max(ok, key=lambda r: r["events_per_s"])
                row["events_per_s_all_rounds"] = [r["events_per_s"] for r in ok]
    out["targets"] = targets(out)
    machine["loadavg_end"] = common.loadavg()
    return out


def preload(publisher: Any, redis: Any, n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for i in range(0, n, 500):
        entries = [
            {"entryId": str(j), "event": {"n": j}, "contentType": "application/json"}
            for j in range(i, min(n, i + 500))
        ]
        status, body = dapr_bench.http_post(
            publisher.http_port,
            f"/v1.0-alpha1/publish/bulk/{PUBSUB}/{TOPIC}",
            json.dumps(entries).encode(),
            "application/json",
            timeout=120,
        )
        if status not in (200, 204) or json.loads(body or b"{}").get("failedEntries"):
            raise RuntimeError(f"bulk publish failed: {status} {body[:300]!r}")
    seconds = time.perf_counter() - t0
    length = redis.command("XLEN", TOPIC)
    if length != n:
        raise RuntimeError(f"stream {TOPIC} holds {length} entries after the preload, expected {n}")
    last = redis.command("XREVRANGE", TOPIC, "+", "-", "COUNT", 1)[0][0]
    last_id = last.decode() if isinstance(last, bytes) else str(last)
    log(f"preloaded {n} events in {seconds:.2f}s (last id {last_id})")
    return {"seconds": round(seconds, 3), "events_per_s": round(n / seconds, 1), "last_id": last_id}


def best_rate(out: dict[str, Any], handler: str, keys: tuple[str, ...] | list[str]) -> tuple[str, float]:
    rows = out["handlers"].get(handler, {})
    have = [(k, rows[k]["best"]["events_per_s"]) for k in keys if k in rows and "best" in rows[k]]
    return max(have, key=lambda x: x[1]) if have else ("", 0.0)


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    tiny = "tiny"
    fk, fr = best_rate(out, tiny, NON_BULK)
    res = []

    def add(target: str, a: tuple[str, float], b: tuple[str, float], limit: float) -> None:
        ok = a[1] > 0 and b[1] > 0
        ratio = round(a[1] / b[1], 3) if ok else None
        res.append(
            {
                "target": target,
                "a": a[0],
                "b": b[0],
                "ratio": ratio,
                "limit": limit,
                "pass": ok and ratio >= limit,
            }
        )

    add("funcd best non-bulk, tiny >= 0.8x the Go ceiling", (fk, fr), best_rate(out, tiny, ["go"]), 0.8)
    add("funcd best non-bulk, tiny >= 2x the bare Dapr App", (fk, fr), best_rate(out, tiny, ["app"]), 2.0)
    add("funcd best non-bulk, tiny >= 2x OpenFunction", (fk, fr), best_rate(out, tiny, ["ofn"]), 2.0)
    for proto in ("grpc", "http"):
        add(
            f"CPU-bound, {proto}: {CORES} workers >= 1.8x 1 worker",
            best_rate(out, "cpu", [f"funcd-{proto}-w2"]),
            best_rate(out, "cpu", [f"funcd-{proto}-w1"]),
            1.8,
        )
    add("bulk, tiny >= 3x funcd best non-bulk", best_rate(out, tiny, BULK), (fk, fr), 3.0)
    return res


def command_line(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python bench/run.py --only async"]
    for dest, flag in (("async_events", "--async-events"), ("async_rounds", "--async-rounds")):
        parts.append(f"{flag} {getattr(args, dest)}")
    if args.async_quick:
        parts.append("--async-quick")
    if args.async_peers:
        parts.append(f"--async-peers {args.async_peers}")
    return " ".join(parts)


# ---------------------------------------------------------------- report


def _n(x: Any, nd: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{nd}f}"


def markdown(r: dict[str, Any]) -> str:
    m, s, v = r["machine"], r["settings"], r["versions"]
    lines = [
        f"Measured {m['date_utc']} with `{r['command']}` (raw data: `bench/results/async.json`).",
        "",
        f"- Machine: {m['cores']} cores, {m['cpu_model']}; Python {m['python']}; load average at start "
        f"{m['loadavg_start']}, at end {m.get('loadavg_end')}.",
        f"- daprd {v['daprd']} (testbin), Redis {v['redis']}, `pubsub.redis` with {s['component']}; funcd "
        f"(bulk rows: concurrency {s.get('bulk_component_concurrency', 10)}, "
        "daprd fills a bulk only from the component's deliveries in flight); "
        f"funcd {v['local'].get('funcd')}, dapr SDK {v['local'].get('dapr')}, "
        f"grpcio {v['local'].get('grpcio')}; "
        f"OpenFunction venv {v['ofn_venv']}; Dapr Go SDK {v['go_sdk']}.",
        f"- {s['events']} events preloaded once ({r['publish']['events_per_s']:,.0f}/s bulk publish); "
        "for each "
        f"subscriber the group is reset to the stream's start; events/s from the first handled event to the "
        f"last. {s['rounds']} round(s), subscribers taking turns, best round shown.",
        f"- Latency: then {s['latency_events']} events published one at a time at {s['latency_rate']:g}/s, "
        "stamped with their publish time; p50/p99 of (handler time - publish time).",
        f"- CPU-bound handler: {s['spin_iterations']} iterations of a Python busy loop "
        f"(`bench/peers/async_work.py`), {s['spin_measured_ms']} ms when measured alone; the Go peer spins a "
        f"loop it calibrates itself to {s['spin_ms']} ms.",
        "",
    ]
    for handler, rows in r["handlers"].items():
        title = "tiny handler" if handler == "tiny" else f"CPU-bound handler (~{s['spin_ms']:g} ms)"
        lines += [f"**{title}**", ""]
        table = []
        for key, row in rows.items():
            if key in r["skipped"]:
                table.append([row["label"], "skipped", "", "", "", "", "", r["skipped"][key]])
                continue
            b = row.get("best")
            if not b:
                fails = "; ".join(x.get("failed", "") for x in row["rounds"])
                table.append([row["label"], "failed", "", "", "", "", "", fails[:300]])
                continue
            c = b["cpu"]
            table.append(
                [
                    row["label"],
                    _n(b["events_per_s"]),
                    " / ".join(_n(x) for x in row["events_per_s_all_rounds"]),
                    _n(b["latency"]["p50_ms"], 1),
                    _n(b["latency"]["p99_ms"], 1),
                    " + ".join(_n(x) for x in c["subscriber"]["per_process_pct"]),
                    _n(c["daprd"]["us_per_event"]),
                    f"other CPU {c['other_pct']}%; extra/missing {b['extra_or_missing']}",
                ]
            )
        lines += [
            common.md_table(
                [
                    "subscriber",
                    "events/s",
                    "each round",
                    "p50 ms",
                    "p99 ms",
                    "subscriber CPU % per process",
                    "daprd CPU µs/event",
                    "notes",
                ],
                table,
            ),
            "",
        ]
    lines += ["Targets:", ""]
    lines.append(
        common.md_table(
            ["target", "compared", "ratio", "needed", "result"],
            [
                [
                    t["target"],
                    f"{t['a'] or '-'} vs {t['b'] or '-'}",
                    _n(t["ratio"], 2),
                    f">= {t['limit']}",
                    "PASS" if t["pass"] else ("FAIL" if t["ratio"] is not None else "not measured"),
                ]
                for t in r["targets"]
            ],
        )
    )
    lines += ["", "Commands (ports chosen free per run):", ""]
    first = next(iter(r["handlers"].values()), {})
    lines += [f"- {row['label']}: `{row['command']}`" for row in first.values()]
    return "\n".join(lines)
