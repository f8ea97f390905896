"""The controller (issue 8): render throughput, 200 Functions from apply to reconciled, memory at 1,000.

Needs the repo's venv (the controller and its ``kubernetes`` client) and the testbin etcd,
kube-apiserver, kubectl and the KEDA and Dapr CRDs (``make testbin``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import common

NAME = "controller"
DESCRIPTION = "render Functions/s; 200 Functions apply → reconciled vs kubectl apply --server-side; RSS"

sys.path.insert(0, str(common.ROOT))
sys.path.insert(0, str(common.ROOT / "controllers"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("controller")
    g.add_argument("--ctl-functions", type=int, default=200, help="Functions applied per round (200)")
    g.add_argument("--ctl-rounds", type=int, default=2, help="controller/peer rounds, taking turns (2)")
    g.add_argument("--ctl-memory-functions", type=int, default=1000, help="Functions for the RSS figure")
    g.add_argument("--ctl-render-rounds", type=int, default=5, help="render rounds of 1 s each (5)")
    g.add_argument(
        "--ctl-workers", type=int, default=0, help="funcd controller --workers (default: its own default)"
    )
    g.add_argument("--ctl-timeout", type=float, default=300.0, help="seconds to wait for reconciled")


def representative(name: str) -> dict[str, Any]:
    """A Function with an HTTP trigger, a pub/sub input, an output and scaleOptions (minReplicas 0)."""
    return {
        "apiVersion": "funcd.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {
            "version": "v1",
            "image": "funcd/bench:1",
            "serving": {
                "triggers": {
                    "http": {"port": 8080},
                    "inputs": [{"dapr": {"name": "orders", "topic": "orders"}}],
                },
                "outputs": [{"dapr": {"name": "orders", "topic": "processed", "outputName": "processed"}}],
                "pubsub": {
                    "orders": {
                        "type": "pubsub.redis",
                        "version": "v1",
                        "metadata": [{"name": "redisHost", "value": "redis:6379"}],
                    }
                },
                "params": {"GREETING": "hello"},
                "scaleOptions": {
                    "minReplicas": 0,
                    "maxReplicas": 5,
                    "keda": {"scaledObject": {"pollingInterval": 5, "cooldownPeriod": 30}},
                },
            },
        },
    }


# ---------------------------------------------------------------- (a) render


def bench_render(rounds: int) -> dict[str, Any]:
    from funcd_controller.render import render

    from functions_framework.model import parse_function

    doc = representative("bench")
    doc["metadata"].update({"namespace": "bench", "uid": "00000000-0000-0000-0000-000000000001"})
    fn = parse_function(doc, "bench Function")
    kinds = [o["kind"] for o in render(fn).objects]

    cpu: list[float] = []

    def one_round(with_parse: bool) -> float:
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            for _ in range(100):
                render(parse_function(doc, "bench Function") if with_parse else fn)
            n += 100
            elapsed = time.perf_counter() - t0
            if elapsed >= 1.0:
                if not with_parse:
                    cpu.append(n / (time.process_time() - c0))
                return n / elapsed

    for _ in range(200):  # warm-up
        render(fn)
    render_only = [round(one_round(False)) for _ in range(rounds)]
    with_parse = [round(one_round(True)) for _ in range(rounds)]
    return {
        "objects": kinds,
        "render_per_s_rounds": render_only,
        "render_per_s": round(statistics.median(render_only)),
        # Renders per second of this process's own CPU time: what the figure would be on an idle core.
        "render_per_cpu_s_rounds": [round(x) for x in cpu],
        "render_per_cpu_s": round(statistics.median(cpu)),
        "parse_render_per_s_rounds": with_parse,
        "parse_render_per_s": round(statistics.median(with_parse)),
    }


# ---------------------------------------------------------------- the control plane


def _install_crds(kubectl: Any, stack: ModuleType) -> dict[str, str]:
    from tests.e2e.stack_kube import crds_established

    dirs = {
        "funcd": common.ROOT / "manifests" / "crds",
        "keda": Path(stack.data_dir("keda", "crds")),
        "dapr": Path(stack.data_dir("daprd", "crds")),
    }
    names = []
    for path in dirs.values():
        kubectl.apply(path, server_side=True)
        for f in sorted(path.glob("*.yaml")):
            for line in f.read_text().splitlines():
                if line.startswith("  name: ") and "." in line:
                    names.append(line.split(":", 1)[1].strip())
                    break
    crds_established(kubectl, names)
    return {k: str(v) for k, v in dirs.items()}


def _functions(prefix: str, n: int) -> list[dict[str, Any]]:
    return [representative(f"{prefix}-{i:04d}") for i in range(n)]


def _reconciled(api: common.Api, ns: str) -> int:
    items = api.get(f"/apis/funcd.dev/v1alpha1/namespaces/{ns}/functions").get("items") or []
    return sum(
        1
        for fn in items
        if (fn.get("status") or {}).get("observedGeneration") == fn["metadata"].get("generation")
    )


def _objects(api: common.Api, ns: str) -> dict[str, int]:
    paths = {
        "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
        "Service": f"/api/v1/namespaces/{ns}/services",
        "ScaledObject": f"/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects",
        "Component": f"/apis/dapr.io/v1alpha1/namespaces/{ns}/components",
    }
    return {kind: api.count(path) for kind, path in paths.items()}


def controller_round(kubectl: Any, api: common.Api, ns: str, n: int, timeout: float) -> dict[str, Any]:
    """kubectl apply of ``n`` Functions into a fresh namespace → all have status.observedGeneration."""
    kubectl("create", "namespace", ns)
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": _functions("fn", n)})
    t0 = time.perf_counter()
    kubectl("apply", "-n", ns, "-f", "-", input=manifest, timeout=timeout)
    applied = time.perf_counter() - t0
    deadline = t0 + timeout
    # Listing n Functions costs the API server too: poll about 4 times a second for 200, once for 1,000.
    interval = min(1.0, max(0.25, n / 1000))
    done = 0
    while time.perf_counter() < deadline:
        done = _reconciled(api, ns)
        if done >= n:
            break
        time.sleep(interval)
    total = time.perf_counter() - t0
    if done < n:
        raise RuntimeError(f"controller: {done}/{n} Functions reconciled in {ns} after {timeout:g}s")
    return {
        "namespace": ns,
        "functions": n,
        "kubectl_apply_s": round(applied, 2),
        "reconciled_s": round(total, 2),
        "poll_interval_s": interval,
        "objects": _objects(api, ns),
    }


def rendered_objects(n: int, ns: str) -> list[dict[str, Any]]:
    from funcd_controller.render import render

    from functions_framework.model import parse_function

    out: list[dict[str, Any]] = []
    for doc in _functions("fn", n):
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = ns
        out.extend(render(parse_function(doc, doc["metadata"]["name"])).objects)
    return out


def peer_round(kubectl: Any, api: common.Api, ns: str, n: int, timeout: float) -> dict[str, Any]:
    """``kubectl apply --server-side`` of the same rendered objects into a fresh namespace."""
    kubectl("create", "namespace", ns)
    objects = rendered_objects(n, ns)
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    t0 = time.perf_counter()
    kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-", input=manifest, timeout=timeout)
    total = time.perf_counter() - t0
    return {
        "namespace": ns,
        "functions": n,
        "rendered_objects": len(objects),
        "apply_s": round(total, 2),
        "objects": _objects(api, ns),
    }


def _stop_reconciling(kubectl: Any, ns: str) -> None:
    """Delete a round's Functions so that the controller stops looking at them (no GC runs here)."""
    kubectl("delete", "fn", "--all", "-n", ns, "--wait=false", timeout=300)


