"""Functions in real pods (issue 9): kubectl apply → first HTTP 200, and scale from zero → handled.

Runs the e2e stack (tests/e2e/stack_*.py): etcd + kube-apiserver, kube-controller-manager and
kube-scheduler, a node (containerd + kubelet), KEDA, Redis and ``funcd controller``; the samples are
built with ``funcd build`` and imported into the node. Needs root and ``make testbin``.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import shutil
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import common
from pods_stack import Cluster, get, pods, ready_endpoint, start_cluster

NAME = "pods"
DESCRIPTION = "Functions in real pods: apply → first 200 vs kubectl apply; scale 0 → 1 → handled vs warm"

sys.path.insert(0, str(common.ROOT))
sys.path.insert(0, str(common.ROOT / "controllers"))

POLL = 0.05
"""Seconds between two polls of the API server (each poll is a few plain GETs)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("pods")
    g.add_argument("--pods-rounds", type=int, default=3, help="HTTP rounds, ours and peer taking turns (3)")
    g.add_argument("--pods-cold-rounds", type=int, default=3, help="scale-from-zero rounds (3)")
    g.add_argument("--pods-polling", type=int, default=1, help="KEDA pollingInterval, seconds (1)")
    g.add_argument("--pods-cooldown", type=int, default=5, help="KEDA cooldownPeriod, seconds (5)")
    g.add_argument("--pods-timeout", type=float, default=180.0, help="seconds to wait for each step")


