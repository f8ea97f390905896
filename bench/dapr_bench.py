"""Dapr benchmark (issue 4): funcd's AppCallback server vs a bare ``dapr.ext.grpc`` App.

1. AppCallback throughput: ``bench/grpc_load.py`` (asyncio gRPC clients, several channels) drives
   OnTopicEvent on funcd (``bench/peers/dapr_fn``, workers = cores) and on the bare App
   (``bench/peers/dapr_app.py``) with the same settings; the servers take turns, ``--dapr-rounds``
   rounds, best round reported. Server CPU (its process tree, from /proc) and client CPU are
   accounted over the measured window only. For information: funcd ``--workers 1`` and other
   ``--threads``, a bare grpcio server with no SDK (``bench/peers/dapr_grpc_floor.py``, sync and
   aio: what Python gRPC itself costs), and funcd ``--app-protocol http`` loaded by wrk with the
   CloudEvent daprd sends.
2. End to end: real daprd (the testbin build) + Redis streams. ``--dapr-events`` events are
   published once (through a publisher-only daprd's bulk-publish API); for each subscriber the
   consumer group is reset to the start of the stream, the subscriber and its own daprd are
   started, and the time from the first to the last handled event gives events/s. Every handler
   appends one byte per event to a file; the bench polls its size.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
from common import BENCH, CLK_TCK, CORES, ROOT, log

NAME = "dapr"
DESCRIPTION = (
    "Dapr AppCallback: funcd vs a bare dapr.ext.grpc App (OnTopicEvent/s), "
    "and end to end through daprd + Redis streams"
)

PY = ROOT / ".venv" / "bin" / "python"
FUNCD = ROOT / ".venv" / "bin" / "funcd"
PEERS = BENCH / "peers"
FN = PEERS / "dapr_fn"
APP = PEERS / "dapr_app.py"
FLOOR = PEERS / "dapr_grpc_floor.py"
LUA = PEERS / "dapr_cloudevent.lua"
INPUT = "pubsub"  # the input's name in bench/peers/dapr_fn/function.yaml: route /dapr/topics/pubsub
TOPIC, PUBSUB, GROUP = "bench", "pubsub", "funcd-bench"


DEFAULTS: dict[str, Any] = {}
"""This benchmark's options and their defaults (filled by add_arguments)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("dapr")
    g.add_argument("--dapr-rounds", type=int, default=3, help="AppCallback rounds, best reported (3)")
    g.add_argument("--dapr-warmup", type=float, default=2.0, help="unmeasured seconds before each load (2)")
    g.add_argument("--dapr-channels", type=int, default=16, help="gRPC channels (connections) (16)")
    g.add_argument(
        "--dapr-concurrency", type=int, default=64, help="calls in flight, and wrk connections (64)"
    )
    g.add_argument("--dapr-client-processes", type=int, default=1, help="gRPC client processes (1)")
    g.add_argument(
        "--dapr-explore-duration",
        type=float,
        default=4.0,
        help="seconds per load of the information rows (funcd --workers 1, --threads ...) (4)",
    )
    g.add_argument("--dapr-no-explore", action="store_true", help="skip the information rows")
    g.add_argument("--dapr-events", type=int, default=20000, help="events per end-to-end run (20000)")
    g.add_argument("--dapr-e2e-rounds", type=int, default=2, help="end-to-end rounds, best reported (2)")
    g.add_argument(
        "--dapr-e2e-concurrency",
        type=int,
        default=10,
        help="the Redis pub/sub component's concurrency (Dapr's default: 10)",
    )
    g.add_argument("--dapr-no-e2e", action="store_true", help="skip the end-to-end part")
    g.add_argument(
        "--dapr-wait-quiet",
        type=float,
        default=0.0,
        help="first wait up to this many seconds for the 1-min load average to drop below the core count",
    )
    DEFAULTS.update({a.dest: a.default for a in g._group_actions})


# ---------------------------------------------------------------- processes


