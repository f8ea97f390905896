"""The subscribers of bench/async_bench.py: how each is built, started, checked and named.

Every subscriber does the same work per event (bench/peers/async_work.py for the Python ones, the same
in Go for bench/peers/dapr_go): decode the JSON data, spin ``BENCH_SPIN`` iterations (the CPU-bound
handler) and append a 16-byte latency record to ``BENCH_COUNT_FILE``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import common
import dapr_bench
from common import BENCH, CORES, ROOT, log
from http_peers import OFN_REQUIREMENTS, OFN_VENV

PEERS = BENCH / "peers"
PY = ROOT / ".venv" / "bin" / "python"
GO_SRC = PEERS / "dapr_go"
GO_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "funcd-bench"


def ensure_go_peer() -> tuple[Path | None, str]:
    """Build bench/peers/dapr_go once per source hash into ~/.cache/funcd-bench; (binary, note)."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((GO_SRC / name).read_bytes())
    out = GO_CACHE / f"dapr-go-{digest.hexdigest()[:12]}" / "dapr-go-bench"
    if out.exists():
        return out, ""
    if not shutil.which("go"):
        return None, "not measured: no Go toolchain (`go`) on PATH to build bench/peers/dapr_go"
    log(f"building the Go peer into {out}")
    env = dict(os.environ, CGO_ENABLED="0")
    proc = subprocess.run(
        ["go", "build", "-trimpath", "-o", str(out), "."],
        cwd=GO_SRC,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None, f"go build failed: {proc.stderr.strip().splitlines()[-1:]}"
    return out, ""


def go_sdk_version() -> str:
    for line in (GO_SRC / "go.mod").read_text().splitlines():
        if "github.com/dapr/go-sdk" in line:
            return line.split()[-1]
    return "?"


@dataclass
class Peer(dapr_bench.Spec):
    """One subscriber of the async bench (a dapr_bench.Spec with more kinds: "ofn", "go")."""

    bulk: bool = False
    """funcd only: the function asks for bulk subscribe; the row is skipped when funcd does not."""
    binary: Path | None = None
    """go only: the built peer."""

    @property
    def protocol(self) -> str:
        return "http" if self.kind == "funcd-http" else "grpc"

    def argv(self, grpc_port: int, http_port: int) -> list[str]:
        if self.kind == "app":
            return [str(PY), str((PEERS / "dapr_async_app.py").relative_to(ROOT)), str(grpc_port)]
        if self.kind == "ofn":
            context = {
                "name": "async-bench",
                "version": "v1",
                "port": grpc_port,
                "triggers": {"dapr": [{"name": "pubsub", "type": "pubsub.redis", "topic": "bench"}]},
            }
            return [
                "/usr/bin/env",
                "FUNC_CONTEXT=" + json.dumps(context, separators=(",", ":")),
                str(OFN_VENV / "bin" / "functions-framework"),
                "--target",
                "handler",
                "--source",
                str((PEERS / "ofn_async" / "main.py").relative_to(ROOT)),
            ]
        if self.kind == "go":
            return [str(self.binary), str(grpc_port)]
        return super().argv(grpc_port, http_port)

    def command(self) -> str:
        if self.kind == "ofn":
            return (
                'FUNC_CONTEXT=\'{"port":PORT,"triggers":{"dapr":[{"name":"pubsub","type":'
                '"pubsub.redis","topic":"bench"}]},...}\' bench/.venvs/ofn/bin/functions-framework '
                "--target handler --source bench/peers/ofn_async/main.py"
            )
        if self.kind == "go":
            return "~/.cache/funcd-bench/dapr-go-<hash>/dapr-go-bench PORT  (go build of bench/peers/dapr_go)"
        return super().command()


class Service(dapr_bench.Service):
    """dapr_bench's subscriber process; a bulk row is ready without a single-event call.

    The readiness call of dapr_bench sends one plain OnTopicEvent (or one CloudEvent POST); a function
    that takes bulk deliveries need not accept that, so for bulk rows readiness is: every worker is
    up, /readyz answers 200 and (gRPC) every worker listens.
    """

    def wait_ready(self, timeout: float = 30.0, settle: float = 0.3) -> float:
        spec = self.spec
        if not (isinstance(spec, Peer) and spec.bulk):
            return super().wait_ready(timeout, settle)
        t0 = time.monotonic()
        while True:
            self._alive()
            try:
                ok = (
                    len(common.process_tree(self.pid)) >= 1 + spec.workers
                    and dapr_bench.http_get(self.http_port, "/readyz")[0] == 200
                    and (spec.protocol == "http" or dapr_bench.listeners(self.grpc_port) >= spec.workers)
                )
            except OSError:
                ok = False
            if ok:
                break
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{spec.key}: not ready within {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.05)
        time.sleep(settle)
        return time.monotonic() - t0


def bulk_refusal(svc: dapr_bench.Service) -> str:
    """Why funcd does not bulk-subscribe for this function ("" when it does), asked as daprd asks."""
    if svc.spec.protocol == "http":
        status, body = dapr_bench.http_get(svc.http_port, "/dapr/subscribe")
        subs = json.loads(body) if status == 200 else []
        if any((s.get("bulkSubscribe") or {}).get("enabled") for s in subs):
            return ""
        return (
            f"not supported by this funcd: GET /dapr/subscribe has no enabled bulkSubscribe ({body[:160]!r})"
        )
    import grpc
    from dapr.proto import appcallback_service_v1
    from google.protobuf import empty_pb2

    with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as chan:
        stub = appcallback_service_v1.AppCallbackStub(chan)
        resp = stub.ListTopicSubscriptions(empty_pb2.Empty(), timeout=5)
    if any(s.HasField("bulk_subscribe") and s.bulk_subscribe.enabled for s in resp.subscriptions):
        return ""
    return "not supported by this funcd: ListTopicSubscriptions has no enabled bulk_subscribe"


def peers(go_binary: Path | None, go_note: str, ofn_note: str) -> list[Peer]:
    """The rows, in the order they run (and are shown)."""
    fn, bulk_fn, batch_fn = PEERS / "async_fn", PEERS / "async_bulk_fn", PEERS / "async_batch_fn"
    rows = [
        Peer("funcd-grpc-w1", "funcd --app-protocol grpc --workers 1", "funcd", workers=1, folder=fn),
        Peer(
            "funcd-grpc-w2", f"funcd --app-protocol grpc --workers {CORES}", "funcd", workers=CORES, folder=fn
        ),
        Peer("funcd-http-w1", "funcd --app-protocol http --workers 1", "funcd-http", workers=1, folder=fn),
        Peer(
            "funcd-http-w2",
            f"funcd --app-protocol http --workers {CORES}",
            "funcd-http",
            workers=CORES,
            folder=fn,
        ),
        Peer(
            "funcd-bulk-grpc",
            f"funcd bulk, per-event handler, grpc, --workers {CORES}",
            "funcd",
            workers=CORES,
            folder=bulk_fn,
            bulk=True,
        ),
        Peer(
            "funcd-batch-grpc",
            f"funcd bulk, @batch handler, grpc, --workers {CORES}",
            "funcd",
            workers=CORES,
            folder=batch_fn,
            bulk=True,
        ),
        Peer(
            "funcd-bulk-http",
            f"funcd bulk, per-event handler, http, --workers {CORES}",
            "funcd-http",
            workers=CORES,
            folder=bulk_fn,
            bulk=True,
        ),
        Peer(
            "funcd-batch-http",
            f"funcd bulk, @batch handler, http, --workers {CORES}",
            "funcd-http",
            workers=CORES,
            folder=batch_fn,
            bulk=True,
        ),
        Peer("app", "bare Dapr Python SDK App (dapr.ext.grpc)", "app"),
        Peer("ofn", "OpenFunction ofn-functions-framework 0.2.0rc1", "ofn", notes=ofn_note),
        Peer("go", f"Dapr Go SDK {go_sdk_version()}, no-op (ceiling)", "go", binary=go_binary, notes=go_note),
    ]
    return rows


def count_records(path: Path) -> int:
    try:
        return path.stat().st_size // 16
    except FileNotFoundError:
        return 0


def latencies_us(path: Path, skip: int) -> list[int]:
    """The stamped latencies (µs) recorded after the first ``skip`` records."""
    data = path.read_bytes()[skip * 16 :]
    out = []
    for i in range(0, len(data) - 15, 16):
        v = int(data[i : i + 15])
        if v >= 0:
            out.append(v)
    return out


def spin_iterations(ms: float) -> int:
    """Iterations of async_work.spin that take ``ms`` on this machine (best of 15 timed trials)."""
    sys.path.insert(0, str(PEERS))
    from async_work import spin  # type: ignore[import-not-found]

    trial = 20000
    best = float("inf")
    for _ in range(15):
        t0 = time.perf_counter()
        spin(trial)
        best = min(best, time.perf_counter() - t0)
    return max(1, round(trial * (ms / 1000) / best))


def check_cost(n: int) -> float:
    """Seconds that ``spin(n)`` takes now (median of 7), to report the calibration."""
    import statistics

    from async_work import spin  # type: ignore[import-not-found]

    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        spin(n)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


__all__ = ["OFN_REQUIREMENTS", "OFN_VENV", "Peer", "common"]