def _metrics(url: str) -> dict[str, float]:
    """The controller's own counters from /metrics: reconciles and the time they took."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        for prefix, key in (
            ('funcd_controller_reconciles_total{result="success"}', "reconciles"),
            ('funcd_controller_reconciles_total{result="error"}', "errors"),
            ("funcd_controller_reconcile_seconds_sum", "reconcile_seconds"),
        ):
            if line.startswith(prefix + " "):
                out[key] = float(line.rsplit(" ", 1)[1])
    return out


def _measured(proc: Any, metrics_url: str, round_fn: Any) -> dict[str, Any]:
    """Run one controller round; add the controller's CPU time and reconciles during it."""
    m0, cpu0 = _metrics(metrics_url), common.proc_cpu_ticks(proc.pid)
    res: dict[str, Any] = round_fn()
    m1, cpu1 = _metrics(metrics_url), common.proc_cpu_ticks(proc.pid)
    res["controller_cpu_s"] = round((cpu1 - cpu0) / common.CLK_TCK, 1)
    res["reconciles"] = int(m1.get("reconciles", 0) - m0.get("reconciles", 0))
    res["reconcile_errors"] = int(m1.get("errors", 0) - m0.get("errors", 0))
    spent = m1.get("reconcile_seconds", 0) - m0.get("reconcile_seconds", 0)
    res["mean_reconcile_ms"] = round(1000 * spent / res["reconciles"], 1) if res["reconciles"] else None
    return res