def listeners(port: int) -> int:
    """Listening TCP sockets on ``port`` (SO_REUSEPORT workers each have one)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    n += 1
    return n


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes, ctype: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def grpc_topic_event(port: int, timeout: float = 2.0) -> int:
    """One OnTopicEvent call; returns the TopicEventResponse status."""
    import grpc
    from dapr.proto import appcallback_service_v1, appcallback_v1

    with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
        stub = appcallback_service_v1.AppCallbackStub(chan)
        req = appcallback_v1.TopicEventRequest(
            id="check", source="bench", type="t", spec_version="1.0", data_content_type="application/json",
            data=b'{"n": 1}', topic=TOPIC, pubsub_name=PUBSUB,
        )  # fmt: skip
        return int(stub.OnTopicEvent(req, timeout=timeout).status)


@dataclass
class Spec:
    """One subscriber: how to start it and how it is reached."""

    key: str
    label: str
    kind: str  # "app" (bare App), "floor"/"floor-aio" (bare grpcio), "funcd" (gRPC) or "funcd-http"
    workers: int = 1
    threads: int | None = None
    notes: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    folder: Path = FN
    """The funcd function served (funcd kinds only)."""

    @property
    def protocol(self) -> str:
        return "http" if self.kind == "funcd-http" else "grpc"

    def argv(self, grpc_port: int, http_port: int) -> list[str]:
        if self.kind == "app":
            return [str(PY), str(APP.relative_to(ROOT)), str(grpc_port)]
        if self.kind.startswith("floor"):
            argv = [str(PY), str(FLOOR.relative_to(ROOT)), str(grpc_port)]
            return argv + (["--aio"] if self.kind == "floor-aio" else [])
        argv = [str(FUNCD), "run", str(self.folder), "--port", str(http_port)]
        if self.kind == "funcd-http":
            argv += ["--app-protocol", "http"]
        else:
            argv += ["--dapr-port", str(grpc_port)]
        argv += ["--no-local-dapr", "--workers", str(self.workers)]
        if self.threads is not None:
            argv += ["--threads", str(self.threads)]
        return argv

    def command(self) -> str:
        text = " ".join(self.argv(0, 0)).replace(str(ROOT) + "/", "")
        if not self.folder.is_relative_to(ROOT):  # a generated variant: name it
            text = text.replace(str(self.folder), f"<{self.folder.name}>")
        if not self.kind.startswith("funcd"):
            return text.replace(".py 0", ".py PORT")
        text = text.replace("--port 0", "--port HTTP_PORT").replace("--dapr-port 0", "--dapr-port PORT")
        return text


class Service:
    """A subscriber process (tree), in its own session so that it can be stopped as a group."""

    def __init__(self, spec: Spec, logdir: Path, env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.grpc_port = common.free_port()
        self.http_port = common.free_port()
        self.logfile = logdir / f"{spec.key}-{self.grpc_port}.log"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = False

    @property
    def port(self) -> int:
        """The port daprd (or the load) calls."""
        return self.http_port if self.spec.protocol == "http" else self.grpc_port

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Service:
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # keep .pyc caches like an installed package
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        with self.logfile.open("wb") as out:
            self.proc = subprocess.Popen(
                self.spec.argv(self.grpc_port, self.http_port),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log_tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        return ""

    def _alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.spec.key} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 30.0, settle: float = 0.3) -> float:
        """Until every worker listens and a call succeeds; returns seconds since start."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        want = self.spec.workers
        while True:
            self._alive()
            try:
                if not self.spec.kind.startswith("funcd"):
                    ok = listeners(self.grpc_port) >= 1 and grpc_topic_event(self.grpc_port) == 0
                else:
                    ok = (
                        len(common.process_tree(self.pid)) >= 1 + want
                        and http_get(self.http_port, "/readyz")[0] == 200
                        and (
                            self.spec.protocol == "http"
                            or (listeners(self.grpc_port) >= want and grpc_topic_event(self.grpc_port) == 0)
                        )
                    )
            except Exception:
                ok = False
            if ok:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.spec.key}: not ready within {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.05)
        if self.spec.protocol == "http":  # the answer daprd expects
            status, body = http_post(
                self.http_port,
                f"/dapr/topics/{INPUT}",
                json.dumps({"id": "check", "specversion": "1.0", "data": {"n": 1}}).encode(),
                "application/cloudevents+json",
            )
            if status != 200 or json.loads(body) != {"status": "SUCCESS"}:
                raise RuntimeError(f"{self.spec.key}: unexpected answer {status} {body[:200]!r}")
        time.sleep(settle)
        return time.monotonic() - t0

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL to its own process group if it lingers."""
        if self.proc is None:
            return None
        pid = self.proc.pid
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.spec.key}: no exit {timeout:g}s after SIGTERM; killing its process group")
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # anything left in the group we created
        return self.proc.returncode


@contextlib.contextmanager
def serving(spec: Spec, logdir: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    svc = Service(spec, logdir, env).start()
    try:
        svc.wait_ready()
        yield svc
    finally:
        svc.stop()


class CpuWindow:
    """CPU ticks of some process trees and of the whole machine between ``start()`` and ``stop()``."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.trees = {k: common.process_tree(p) for k, p in roots.items()}

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.busy0 = common.cpu_busy_ticks()
        self.per0 = {k: {p: common.proc_cpu_ticks(p) for p in t} for k, t in self.trees.items()}

    def stop(self) -> dict[str, Any]:
        busy = common.cpu_busy_ticks() - self.busy0
        elapsed = time.perf_counter() - self.t0
        out: dict[str, Any] = {"elapsed_s": round(elapsed, 3), "busy_s": busy / CLK_TCK}
        for k, tree in self.trees.items():
            per = [common.proc_cpu_ticks(p) - self.per0[k][p] for p in tree]
            out[k] = {"cpu_s": sum(per) / CLK_TCK, "per_process_s": [x / CLK_TCK for x in per]}
        return out


