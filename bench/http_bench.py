"""HTTP benchmark (issue 2): funcd vs Google's functions-framework 3.x vs bare Flask on granian.

Every server answers the same request (POST / with {"name":"bench"}) with {"message": "Hello, bench!"}.
Phases:

1. explore: short loads to pick funcd's best ``--threads`` (reported only; the table uses funcd's
   defaults) and Google's best THREADS for WORKERS=1 and WORKERS=cores;
2. load: each server once for ``--duration`` after a short warm-up; memory (RSS and PSS over the
   process tree) is read right after the load, with the server still up;
3. cold start: exec → first 200 to that same request, ``--cold-runs`` times, median reported.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import common
import http_peers
from common import BENCH, CORES, ROOT, Probe, ServerSpec, log

NAME = "http"
DESCRIPTION = "funcd vs Google's functions-framework 3.x vs bare Flask on granian, under wrk"

VENV_BIN = ROOT / ".venv" / "bin"  # funcd, granian and Flask come from the repo's venv
GCF_VENV = BENCH / ".venvs" / "gcf"
GCF_REQUIREMENT = "functions-framework>=3,<4"
PEERS = BENCH / "peers"
PROBE = Probe(expect={"message": "Hello, bench!"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("http")
    g.add_argument(
        "--explore-duration",
        type=float,
        default=3.0,
        help="seconds per load in the exploration phase (default 3)",
    )
    g.add_argument(
        "--explore-rounds",
        type=int,
        default=2,
        help="passes over the explored configurations; each keeps its best (default 2)",
    )
    g.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (kept anyway on failure)")
    g.add_argument(
        "--no-explore",
        action="store_true",
        help="skip the --threads/THREADS exploration; Google's framework keeps its default THREADS",
    )
    g.add_argument(
        "--cold-runs", type=int, default=5, help="cold starts per server (default 5; median reported)"
    )
    g.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each load")
    g.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="load every server this many times, interleaved; the round with the most req/s is "
        "reported (default 2)",
    )


# ---------------------------------------------------------------- setup


def funcd_default_threads() -> int:
    """funcd's default --threads, read from its own CLI parser (4 if that cannot be read)."""
    try:
        from functions_framework.cli import build_parser

        parser = build_parser()
        for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
            run = action.choices["run"]  # type: ignore[index]
            for a in run._actions:
                if a.dest == "threads" and isinstance(a.default, int):
                    return a.default
    except Exception as exc:  # the CLI is someone else's and may change
        log(f"could not read funcd's default --threads ({exc}); assuming 4")
    return 4