def _memory(pid: int) -> dict[str, Any]:
    status = Path(f"/proc/{pid}/status").read_text()
    values = {}
    for line in status.splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(line.split()[1]) / 1024, 1)
    return {"rss_mib": values.get("VmRSS"), "peak_rss_mib": values.get("VmHWM")}


def bench_cluster(args: argparse.Namespace) -> dict[str, Any]:
    from tests.e2e.stack_funcd_controller import start_funcd_controller
    from tests.e2e.stack_kube import Kubectl, start_kube_apiserver

    stack = common.testbin()
    workdir = common.make_logdir()
    common.log(f"controller: work directory {workdir}")
    server = start_kube_apiserver(
        Path(stack.binary("etcd")),
        Path(stack.binary("kube-apiserver")),
        stack.version("kube-apiserver"),
        workdir / "kube",
        service_cidr="10.96.0.0/16",  # every rendered Function has a ClusterIP Service; a /24 holds 254
    )
    out: dict[str, Any] = {"kube_apiserver": stack.version("kube-apiserver")}
    proc = None
    try:
        kubectl = Kubectl(Path(stack.binary("kubectl")), server.kubeconfig)
        api = common.Api(server.url, server.token, server.ca_file)
        out["crds"] = _install_crds(kubectl, stack)
        out["versions"] = {"keda": stack.version("keda"), "dapr": stack.version("daprd")}
        flags = ["--workers", str(args.ctl_workers)] if args.ctl_workers else []
        proc = start_funcd_controller(
            kubectl,
            server,
            workdir,
            *flags,
            funcd=[str(common.ROOT / ".venv" / "bin" / "funcd")],
            token_duration="2h",
        )
        metrics = proc.metrics_url
        out["controller_command"] = "funcd controller --kubeconfig SA_KUBECONFIG --health-port PORT" + (
            f" --workers {args.ctl_workers}" if args.ctl_workers else ""
        )
        out["controller_idle"] = _memory(proc.pid)
        # Warm-up, not measured: the controller's and kubectl's API discovery, first connections.
        common.log("controller: warm-up (1 Function each way)")
        warm = controller_round(kubectl, api, "warmup", 1, args.ctl_timeout)
        _stop_reconciling(kubectl, "warmup")
        peer_round(kubectl, api, "warmup-peer", 1, args.ctl_timeout)
        out["warmup"] = warm
        n = args.ctl_functions
        rounds: list[dict[str, Any]] = []
        for r in range(args.ctl_rounds):
            common.log(f"controller: round {r + 1}: {n} Functions through the controller")
            ctl = _measured(
                proc, metrics, lambda r=r: controller_round(kubectl, api, f"ctl-{r + 1}", n, args.ctl_timeout)
            )
            common.log(f"controller: reconciled in {ctl['reconciled_s']}s; {ctl['objects']}")
            _stop_reconciling(kubectl, f"ctl-{r + 1}")
            common.log(f"controller: round {r + 1}: kubectl apply --server-side of the rendered objects")
            peer = peer_round(kubectl, api, f"peer-{r + 1}", n, args.ctl_timeout)
            common.log(f"controller: peer applied in {peer['apply_s']}s; {peer['objects']}")
            rounds.append(
                {"controller": ctl, "peer": peer, "ratio": round(ctl["reconciled_s"] / peer["apply_s"], 3)}
            )
        out["rounds"] = rounds
        m = args.ctl_memory_functions
        if m <= 0:
            return out
        common.log(f"controller: {m} Functions for the memory figure")
        mem = _measured(
            proc, metrics, lambda: controller_round(kubectl, api, "memory", m, args.ctl_timeout * 3)
        )
        mem.update(_memory(proc.pid))
        mem["note"] = "RSS right when all were reconciled; peak = VmHWM since the controller started"
        common.log(f"controller: {m} reconciled in {mem['reconciled_s']}s, RSS {mem['rss_mib']} MiB")
        out["memory"] = mem
        out["controller_log_tail"] = proc.log_tail(10)
    finally:
        if proc is not None:
            proc.stop()
        server.stop()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": common.machine_info()}
    common.log("controller: render throughput")
    result["render"] = bench_render(args.ctl_render_rounds)
    common.log(f"controller: render {result['render']['render_per_s']}/s")
    result["cluster"] = bench_cluster(args)
    result["machine"]["loadavg_end"] = common.loadavg()
    result["command"] = " ".join(["bench/run.py", *sys.argv[1:]])
    return result