# ---------------------------------------------------------------- part 1: AppCallback load


def grpc_drive(
    port: int, args: argparse.Namespace, duration: float, warmup: float, pid: int
) -> dict[str, Any]:
    """Run bench/grpc_load.py against ``port``; server CPU accounted between its start/end marks."""
    argv = [
        str(PY),
        str(BENCH / "grpc_load.py"),
        "--target",
        f"127.0.0.1:{port}",
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--channels",
        str(args.dapr_channels),
        "--concurrency",
        str(args.dapr_concurrency),
        "--processes",
        str(args.dapr_client_processes),
    ]
    win = CpuWindow({"server": pid})
    la = common.loadavg()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    cpu: dict[str, Any] = {}
    result: dict[str, Any] = {}
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errfile, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if line == "measure-start":
                win.start()
            elif line == "measure-end":
                cpu = win.stop()
            elif line.startswith("{"):
                result = json.loads(line)
        proc.wait(60)
        errfile.seek(0)
        err = errfile.read().decode(errors="replace")
    if proc.returncode != 0 or "error" in result or not cpu:
        raise RuntimeError(f"grpc_load failed ({proc.returncode}): {result.get('error')}\n{err[-3000:]}")
    return summarize(result, cpu, la, client_cpu_s=result["client_cpu_s"], client="client")


def summarize(
    res: dict[str, Any], cpu: dict[str, Any], la: list[float], client_cpu_s: float, client: str
) -> dict[str, Any]:
    calls = res["calls"] if "calls" in res else res["requests"]
    capacity = cpu["elapsed_s"] * CORES
    srv = cpu["server"]["cpu_s"]
    res["loadavg_before"] = la
    res["cpu"] = {
        "server_s": round(srv, 3),
        f"{client}_s": round(client_cpu_s, 3),
        "server_us_per_call": round(1e6 * srv / calls, 1) if calls else None,
        f"{client}_us_per_call": round(1e6 * client_cpu_s / calls, 1) if calls else None,
        "server_pct": round(100 * srv / capacity, 1),
        f"{client}_pct": round(100 * client_cpu_s / capacity, 1),
        "other_pct": round(100 * max(0.0, cpu["busy_s"] - srv - client_cpu_s) / capacity, 1),
        "machine_busy_pct": round(100 * cpu["busy_s"] / capacity, 1),
        # Per server process (parent first): how the connections spread over the workers.
        "per_process_pct": [round(100 * x / capacity, 1) for x in cpu["server"]["per_process_s"]],
    }
    return res