def _post_status(address: str) -> int:
    req = urllib.request.Request(
        f"http://{address}/", data=b'{"name": "bench"}', headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _watch(
    c: Cluster, t0: float, what: str, steps: list[tuple[str, Callable[[], bool]]], interval: float = POLL
) -> dict[str, float]:
    """Poll each step in order until all have been seen; the seconds from ``t0`` when each was."""
    from tests.e2e.stack_procs import StackError

    marks: dict[str, float] = {}
    deadline = time.perf_counter() + c.timeout
    while len(marks) < len(steps):
        for name, check in steps:
            if name in marks:
                continue
            if not check():
                break
            marks[name] = round(time.perf_counter() - t0, 3)
        for proc in c.procs:
            if not proc.alive():
                raise StackError(f"{proc.describe()} during {what}")
        if time.perf_counter() > deadline:
            raise StackError(
                f"{what}: timed out after {c.timeout:g}s; seen {marks} of {[s for s, _ in steps]}"
            )
        if len(marks) < len(steps):
            time.sleep(interval)
    return marks


def _drop_namespace(c: Cluster, ns: str) -> None:
    """Delete a round's namespace and wait (bounded) until its pods are gone, so the next round has the
    node to itself."""
    c.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (get(c.api, f"/api/v1/namespaces/{ns}/pods") or {}).get("items"):
        time.sleep(0.5)


# ---------------------------------------------------------------- (1) apply → first 200


def http_round(c: Cluster, ns: str, peer: bool) -> dict[str, Any]:
    """hello-http into a fresh restricted namespace → first 200 from its pod, through the controller
    (``kubectl apply`` of the Function) or, for the peer, ``kubectl apply --server-side`` of what the
    controller renders for it."""
    from funcd_controller.render import render
    from funcd_controller.render.options import RenderOptions

    from functions_framework.model import parse_function
    from tests.e2e.stack_funcd_pods import (
        DAPRD_IMAGE,
        create_restricted_namespace,
        pod_is_ready,
        sample_function,
    )

    create_restricted_namespace(c.kubectl, ns)
    fn = sample_function("hello-http", c.images.function("hello-http"))
    if peer:
        doc = copy.deepcopy(fn)
        doc["metadata"]["namespace"] = ns
        objects = render(parse_function(doc, "hello-http"), RenderOptions(daprd_image=DAPRD_IMAGE)).objects
        argv = ["apply", "--server-side", "--field-manager=bench", "-f", "-"]
    else:
        objects = [fn]
        argv = ["apply", "-n", ns, "-f", "-"]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    address = ""

    def deployment() -> bool:
        return get(c.api, f"/apis/apps/v1/namespaces/{ns}/deployments/hello-http") is not None

    def observed() -> bool:
        got = get(c.api, f"/apis/funcd.dev/v1alpha1/namespaces/{ns}/functions/hello-http") or {}
        gen = (got.get("metadata") or {}).get("generation")
        return gen is not None and (got.get("status") or {}).get("observedGeneration") == gen

    def endpoint() -> bool:
        nonlocal address
        address = ready_endpoint(c.api, ns, "hello-http")
        return bool(address)

    steps = [("deployment", deployment)]
    if not peer:
        steps.append(("observed_generation", observed))
    steps += [
        ("pod_ready", lambda: any(pod_is_ready(p) for p in pods(c.api, ns, "hello-http"))),
        ("endpoint_ready", endpoint),
        ("first_200", lambda: _post_status(address) == 200),
    ]
    t0 = time.perf_counter()
    c.kubectl(*argv, input=manifest, timeout=c.timeout)
    applied = round(time.perf_counter() - t0, 3)
    marks = _watch(c, t0, f"hello-http in {ns}", steps)
    out = {"namespace": ns, "objects": [o["kind"] for o in objects], "kubectl_apply_s": applied, **marks}
    out["node_s"] = round(marks["first_200"] - marks["deployment"], 3)
    return out


def bench_http(c: Cluster, rounds: int) -> dict[str, Any]:
    common.log("pods: warm-up (not measured): hello-http both ways")
    warmup = [http_round(c, "warmup-ours", False), http_round(c, "warmup-peer", True)]
    for w in warmup:
        _drop_namespace(c, w["namespace"])
    out: list[dict[str, Any]] = []
    for r in range(rounds):
        row: dict[str, Any] = {}
        for key, peer in (("ours", False), ("peer", True)):
            ns = f"http-{key}-{r + 1}-{uuid.uuid4().hex[:4]}"
            res = http_round(c, ns, peer)
            common.log(f"pods: round {r + 1} {key}: first 200 after {res['first_200']}s {res}")
            _drop_namespace(c, ns)
            row[key] = res
        row["ratio"] = round(row["ours"]["first_200"] / row["peer"]["first_200"], 3)
        out.append(row)
    return {"warmup": warmup, "rounds": out}


# ---------------------------------------------------------------- (2) scale from zero


def _replicas(c: Cluster, ns: str) -> int:
    got = get(c.api, f"/apis/apps/v1/namespaces/{ns}/deployments/pubsub-consumer")
    return -1 if got is None else int(got["spec"].get("replicas", 1))


def _event(c: Cluster, tok: str, n: int) -> float:
    """Publish order ``n`` to ``orders-<tok>``; returns the time just before."""
    from tests.e2e.stack_funcd_pods import xadd_order

    t0 = time.perf_counter()
    xadd_order(c.redis, f"orders-{tok}", n, "bench")
    return t0


def _handled(c: Cluster, tok: str, n: int) -> Callable[[], bool]:
    from tests.e2e.stack_funcd_pods import processed_numbers

    return lambda: n in processed_numbers(c.redis, tok)


def cold_round(c: Cluster, ns: str, tok: str, n: int) -> dict[str, Any]:
    """Wait until KEDA has scaled pubsub-consumer to zero, publish one order → handled in a new pod."""
    from tests.e2e.stack_funcd_pods import pod_is_ready
    from tests.e2e.stack_procs import wait_until

    t = time.perf_counter()
    wait_until(
        lambda: _replicas(c, ns) == 0 and not pods(c.api, ns, "pubsub-consumer"),
        f"KEDA to scale {ns}/pubsub-consumer to zero",
        c.timeout,
        c.procs,
        interval=0.2,
    )
    waited = round(time.perf_counter() - t, 1)
    pod_names: list[str] = []

    def pod_ready() -> bool:
        ready = [p for p in pods(c.api, ns, "pubsub-consumer") if pod_is_ready(p)]
        pod_names[:] = [p["metadata"]["name"] for p in ready]
        return bool(ready)

    steps = [
        ("replicas_1", lambda: _replicas(c, ns) >= 1),
        ("pod_ready", pod_ready),
        ("handled", _handled(c, tok, n)),
    ]
    t0 = _event(c, tok, n)
    marks = _watch(c, t0, f"order {n} in {ns} from zero", steps)
    return {"waited_for_zero_s": waited, "pods": pod_names, **marks}


def warm_round(c: Cluster, tok: str, n: int) -> dict[str, Any]:
    """One order to the Function kept at one replica → handled (Redis polled every 5 ms)."""
    t0 = _event(c, tok, n)
    return _watch(c, t0, f"order {n} to the running pod", [("handled", _handled(c, tok, n))], 0.005)


def bench_scale(c: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    from tests.e2e.stack_funcd_pods import (
        consumer_function,
        create_restricted_namespace,
        delete_consumer_streams,
        pod_is_ready,
    )
    from tests.e2e.stack_procs import wait_until

    keda = {"pollingInterval": args.pods_polling, "cooldownPeriod": args.pods_cooldown}
    cold_ns, cold_tok = f"cold-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:8]
    warm_ns, warm_tok = f"warm-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:8]
    kw = {"polling_interval": args.pods_polling, "cooldown": args.pods_cooldown}
    for ns, tok, minimum in ((cold_ns, cold_tok, 0), (warm_ns, warm_tok, 1)):
        create_restricted_namespace(c.kubectl, ns)
        fn = consumer_function(c.images, c.node_redis, tok, min_replicas=minimum, **kw)
        c.kubectl.apply(fn, "-n", ns)
    try:
        wait_until(
            lambda: any(pod_is_ready(p) for p in pods(c.api, warm_ns, "pubsub-consumer")),
            "the warm pubsub-consumer pod Ready",
            c.timeout,
            c.procs,
        )
        common.log("pods: warm-up order to the running pod (not measured)")
        warmup = warm_round(c, warm_tok, 1000)
        rounds = []
        for r in range(args.pods_cold_rounds):
            cold = cold_round(c, cold_ns, cold_tok, r)
            common.log(f"pods: scale-from-zero round {r + 1}: handled after {cold['handled']}s {cold}")
            warm = warm_round(c, warm_tok, r)
            common.log(f"pods: warm round {r + 1}: handled after {warm['handled']}s")
            rounds.append({"cold": cold, "warm": warm, "ratio": round(cold["handled"] / warm["handled"], 1)})
        return {"keda": keda, "warmup_warm": warmup, "rounds": rounds}
    finally:
        for ns, tok in ((cold_ns, cold_tok), (warm_ns, warm_tok)):
            delete_consumer_streams(c.redis, tok)
            c.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": common.machine_info()}
    workdir = common.make_logdir()
    common.log(f"pods: work directory {workdir}")
    with contextlib.ExitStack() as es:
        cluster, facts = start_cluster(es, workdir, args.pods_timeout)
        result.update(facts)
        result["http"] = bench_http(cluster, args.pods_rounds)
        result["scale"] = bench_scale(cluster, args)
        common.log("pods: stopping the stack")
    # Stopped cleanly: the node's image store and logs go too (kept when anything failed).
    shutil.rmtree(workdir, ignore_errors=True)
    result["machine"]["loadavg_end"] = common.loadavg()
    result["command"] = " ".join(["bench/run.py", *sys.argv[1:]])
    return result


# ---------------------------------------------------------------- report


def _row(label: str, values: list[float], unit: float = 1.0, fmt: str = "{:.2f}") -> list[str]:
    shown = [fmt.format(v * unit) for v in values]
    return [label, " / ".join(shown), fmt.format(statistics.median(values) * unit)]


def markdown(result: dict[str, Any]) -> str:
    m, v = result["machine"], result["versions"]
    hr, sr = result["http"]["rounds"], result["scale"]["rounds"]
    ours = [r["ours"] for r in hr]
    peer = [r["peer"] for r in hr]
    cold = [r["cold"] for r in sr]
    warm = [r["warm"]["handled"] for r in sr]
    http_ratio = statistics.median(x["first_200"] for x in ours) / statistics.median(
        x["first_200"] for x in peer
    )
    cold_ratio = statistics.median(x["handled"] for x in cold) / statistics.median(warm)
    keda = result["scale"]["keda"]

    def diff(rows: list[dict[str, Any]], a: str, b: str) -> list[float]:
        return [r[b] - r[a] for r in rows]

    lines = [
        f"Measured {m['date_utc']} with `.venv/bin/python {result['command']}` "
        "(raw data: `bench/results/pods.json`).",
        "",
        f"- Machine: {m['cores']} cores, {m['memory_mib']} MiB RAM, {m['cpu_model']}; "
        f"Linux {m['kernel']}; Python {m['python']}",
        f"- Load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}.",
        f"- Kubernetes {v['kubernetes']} (etcd, kube-apiserver, controller-manager, scheduler, one kubelet "
        f"with containerd), KEDA {v['keda']}, Dapr {v['dapr']} (daprd container in the pod), "
        f"Redis {v['redis']}; `{result['controller_command']}`.",
        f"- Samples built with `funcd build` and imported into the node in {result['images_s']} s "
        "(not in any figure); one unmeasured warm-up each way before the rounds.",
        "",
        "hello-http: apply into a fresh restricted namespace → first HTTP 200 from its pod IP (seconds, "
        "each round / median):",
        "",
        common.md_table(
            ["figure", "each round", "median"],
            [
                _row("funcd: `kubectl apply` of the Function → first 200", [x["first_200"] for x in ours]),
                _row("  controller: apply → Deployment exists", [x["deployment"] for x in ours]),
                _row(
                    "  controller: apply → status.observedGeneration",
                    [x["observed_generation"] for x in ours],
                ),
                _row("  node: Deployment → pod Ready", diff(ours, "deployment", "pod_ready")),
                _row("  node: pod Ready → endpoint ready → first 200", diff(ours, "pod_ready", "first_200")),
                _row(
                    "peer: `kubectl apply --server-side` of the rendered objects → first 200",
                    [x["first_200"] for x in peer],
                ),
                _row("  peer: apply → Deployment exists", [x["deployment"] for x in peer]),
                _row("  peer node: Deployment → pod Ready", diff(peer, "deployment", "pod_ready")),
                _row("  peer node: pod Ready → first 200", diff(peer, "pod_ready", "first_200")),
                [
                    "ratio funcd / peer (first 200)",
                    " / ".join(f"{r['ratio']:.2f}" for r in hr),
                    f"{http_ratio:.2f}",
                ],
            ],
        ),
        "",
        f"pubsub-consumer (`dapr.mode: container`), KEDA pollingInterval {keda['pollingInterval']} s, "
        f"cooldownPeriod {keda['cooldownPeriod']} s: one order XADDed to its Redis stream → its output on "
        "the output stream (seconds):",
        "",
        common.md_table(
            ["figure", "each round", "median"],
            [
                _row("cold (scaled to zero): event → handled in a new pod", [x["handled"] for x in cold]),
                _row("  event → Deployment replicas 1 (KEDA)", [x["replicas_1"] for x in cold]),
                _row("  replicas 1 → pod Ready", diff(cold, "replicas_1", "pod_ready")),
                _row("  pod Ready → handled", diff(cold, "pod_ready", "handled")),
                _row("warm (minReplicas 1, running): event → handled (ms)", warm, 1000, "{:.0f}"),
                [
                    "ratio cold / warm",
                    " / ".join(f"{r['ratio']:.0f}" for r in sr),
                    f"{cold_ratio:.0f}",
                ],
            ],
        ),
        "",
        "- Waited for KEDA to scale to zero before each cold round: "
        + " / ".join(f"{x['waited_for_zero_s']}" for x in cold)
        + " s.",
    ]
    return "\n".join(lines)