def ensure_gcf_venv() -> dict[str, str]:
    py = GCF_VENV / "bin" / "python"
    if not (GCF_VENV / "bin" / "functions-framework").exists():
        log(f"creating {GCF_VENV.relative_to(ROOT)} with {GCF_REQUIREMENT!r}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(GCF_VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", GCF_REQUIREMENT],
            check=True,
        )
    out = subprocess.run(
        [
            str(py),
            "-c",
            "import importlib.metadata as m;"
            "print(*(m.version(p) for p in ('functions-framework','gunicorn','flask','werkzeug')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return dict(zip(("functions-framework", "gunicorn", "flask", "werkzeug"), out, strict=False))


def local_versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for p in ("funcd", "granian", "flask", "werkzeug"):
        try:
            out[p] = version(p)
        except Exception:
            out[p] = "?"
    return out


# ---------------------------------------------------------------- servers


def funcd_spec(
    key: str,
    label: str,
    path: Path,
    threads: int | None = None,
    extra: list[str] | None = None,
    notes: str = "",
) -> ServerSpec:
    folder = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    argv = [str(VENV_BIN / "funcd"), "run", str(folder), "--port", "{port}"]
    if threads is not None:
        argv += ["--threads", str(threads)]
    argv += extra or []
    return ServerSpec(key, label, argv, notes=notes, info={"workers": CORES, "threads": threads or "default"})


def gcf_spec(workers: int, threads: int | None) -> ServerSpec:
    env = {"WORKERS": str(workers)}
    if threads is not None:
        env["THREADS"] = str(threads)
    t = threads if threads is not None else CORES * 4
    argv = [
        str(GCF_VENV / "bin" / "functions-framework"),
        "--target",
        "hello",
        "--source",
        str((PEERS / "gcf_main.py").relative_to(ROOT)),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    return ServerSpec(
        f"gcf-w{workers}-t{t}",
        f"functions-framework WORKERS={workers} THREADS={t}",
        argv,
        env=env,
        info={
            "workers": workers,
            "threads": t,
            "worker_class": "gthread" if t > 1 else "sync (gunicorn's choice for THREADS=1)",
        },
    )


def granian_flask_spec(blocking_threads: int) -> ServerSpec:
    argv = [
        str(VENV_BIN / "granian"),
        "--working-dir",
        str(PEERS.relative_to(ROOT)),
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        str(CORES),
        "--blocking-threads",
        str(blocking_threads),
        "--backlog",
        "2048",
        "--no-log",
        "flask_app:app",
    ]
    return ServerSpec(
        "flask-granian",
        f"Flask on granian, {CORES} workers x {blocking_threads} threads",
        argv,
        info={"workers": CORES, "threads": blocking_threads},
    )


def command_line(spec: ServerSpec) -> str:
    env = " ".join(f"{k}={v}" for k, v in spec.env.items())
    argv = [a.replace(str(ROOT) + "/", "") for a in spec.argv]
    cwd = "" if spec.cwd == ROOT else f"(cd {spec.cwd.relative_to(ROOT)} && "
    text = " ".join(x for x in (env, *argv) if x).replace("{port}", "PORT")
    return f"{cwd}{text})" if cwd else text


# ---------------------------------------------------------------- measuring


def load(
    spec: ServerSpec, args: argparse.Namespace, logdir: Path, duration: float, with_memory: bool
) -> dict[str, Any]:
    with common.running(spec, logdir, PROBE) as server:
        answer = common.check(server.port, PROBE)
        if args.warmup > 0:
            common.run_wrk(server.port, args.warmup, args.connections, args.wrk_threads)
        la = common.loadavg()
        res = common.run_wrk(server.port, duration, args.connections, args.wrk_threads, server.pid)
        res["loadavg_before"] = la
        # Still serving after the load?
        common.check(server.port, PROBE)
        if with_memory:
            res["memory"] = common.memory(server.pid)
        code = server.stop()
        res["exit_code"] = code
        res["killed_after_sigterm"] = server.killed
    res["answer"] = answer
    raw = res.pop("raw")
    res["wrk_output"] = raw
    mem = res.get("memory")
    log(
        f"  {spec.key}: {res['rps']:.0f} req/s, p99 {res.get('p99_ms', float('nan')):.2f} ms"
        + (f", RSS {mem['rss_mib']} MiB, PSS {mem['pss_mib']} MiB" if mem else "")
        + f"; CPU server {res['cpu']['server_pct']}% {res['cpu']['per_process_pct']}"
        + f" wrk {res['cpu']['wrk_pct']}%"
        + f" other {res['cpu']['other_pct']}%"
    )
    return res


def explore(args: argparse.Namespace, logdir: Path, hello: Path) -> dict[str, Any]:
    """Short loads over funcd --threads and Google's WORKERS x THREADS, ``--explore-rounds`` passes.

    Each configuration keeps its best pass (the one least disturbed by other load); no warm-up.
    """
    thread_values = sorted({1, 2, 4, 8, CORES * 4})
    configs: list[tuple[str, str, ServerSpec]] = [
        ("funcd_threads", str(t), funcd_spec(f"funcd-t{t}", f"funcd --threads {t}", hello, threads=t))
        for t in thread_values
    ]
    configs += [(f"gcf_w{w}", str(t), gcf_spec(w, t)) for w in sorted({1, CORES}) for t in thread_values]
    quick = argparse.Namespace(**{**vars(args), "warmup": 0})
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rnd in range(1, args.explore_rounds + 1):
        log(
            f"explore pass {rnd}/{args.explore_rounds}: funcd --threads {thread_values}, then "
            f"functions-framework WORKERS in {sorted({1, CORES})} x THREADS {thread_values}; "
            f"{args.explore_duration:g}s each"
        )
        for group, t, spec in configs:
            r = load(spec, quick, logdir, args.explore_duration, with_memory=False)
            runs.setdefault((group, t), []).append({k: r[k] for k in ("rps", "p99_ms", "cpu") if k in r})
    out: dict[str, Any] = {"duration_s": args.explore_duration, "passes": args.explore_rounds, "gcf": {}}
    best = {
        key: max(rs, key=lambda x: x["rps"]) | {"rps_all_passes": [x["rps"] for x in rs]}
        for key, rs in runs.items()
    }
    out["funcd_threads"] = {t: best[(g, t)] for g, t, _ in configs if g == "funcd_threads"}
    for g, t, _ in configs:
        if g.startswith("gcf_w"):
            out["gcf"].setdefault(g.removeprefix("gcf_w"), {})[t] = best[(g, t)]
    out["funcd_best_threads"] = int(max(out["funcd_threads"], key=lambda t: out["funcd_threads"][t]["rps"]))
    out["gcf_best_threads"] = {w: int(max(ts, key=lambda t: ts[t]["rps"])) for w, ts in out["gcf"].items()}
    return out


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    logdir = common.make_logdir()
    machine = common.machine_info()
    log(
        f"machine: {machine['cores']} cores, {machine['memory_mib']} MiB, {machine['cpu_model']}, "
        f"load average {machine['loadavg_start']}; server logs in {logdir}"
    )
    gcf_versions = ensure_gcf_venv()
    peer_venvs = http_peers.ensure()
    for name, v in peer_venvs.items():
        if "error" in v:
            log(f"{name}: its virtualenv does not import, not measured: {v['error']}")
    hello = PEERS / "funcd_hello"
    default_threads = funcd_default_threads()

    exploration = None if args.no_explore else explore(args, logdir, hello)
    gcf_threads = {
        str(w): (exploration["gcf_best_threads"][str(w)] if exploration else None) for w in sorted({1, CORES})
    }

    specs = [
        funcd_spec(
            "funcd",
            f"funcd (defaults: {CORES} workers x {default_threads} threads)",
            hello,
            notes="bench/peers/funcd_hello: handler(context, event), no per-request log line",
        ),
        *[gcf_spec(int(w), t) for w, t in gcf_threads.items()],
        granian_flask_spec(default_threads),
        *http_peers.specs(peer_venvs),
        funcd_spec(
            "funcd-access-log",
            "funcd with --access-log (one JSON line per request)",
            hello,
            extra=["--access-log"],
            notes="the same function with the access log on (off by default); lines go to a file",
        ),
        funcd_spec(
            "funcd-sample",
            "funcd samples/hello-http (logs a line per request)",
            ROOT / "samples" / "hello-http",
            notes="the sample as shipped: one JSON log line per request to stderr (here a file)",
        ),
        funcd_spec(
            "funcd-gcf-source",
            "funcd serving peers/gcf_main.py (@http, Flask path)",
            PEERS / "gcf_main.py",
            extra=["--target", "hello"],
            notes="Google-style function, unchanged, on funcd",
        ),
    ]
    servers: dict[str, Any] = {
        spec.key: {
            "label": spec.label,
            "command": command_line(spec),
            "notes": spec.notes,
            **spec.info,
            "rounds": [],
        }
        for spec in specs
    }
    for rnd in range(1, args.rounds + 1):
        log(
            f"load round {rnd}/{args.rounds}: {len(specs)} servers, {args.duration:g}s each, "
            f"{args.connections} connections"
        )
        for spec in specs:
            servers[spec.key]["rounds"].append(load(spec, args, logdir, args.duration, with_memory=True))
    for srv in servers.values():
        best = max(range(len(srv["rounds"])), key=lambda i: srv["rounds"][i]["rps"])
        srv["load"] = srv["rounds"][best]
        srv["reported_round"] = best + 1
        srv["rps_all_rounds"] = [x["rps"] for x in srv["rounds"]]
    log(f"cold start: {args.cold_runs} runs per server, servers taking turns")
    cold = common.cold_starts(specs, logdir, PROBE, args.cold_runs)
    for spec in specs:
        servers[spec.key]["cold_start"] = cold[spec.key]
        log(
            f"  {spec.key}: median {servers[spec.key]['cold_start']['median_s'] * 1000:.0f} ms "
            f"{[round(t * 1000) for t in servers[spec.key]['cold_start']['runs_s']]}"
        )

    gcf_keys = [s.key for s in specs if s.key.startswith("gcf-")]
    gcf_best = max(gcf_keys, key=lambda k: servers[k]["load"]["rps"])
    f, g, fl = servers["funcd"], servers[gcf_best], servers["flask-granian"]
    targets = [
        {
            "target": "requests/s >= 5x Google's best",
            "metric": "rps",
            "reference": gcf_best,
            "ratio": ratio(f["load"]["rps"], g["load"]["rps"]),
            "limit": ">= 5.0",
        },
        {
            "target": "requests/s >= 0.9x bare Flask on granian",
            "metric": "rps",
            "reference": "flask-granian",
            "ratio": ratio(f["load"]["rps"], fl["load"]["rps"]),
            "limit": ">= 0.9",
        },
        {
            "target": "cold start no slower than Google's",
            "metric": "cold start median",
            "reference": gcf_best,
            "ratio": ratio(f["cold_start"]["median_s"], g["cold_start"]["median_s"]),
            "limit": "<= 1.0",
        },
        {
            "target": "memory <= 1.2x Google's",
            "metric": "PSS",
            "reference": gcf_best,
            "ratio": ratio(f["load"]["memory"]["pss_mib"], g["load"]["memory"]["pss_mib"]),
            "limit": "<= 1.2",
            "rss_ratio": ratio(f["load"]["memory"]["rss_mib"], g["load"]["memory"]["rss_mib"]),
        },
    ]
    others = [k for k in ("knative", "ofn") if k in servers]
    if others:
        other_best = max(others, key=lambda k: servers[k]["load"]["rps"])
        targets.append(
            {
                "target": "requests/s >= 5x the best of Knative's and OpenFunction's Python frameworks",
                "metric": "rps",
                "reference": other_best,
                "ratio": ratio(f["load"]["rps"], servers[other_best]["load"]["rps"]),
                "limit": ">= 5.0",
            }
        )
    access = servers["funcd-access-log"]
    costs = [
        {
            "cost": "access log on (--access-log), requests/s relative to off",
            "ratio": ratio(access["load"]["rps"], f["load"]["rps"]),
        }
    ]
    for t in targets:
        op, lim = t["limit"].split()
        t["pass"] = t["ratio"] >= float(lim) if op == ">=" else t["ratio"] <= float(lim)
    machine["loadavg_end"] = common.loadavg()
    if not args.keep_logs:
        shutil.rmtree(logdir, ignore_errors=True)  # tens of MB: the sample logs a line per request
    return {
        "benchmark": NAME,
        "machine": machine,
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "wrk_threads": args.wrk_threads,
            "warmup_s": args.warmup,
            "cold_runs": args.cold_runs,
            "request": 'POST / {"name":"bench"}',
            "funcd_default_threads": default_threads,
        },
        "versions": {"local_venv": local_versions(), "gcf_venv": gcf_versions, **peer_venvs},
        "exploration": exploration,
        "servers": servers,
        "gcf_best": gcf_best,
        "targets": targets,
        "costs": costs,
    }


# ---------------------------------------------------------------- report


def markdown(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["settings"]
    lines = [
        f"Measured {m['date_utc']} with `.venv/bin/python bench/run.py --only http "
        f"--duration {s['duration_s']:g} "
        f"--connections {s['connections']}` (raw data: `bench/results/http.json`).",
        "",
        f"- Machine: {m['cores']} cores, {m['memory_mib']} MiB RAM, {m['cpu_model']}; Linux {m['kernel']}; "
        f"Python {m['python']}; {m['wrk']}",
        f"- Load average (1, 5, 15 min) at start {m['loadavg_start']}, at end {m['loadavg_end']}.",
        f"- Load: `wrk -t{s['wrk_threads']} -c{s['connections']} -d{s['duration_s']:g}s --latency "
        "-s bench/post.lua` "
        f'(POST / with `{{"name":"bench"}}`), after a {s["warmup_s"]:g}s warm-up; wrk runs on the same '
        f"{m['cores']} cores as the server. Every server was loaded {s['rounds']} time(s), the servers "
        "taking "
        "turns; the table shows the round with the most req/s (p99, memory and CPU from that round).",
        f"- Versions: funcd {r['versions']['local_venv'].get('funcd')}, granian "
        f"{r['versions']['local_venv'].get('granian')}, Flask {r['versions']['local_venv'].get('flask')}; "
        f"functions-framework {r['versions']['gcf_venv'].get('functions-framework')} with gunicorn "
        f"{r['versions']['gcf_venv'].get('gunicorn')}; Knative {r['versions'].get('knative', {})}; "
        f"OpenFunction {r['versions'].get('ofn', {})}.",
        "",
    ]
    rows = []
    for key, srv in r["servers"].items():
        ld, mem = srv["load"], srv["load"]["memory"]
        name = f"**{srv['label']}**" if key in ("funcd", r["gcf_best"]) else srv["label"]
        err = ld["non_2xx"] + sum(ld["socket_errors"].values())
        rows.append(
            [
                name,
                f"{ld['rps']:,.0f}",
                " / ".join(f"{x:,.0f}" for x in srv["rps_all_rounds"]),
                f"{ld.get('p99_ms', float('nan')):.2f}",
                f"{srv['cold_start']['median_s'] * 1000:.0f}",
                f"{mem['rss_mib']:.1f}",
                f"{mem['pss_mib']:.1f}",
                mem["processes"],
                err,
                f"{ld['cpu']['server_pct']:.0f} / {ld['cpu']['wrk_pct']:.0f} / {ld['cpu']['other_pct']:.0f}",
            ]
        )
    lines.append(
        common.md_table(
            [
                "server",
                "req/s",
                "req/s each round",
                "p99 ms",
                f"cold start ms (median of {s['cold_runs']})",
                "RSS MiB",
                "PSS MiB",
                "procs",
                "errors",
                "CPU % server / wrk / other",
            ],
            rows,
        )
    )
    lines += ["", f"Google's best configuration here: **{r['servers'][r['gcf_best']]['label']}**.", ""]
    rows = []
    for t in r["targets"]:
        extra = f" (RSS ratio {t['rss_ratio']:.2f})" if "rss_ratio" in t else ""
        rows.append(
            [
                t["target"],
                f"{t['metric']} vs {t['reference']}",
                f"{t['ratio']:.2f}{extra}",
                t["limit"],
                "PASS" if t["pass"] else "FAIL",
            ]
        )
    lines += [
        "Targets (funcd with its defaults vs the reference):",
        "",
        common.md_table(["target", "measure", "ratio", "needed", "result"], rows),
        "",
    ]
    for c in r.get("costs", []):
        lines += [f"Cost: {c['cost']}: **{c['ratio']:.2f}x**.", ""]
    ex = r.get("exploration")
    if ex:
        lines += [
            f"Exploration ({ex['passes']} pass(es) of {ex['duration_s']:g}s per configuration, no warm-up, "
            "same wrk settings; best pass shown as req/s / p99 ms):",
            "",
        ]
        ts = list(ex["funcd_threads"])
        rows = [
            [
                "funcd --threads",
                *[
                    f"{ex['funcd_threads'][t]['rps']:,.0f} / "
                    f"{ex['funcd_threads'][t].get('p99_ms', float('nan')):.1f}"
                    for t in ts
                ],
            ]
        ]
        for w, by_t in ex["gcf"].items():
            rows.append(
                [
                    f"functions-framework WORKERS={w}, THREADS",
                    *[
                        f"{by_t[t]['rps']:,.0f} / {by_t[t].get('p99_ms', float('nan')):.1f}"
                        if t in by_t
                        else ""
                        for t in ts
                    ],
                ]
            )
        lines += [
            common.md_table(["", *[f"{t}" for t in ts]], rows),
            "",
            f"Best funcd `--threads` for this hello function: {ex['funcd_best_threads']} "
            f"(default {s['funcd_default_threads']}); best THREADS for functions-framework: "
            + ", ".join(f"WORKERS={w}: {t}" for w, t in ex["gcf_best_threads"].items())
            + ". These are short loads: differences of 10-15% are within the noise here.",
            "",
        ]
    other = [x["cpu"]["other_pct"] for srv in r["servers"].values() for x in srv["rounds"]]
    if ex:
        other += [x["cpu"]["other_pct"] for x in ex["funcd_threads"].values()]
        other += [x["cpu"]["other_pct"] for by_t in ex["gcf"].values() for x in by_t.values()]
    la = max(m["loadavg_start"][0], m["loadavg_end"][0])
    contended = max(other) > 10 or la > 0.5 * m["cores"]
    lines.append(
        f"Contention: during the loads (all rounds and the exploration), processes other than the server "
        f"and wrk used {min(other):.0f}-"
        f"{max(other):.0f}% of the machine; the load average reached {la:.2f} on {m['cores']} cores. "
        + (
            "Part of that is CPU a server left idle (one gunicorn worker cannot use two cores), the rest was "
            "taken from the server: other jobs (such as a parallel job's Go builds) were running. Absolute "
            "figures are therefore lower and noisier than on an idle machine. The servers took turns under "
            "the same conditions, so the ratios are more trustworthy than the absolutes, but not immune."
            if contended
            else "The machine was otherwise quiet."
        )
    )
    hung = {
        srv["label"]: sum(1 for x in srv["cold_start"]["stops"] if x["killed"])
        for srv in r["servers"].values()
    }
    hung = {k: v for k, v in hung.items() if v}
    failed = {
        srv["label"]: len(srv["cold_start"]["failures"])
        for srv in r["servers"].values()
        if srv["cold_start"]["failures"]
    }
    if hung or failed:
        lines += [
            "",
            "Cold-start runs where SIGTERM (1 s after the first 200) did not stop the server within 20 s, "
            "so its process group was killed: "
            + (", ".join(f"{k}: {v}" for k, v in hung.items()) or "none")
            + ". Runs with no 200 within 30 s (retried): "
            + (", ".join(f"{k}: {v}" for k, v in failed.items()) or "none")
            + ".",
        ]
    lines += ["", "Commands (PORT chosen free per run):", ""]
    lines += [f"- {srv['label']}: `{srv['command']}`" for srv in r["servers"].values()]
    return "\n".join(lines)