def wrk_drive(
    port: int, args: argparse.Namespace, duration: float, warmup: float, pid: int
) -> dict[str, Any]:
    """wrk POSTs the CloudEvent daprd would send to /dapr/topics/<input>."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise RuntimeError("wrk not found: apt-get install -y wrk")

    def argv(seconds: float) -> list[str]:
        return [
            wrk,
            "-t1",
            f"-c{args.dapr_concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}/dapr/topics/{INPUT}",
        ]

    if warmup > 0:
        subprocess.run(argv(warmup), capture_output=True, check=True)
    win = CpuWindow({"server": pid})
    la = common.loadavg()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    win.start()
    out = subprocess.run(argv(duration), capture_output=True, text=True, timeout=duration + 60)
    cpu = win.stop()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # only wrk was reaped in between
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stdout}{out.stderr}")
    res = common.parse_wrk(out.stdout)
    res["calls"] = res["requests"]
    res["errors"] = res["non_2xx"] + sum(res["socket_errors"].values())
    res["wrk_output"] = out.stdout
    res["command"] = " ".join(argv(duration)).replace(str(ROOT) + "/", "").replace(str(port), "HTTP_PORT")
    wrk_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    return summarize(res, cpu, la, client_cpu_s=wrk_cpu, client="client")


def drive(svc: Service, args: argparse.Namespace, duration: float, warmup: float) -> dict[str, Any]:
    fn = wrk_drive if svc.spec.protocol == "http" else grpc_drive
    r = fn(svc.port, args, duration, warmup, svc.pid)
    c = r["cpu"]
    log(
        f"  {svc.spec.key}: {r['rps']:,.0f} calls/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; "
        f"CPU/call server {c['server_us_per_call']} us {c['per_process_pct']}%, client "
        f"{c['client_us_per_call']} us; other {c['other_pct']}%; load {r['loadavg_before'][0]:.2f}"
    )
    return r


def funcd_grpc(key: str, label: str, workers: int = CORES, threads: int | None = None) -> Spec:
    return Spec(key, label, "funcd", workers=workers, threads=threads)


def appcallback(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    specs = [
        Spec("app", "bare dapr.ext.grpc App (1 process, 10 threads)", "app"),
        funcd_grpc("funcd", f"funcd ({CORES} workers, default threads)"),
        Spec(
            "funcd-http",
            f"funcd --app-protocol http ({CORES} workers), wrk",
            "funcd-http",
            workers=CORES,
            notes="no peer: for information",
        ),
    ]
    out: dict[str, Any] = {
        "servers": {
            s.key: {"label": s.label, "command": s.command(), "protocol": s.protocol, "rounds": []}
            for s in specs
        }
    }
    svcs: list[Service] = []
    try:
        for s in specs:
            svc = Service(s, logdir).start()
            svcs.append(svc)
            svc.wait_ready()
        for rnd in range(1, args.dapr_rounds + 1):
            log(f"AppCallback round {rnd}/{args.dapr_rounds}: {args.duration:g}s per server")
            for svc in svcs:
                r = drive(svc, args, args.duration, args.dapr_warmup)
                out["servers"][svc.spec.key]["rounds"].append(r)
    finally:
        for svc in svcs:
            code = svc.stop()
            out["servers"][svc.spec.key]["exit_code"] = code
            out["servers"][svc.spec.key]["killed_after_sigterm"] = svc.killed
    for srv in out["servers"].values():
        rps = [x["rps"] for x in srv["rounds"]]
        best = max(range(len(rps)), key=lambda i: rps[i])
        srv["best"] = srv["rounds"][best]
        srv["reported_round"] = best + 1
        srv["rps_all_rounds"] = rps
        srv["rps_median"] = statistics.median(rps)

    if not args.dapr_no_explore:
        d = args.dapr_explore_duration
        explore = [
            funcd_grpc("funcd-w1", "funcd --workers 1", workers=1),
            *[funcd_grpc(f"funcd-t{t}", f"funcd --threads {t}", threads=t) for t in (1, 2, 8)],
            Spec("floor", "bare grpcio server, no SDK (1 process, 4 threads)", "floor"),
            Spec("floor-aio", "bare grpcio aio server, no SDK (1 process)", "floor-aio"),
        ]
        log(f"AppCallback information rows: {', '.join(s.key for s in explore)}; {d:g}s each")
        rows: dict[str, Any] = {}
        for s in explore:
            with serving(s, logdir) as svc:
                rows[s.key] = {"label": s.label, "command": s.command(), **drive(svc, args, d, 1.0)}
        # Both sides with two client processes: does the client limit the figures?
        if args.dapr_client_processes == 1 and CORES > 1:
            two = argparse.Namespace(**{**vars(args), "dapr_client_processes": 2})
            for s in specs[:2]:
                with serving(s, logdir) as svc:
                    rows[f"{s.key}-2clients"] = {
                        "label": f"{s.label}, 2 client processes",
                        "command": s.command(),
                        **drive(svc, two, d, 1.0),
                    }
        out["explore"] = {"duration_s": d, "rows": rows}
    return out


# ---------------------------------------------------------------- part 2: end to end


def end_to_end(args: argparse.Namespace, logdir: Path, specs: list[Spec] | None = None) -> dict[str, Any]:
    """Publish ``--dapr-events`` once, then time each subscriber in ``specs`` (default: the bare App,
    funcd gRPC, funcd HTTP) consuming them all through its own daprd, ``--dapr-e2e-rounds`` rounds."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.e2e.stack_dapr import DaprdFactory, component
    from tests.e2e.stack_redis import start_redis

    stack = common.testbin()
    daprd_bin, redis_bin = stack.binary("daprd"), stack.binary("redis-server")
    work = logdir / "e2e"
    nr_dir = work / "nr"
    nr_dir.mkdir(parents=True)
    n = args.dapr_events
    redis = start_redis(redis_bin, work / "redis")
    factory = DaprdFactory(daprd_bin, stack.version("daprd"), work / "daprd", nr_dir)
    meta = {
        "redisHost": redis.address,
        "redisPassword": "",
        "consumerID": GROUP,
        "concurrency": args.dapr_e2e_concurrency,
        "queueDepth": 100,
    }
    resources = [component(PUBSUB, "pubsub.redis", meta)]
    specs = specs or [
        Spec("app", "bare dapr.ext.grpc App (gRPC)", "app"),
        funcd_grpc("funcd", f"funcd, gRPC ({CORES} workers)"),
        Spec("funcd-http", f"funcd --app-protocol http ({CORES} workers)", "funcd-http", workers=CORES),
    ]
    out: dict[str, Any] = {
        "events": n,
        "daprd": f"{stack.version('daprd')} ({daprd_bin})",
        "redis": redis.version,
        "component": {
            "type": "pubsub.redis",
            "metadata": {k: v for k, v in meta.items() if k != "redisHost"},
        },
        "subscribers": {
            s.key: {"label": s.label, "command": s.command(), "protocol": s.protocol, "rounds": []}
            for s in specs
        },
    }
    try:
        pub = factory(None, resources=resources, app_id="bench-publisher", wait="outbound")
        t0 = time.perf_counter()
        batch = 500
        for i in range(0, n, batch):
            entries = [
                {"entryId": str(j), "event": {"n": j}, "contentType": "application/json"}
                for j in range(i, min(n, i + batch))
            ]
            status, body = http_post(
                pub.http_port,
                f"/v1.0-alpha1/publish/bulk/{PUBSUB}/{TOPIC}",
                json.dumps(entries).encode(),
                "application/json",
                timeout=120,
            )
            if status not in (200, 204) or json.loads(body or b"{}").get("failedEntries"):
                raise RuntimeError(f"bulk publish failed: {status} {body[:300]!r}")
        publish_s = time.perf_counter() - t0
        length = redis.command("XLEN", TOPIC)
        sample = redis.command("XRANGE", TOPIC, "-", "+", "COUNT", 1)
        out["publish"] = {
            "seconds": round(publish_s, 3),
            "events_per_s": round(n / publish_s, 1),
            "stream_length": length,
            "stream_entry_sample": [x.decode(errors="replace") for x in sample[0][1]] if sample else None,
        }
        pub.stop()
        log(f"end to end: published {n} events in {publish_s:.2f}s (stream length {length})")
        if length != n:
            raise RuntimeError(f"stream {TOPIC} holds {length} entries, expected {n}")
        for rnd in range(1, args.dapr_e2e_rounds + 1):
            log(f"end-to-end round {rnd}/{args.dapr_e2e_rounds}: {n} events per subscriber")
            for spec in specs:
                r = consume(spec, factory, resources, redis, logdir, work, n, rnd)
                out["subscribers"][spec.key]["rounds"].append(r)
    finally:
        factory.stop_all()
        redis.stop()
    for sub in out["subscribers"].values():
        rates = [x["events_per_s"] for x in sub["rounds"]]
        best = max(range(len(rates)), key=lambda i: rates[i])
        sub["best"] = sub["rounds"][best]
        sub["reported_round"] = best + 1
        sub["events_per_s_all_rounds"] = rates
        sub["events_per_s_median"] = statistics.median(rates)
    return out