def markdown(result: dict[str, Any]) -> str:
    m, r, c = result["machine"], result["render"], result["cluster"]
    rounds = c["rounds"]
    ctl = [x["controller"]["reconciled_s"] for x in rounds]
    peer = [x["peer"]["apply_s"] for x in rounds]
    ratio = statistics.median(ctl) / statistics.median(peer)
    # --ctl-memory-functions 0 skips the memory round (quick checks): dashes in its rows.
    mem = c.get("memory") or {
        k: "-"
        for k in (
            *("peak_rss_mib", "rss_mib", "kubectl_apply_s", "reconciled_s", "controller_cpu_s"),
            *("reconciles", "reconcile_errors", "mean_reconcile_ms", "objects"),
        )
    } | {"functions": 0, "namespace": "memory"}
    n = rounds[0]["controller"]["functions"]
    lines = [
        f"Measured {m['date_utc']} with `.venv/bin/python {result['command']}` "
        "(raw data: `bench/results/controller.json`).",
        "",
        f"- Machine: {m['cores']} cores, {m['memory_mib']} MiB RAM, {m['cpu_model']}; "
        f"Linux {m['kernel']}; Python {m['python']}",
        f"- Load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}.",
        f"- kube-apiserver and etcd from testbin (Kubernetes {c['kube_apiserver']}), "
        f"KEDA {c['versions']['keda']} and Dapr {c['versions']['dapr']} CRDs; "
        "no controller-manager (no pods, no garbage collection).",
        "",
        "Render: " + ", ".join(r["objects"]) + " per Function.",
        "",
        common.md_table(
            ["figure", "each round", "median", "target", "result"],
            [
                [
                    "render, Functions/s (parsed once)",
                    " / ".join(f"{x:,}" for x in r["render_per_s_rounds"]),
                    f"{r['render_per_s']:,}",
                    ">= 5,000",
                    "PASS" if r["render_per_s"] >= 5000 else "FAIL",
                ],
                [
                    "render, Functions per CPU second of the bench process",
                    " / ".join(f"{x:,}" for x in r["render_per_cpu_s_rounds"]),
                    f"{r['render_per_cpu_s']:,}",
                    "(information)",
                    "",
                ],
                [
                    "parse + render, Functions/s",
                    " / ".join(f"{x:,}" for x in r["parse_render_per_s_rounds"]),
                    f"{r['parse_render_per_s']:,}",
                    "(information)",
                    "",
                ],
                [
                    f"{n} Functions, kubectl apply → all reconciled (s)",
                    " / ".join(f"{x:.2f}" for x in ctl),
                    f"{statistics.median(ctl):.2f}",
                    "",
                    "",
                ],
                [
                    f"kubectl apply --server-side of their {rounds[0]['peer']['rendered_objects']} "
                    "rendered objects (s)",
                    " / ".join(f"{x:.2f}" for x in peer),
                    f"{statistics.median(peer):.2f}",
                    "",
                    "",
                ],
                [
                    "ratio controller / kubectl",
                    " / ".join(f"{x['ratio']:.2f}" for x in rounds),
                    f"{ratio:.2f}",
                    "<= 1.5",
                    "PASS" if ratio <= 1.5 else "FAIL",
                ],
                [
                    f"controller RSS with {mem['functions']:,} Functions reconciled (MiB)",
                    f"peak {mem['peak_rss_mib']}",
                    f"{mem['rss_mib']}",
                    "reported",
                    "",
                ],
            ],
        ),
        "",
        "- Controller work per round (its CPU time, reconciles done, mean reconcile): "
        + "; ".join(
            f"{x['controller']['namespace']} {x['controller']['controller_cpu_s']} s CPU, "
            f"{x['controller']['reconciles']} reconciles ({x['controller']['reconcile_errors']} errors), "
            f"{x['controller']['mean_reconcile_ms']} ms"
            for x in [*rounds, {"controller": mem}]
        )
        + ".",
        f"- Controller idle (watches listed, no Function): RSS {c['controller_idle']['rss_mib']} MiB.",
        f"- {mem['functions']:,} Functions: kubectl apply took {mem['kubectl_apply_s']} s, all reconciled "
        f"after {mem['reconciled_s']} s.",
        "- Objects found after each round: "
        + "; ".join(
            f"{x['controller']['namespace']} {x['controller']['objects']}, "
            f"{x['peer']['namespace']} {x['peer']['objects']}"
            for x in rounds
        )
        + f"; memory {mem['objects']}.",
        "- `kubectl apply` of the Functions alone (inside the controller's time): "
        + " / ".join(f"{x['controller']['kubectl_apply_s']:.2f}" for x in rounds)
        + " s.",
    ]
    return "\n".join(lines)