def consume(
    spec: Spec, factory: Any, resources: Any, redis: Any, logdir: Path, work: Path, n: int, rnd: int
) -> dict[str, Any]:
    """Reset the consumer group to the stream's start; start ``spec`` and its daprd; time N handled."""
    with contextlib.suppress(Exception):
        redis.command("XGROUP", "DESTROY", TOPIC, GROUP)
    redis.command("XGROUP", "CREATE", TOPIC, GROUP, "0")
    count = work / f"count-{spec.key}-{rnd}"
    count.unlink(missing_ok=True)
    svc = Service(spec, logdir, env={"BENCH_COUNT_FILE": str(count)}).start()
    sidecar = None
    try:
        svc.wait_ready()
        base = count.stat().st_size if count.exists() else 0  # the readiness call was counted
        t_start = time.perf_counter()
        sidecar = factory(
            svc.port,
            resources=resources,
            app_protocol=spec.protocol,
            app_id=f"bench-{spec.key}-{rnd}",
            wait=None,
        )
        win = CpuWindow({"subscriber": svc.pid, "daprd": sidecar.pid, "redis": redis.pid})
        la = common.loadavg()
        deadline = time.perf_counter() + 60 + n / 50
        first_n, t_first = 0, 0.0
        size = 0
        while True:
            with contextlib.suppress(FileNotFoundError):
                size = count.stat().st_size - base
            now = time.perf_counter()
            if size and not first_n:
                first_n, t_first = size, now
                win.start()
            if size >= n:
                break
            if not sidecar.proc.alive() or now > deadline:
                raise RuntimeError(
                    f"{spec.key}: {size}/{n} events handled; daprd "
                    f"{'alive' if sidecar.proc.alive() else 'exited'}\n"
                    f"{sidecar.log_tail(30)}\n{svc.log_tail()}"
                )
            time.sleep(0.005)
        t_last = time.perf_counter()
        cpu = win.stop()
        time.sleep(0.5)
        final = count.stat().st_size - base
    finally:
        if sidecar is not None:
            sidecar.stop()
        svc.stop()
    handled = n - first_n
    seconds = t_last - t_first
    rate = handled / seconds if seconds > 0 else float("nan")
    res = {
        "events_per_s": round(rate, 1),
        "seconds": round(seconds, 3),
        "first_seen_after_daprd_start_s": round(t_first - t_start, 3),
        "handled_at_end": final,
        "redelivered_or_extra": final - n,
        "loadavg_before": la,
        "cpu": {},
    }
    capacity = cpu["elapsed_s"] * CORES
    for k in ("subscriber", "daprd", "redis"):
        s = cpu[k]["cpu_s"]
        res["cpu"][k] = {
            "pct": round(100 * s / capacity, 1),
            "us_per_event": round(1e6 * s / handled, 1) if handled else None,
            "per_process_pct": [round(100 * x / capacity, 1) for x in cpu[k]["per_process_s"]],
        }
    known = sum(cpu[k]["cpu_s"] for k in ("subscriber", "daprd", "redis"))
    res["cpu"]["other_pct"] = round(100 * max(0.0, cpu["busy_s"] - known) / capacity, 1)
    res["cpu"]["machine_busy_pct"] = round(100 * cpu["busy_s"] / capacity, 1)
    c = res["cpu"]
    log(
        f"  {spec.key}: {rate:,.0f} events/s ({handled} in {seconds:.2f}s); CPU/event subscriber "
        f"{c['subscriber']['us_per_event']} us {c['subscriber']['per_process_pct']}%, daprd "
        f"{c['daprd']['us_per_event']} us, redis {c['redis']['us_per_event']} us; other {c['other_pct']}%"
    )
    return res


# ---------------------------------------------------------------- run and report


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for p in ("funcd", "dapr", "grpcio", "protobuf", "granian"):
        try:
            out[p] = version(p)
        except Exception:
            out[p] = "?"
    return out


def wait_quiet(limit_s: float) -> dict[str, Any]:
    t0 = time.monotonic()
    first = common.loadavg()
    while common.loadavg()[0] >= CORES and time.monotonic() - t0 < limit_s:
        time.sleep(10)
    waited = round(time.monotonic() - t0)
    log(f"waited {waited}s for a quieter machine: load average {first} -> {common.loadavg()}")
    return {"waited_s": waited, "loadavg_first": first}


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    logdir = common.make_logdir()
    quiet = wait_quiet(args.dapr_wait_quiet) if args.dapr_wait_quiet > 0 else None
    machine = common.machine_info()
    log(
        f"machine: {machine['cores']} cores, {machine['cpu_model']}, load average "
        f"{machine['loadavg_start']}; logs in {logdir}"
    )
    result: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine,
        "versions": versions(),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.dapr_warmup,
            "rounds": args.dapr_rounds,
            "channels": args.dapr_channels,
            "concurrency": args.dapr_concurrency,
            "client_processes": args.dapr_client_processes,
            "explore_duration_s": None if args.dapr_no_explore else args.dapr_explore_duration,
            "events": None if args.dapr_no_e2e else args.dapr_events,
            "e2e_rounds": args.dapr_e2e_rounds,
            "command": command_line(args),
        },
        "wait_quiet": quiet,
    }
    ok = False
    try:
        result["appcallback"] = appcallback(args, logdir)
        if not args.dapr_no_e2e:
            result["e2e"] = end_to_end(args, logdir)
        ok = True
    finally:
        if not ok:
            log(f"logs kept in {logdir}")
    targets = []
    srv = result["appcallback"]["servers"]
    targets.append(
        {
            "target": "AppCallback OnTopicEvent/s >= 2x the bare App",
            "ratio": ratio(srv["funcd"]["best"]["rps"], srv["app"]["best"]["rps"]),
            "ratio_of_medians": ratio(srv["funcd"]["rps_median"], srv["app"]["rps_median"]),
            "limit": 2.0,
        }
    )
    if "e2e" in result:
        subs = result["e2e"]["subscribers"]
        for key, proto in (("funcd", "gRPC"), ("funcd-http", "HTTP app protocol")):
            targets.append(
                {
                    "target": f"end to end events/s, funcd ({proto}) >= 1x the bare App "
                    "behind the same daprd",
                    "ratio": ratio(subs[key]["best"]["events_per_s"], subs["app"]["best"]["events_per_s"]),
                    "ratio_of_medians": ratio(
                        subs[key]["events_per_s_median"], subs["app"]["events_per_s_median"]
                    ),
                    "limit": 1.0,
                }
            )
    for t in targets:
        t["pass"] = t["ratio"] >= t["limit"]
    result["targets"] = targets
    machine["loadavg_end"] = common.loadavg()
    if not getattr(args, "keep_logs", False):
        shutil.rmtree(logdir, ignore_errors=True)
    return result


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (options left at their defaults are not shown)."""
    parts = [".venv/bin/python bench/run.py --only dapr", f"--duration {args.duration:g}"]
    for dest, default in DEFAULTS.items():
        value = getattr(args, dest, default)
        if value != default:
            flag = "--" + dest.replace("_", "-")
            parts.append(flag if value is True else f"{flag} {value:g}" if isinstance(value, float) else
                         f"{flag} {value}")  # fmt: skip
    return " ".join(parts)


# ---------------------------------------------------------------- Markdown


def _f(x: Any, nd: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{nd}f}"


def markdown(r: dict[str, Any]) -> str:
    m, s, ac = r["machine"], r["settings"], r["appcallback"]
    v = r["versions"]
    lines = [
        f"Measured {m['date_utc']} with `{s['command']}` (raw data: `bench/results/dapr.json`).",
        "",
        f"- Machine: {m['cores']} cores, {m['memory_mib']} MiB RAM, {m['cpu_model']}; Linux {m['kernel']}; "
        f"Python {m['python']}",
        f"- Load average (1, 5, 15 min) at start {m['loadavg_start']}, at end {m['loadavg_end']}"
        + (
            f" (waited {r['wait_quiet']['waited_s']} s for it to drop from "
            f"{r['wait_quiet']['loadavg_first']})"
            if r.get("wait_quiet")
            else ""
        )
        + ".",
        f"- Versions: funcd {v['funcd']}, dapr (Python SDK) {v['dapr']}, grpcio {v['grpcio']}, "
        f"protobuf {v['protobuf']}, granian {v['granian']}"
        + (f"; daprd {r['e2e']['daprd'].split()[0]}, Redis {r['e2e']['redis']}" if "e2e" in r else "")
        + ".",
        "- The load average climbs during the run from the bench's own runnable threads (gRPC servers, "
        'client, daprd); the share of CPU taken by other jobs is the "other" column of each row.',
        "",
        "### AppCallback throughput",
        "",
        f"Client: `bench/grpc_load.py` ({s['client_processes']} process, asyncio `grpc.aio`), "
        f"{s['channels']} channels (TCP connections), {s['concurrency']} calls in flight, "
        f"{s['warmup_s']:g} s warm-up then {s['duration_s']:g} s measured; the servers took turns, "
        f"{s['rounds']} rounds, the **best round** is shown (all rounds listed). CPU µs/call = CPU time of "
        "the server's process tree (or of the client) in the measured window / calls. The HTTP row is "
        f"wrk (`-t1 -c{s['concurrency']}`) POSTing the CloudEvent daprd sends "
        "(`bench/peers/dapr_cloudevent.lua`) to `/dapr/topics/pubsub`; it has no peer.",
        "",
    ]
    headers = [
        "server",
        "calls/s",
        "calls/s each round",
        "p50 ms",
        "p99 ms",
        "server CPU µs/call",
        "client CPU µs/call",
        "CPU % server (per process) / client / other",
        "errors",
    ]
    rows = []
    for key, srv in ac["servers"].items():
        b = srv["best"]
        c = b["cpu"]
        rows.append(
            [
                f"**{srv['label']}**" if key in ("app", "funcd") else srv["label"],
                _f(b["rps"]),
                " / ".join(_f(x) for x in srv["rps_all_rounds"]),
                _f(b["p50_ms"], 2),
                _f(b["p99_ms"], 2),
                _f(c["server_us_per_call"]),
                _f(c["client_us_per_call"]),
                f"{c['server_pct']:.0f} ({' + '.join(f'{x:.0f}' for x in c['per_process_pct'])}) / "
                f"{c['client_pct']:.0f} / {c['other_pct']:.0f}",
                b.get("errors", 0) + b.get("wrong", 0),
            ]
        )
    lines += [common.md_table(headers, rows), ""]
    ex = ac.get("explore")
    if ex:
        lines += [
            f"Information rows ({ex['duration_s']:g} s each, one run, 1 s warm-up; same client unless said):",
            "",
        ]
        rows = []
        for row in ex["rows"].values():
            c = row["cpu"]
            rows.append(
                [
                    row["label"],
                    _f(row["rps"]),
                    _f(row["p50_ms"], 2),
                    _f(row["p99_ms"], 2),
                    _f(c["server_us_per_call"]),
                    _f(c["client_us_per_call"]),
                    f"{c['server_pct']:.0f} ({' + '.join(f'{x:.0f}' for x in c['per_process_pct'])}) / "
                    f"{c['client_pct']:.0f} / {c['other_pct']:.0f}",
                ]
            )
        lines += [
            common.md_table(
                [
                    "server",
                    "calls/s",
                    "p50 ms",
                    "p99 ms",
                    "server CPU µs/call",
                    "client CPU µs/call",
                    "CPU % server / client / other",
                ],
                rows,
            ),
            "",
        ]
    e = r.get("e2e")
    if e:
        meta = ", ".join(f"{k}={v}" for k, v in e["component"]["metadata"].items() if k != "redisPassword")
        pub = e["publish"]
        lines += [
            "### End to end: daprd + Redis streams",
            "",
            f"{e['events']} events preloaded into the stream `{TOPIC}` (bulk publish through a "
            f"publisher-only daprd: {_f(pub['events_per_s'])} events/s). For each subscriber: consumer "
            "group reset to the "
            "stream's start, subscriber started, then its own daprd (same component: `pubsub.redis`, "
            f"{meta}); events/s from the first handled event to the last (every handler appends a byte to a "
            f"file). {s['e2e_rounds']} rounds, subscribers taking turns, best round shown. CPU µs/event over "
            "the same window.",
            "",
        ]
        rows = []
        for sub in e["subscribers"].values():
            b = sub["best"]
            c = b["cpu"]
            rows.append(
                [
                    sub["label"],
                    _f(b["events_per_s"]),
                    " / ".join(_f(x) for x in sub["events_per_s_all_rounds"]),
                    f"{_f(c['subscriber']['us_per_event'])} "
                    f"({' + '.join(f'{x:.0f}%' for x in c['subscriber']['per_process_pct'])})",
                    _f(c["daprd"]["us_per_event"]),
                    _f(c["redis"]["us_per_event"]),
                    f"{c['other_pct']:.0f}",
                    b["redelivered_or_extra"],
                ]
            )
        lines += [
            common.md_table(
                [
                    "subscriber",
                    "events/s",
                    "events/s each round",
                    "subscriber CPU µs/event (per process)",
                    "daprd CPU µs/event",
                    "redis CPU µs/event",
                    "other CPU %",
                    "extra deliveries",
                ],
                rows,
            ),
            "",
        ]
    lines += ["### Targets", "", common.md_table(
        ["target", "ratio (best rounds)", "ratio of the medians of the rounds", "needed", "result"],
        [[t["target"], f"{t['ratio']:.3f}", f"{t['ratio_of_medians']:.3f}", f">= {t['limit']:g}",
          "PASS" if t["pass"] else "FAIL"] for t in r["targets"]],
    ), ""]  # fmt: skip
    lines += ["Commands (ports chosen free per run):", ""]
    for srv in ac["servers"].values():
        lines.append(f"- {srv['label']}: `{srv['command']}`")
    if ex:
        for row in ex["rows"].values():
            if "2 client" not in row["label"]:
                lines.append(f"- {row['label']}: `{row['command']}`")
    lines.append(
        "- gRPC load: `.venv/bin/python bench/grpc_load.py --target 127.0.0.1:PORT "
        f"--duration {s['duration_s']:g} "
        f"--warmup {s['warmup_s']:g} --channels {s['channels']} --concurrency {s['concurrency']} "
        f"--processes {s['client_processes']}`"
    )
    http_row = ac["servers"].get("funcd-http")
    if http_row:
        lines.append(f"- HTTP load: `{http_row['best']['command']}`")
    return "\n".join(lines)
