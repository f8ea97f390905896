#!/usr/bin/env python3
"""Real results of docs/observability.md's PromQL, from the test stack (``make promql-results``).

Starts two functions with metrics on, each ``funcd run --workers 2``: samples/hello-http (copied, its
tracing line dropped, since no collector runs here) and docs/screenshots/flaky (a docs function whose
caller picks its duration and outcome). A real Prometheus (testbin ``prometheus``; its query API, no
web UI) scrapes both every second. A paced load of two phases runs for ``--seconds``; then the
documented queries go through ``/api/v1/query`` and ``/api/v1/query_range``, and this writes:

- docs/images/promql-results.json: the load sent and the query API's answers;
- docs/images/promql-{rate,error-ratio,p99}.svg: charts of the range queries (promql_render.py);
- the fragment between the ``promql-results`` markers in docs/observability.md.

    python docs/screenshots/promql.py                the docs' run (60 s of load)
    python docs/screenshots/promql.py --seconds 20   a quick look (writes the same files)

Everything listens on 127.0.0.1; every process started here is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

import promql_render as render  # noqa: E402  (docs/screenshots/promql_render.py)

from tests.e2e.stack_procs import wait_until  # noqa: E402
from tests.e2e.stack_prometheus import Prometheus, start_prometheus  # noqa: E402
from tests.metrics_support import scrape_until  # noqa: E402
from tests.support import Server, testbin_stack  # noqa: E402

DOC = REPO / "docs" / "observability.md"
IMAGES = REPO / "docs" / "images"
RESULTS = IMAGES / "promql-results.json"
FLAKY = Path(__file__).resolve().parent / "flaky"
HELLO = REPO / "samples" / "hello-http"
WORKERS = 2
SCRAPE_INTERVAL = 1.0
WINDOW = "30s"
STEP = 2.0
MAX_SVG_BYTES = 100_000

PLAN = {
    "hello-http": {
        "1": "12/s, 1 in 12 a malformed JSON body (400)",
        "2": "24/s, 1 in 12 a malformed JSON body (400)",
    },
    "flaky": {
        "1": "8/s, 5-30 ms (1 in 20: 150-250 ms); 5 % fail (500), 5 % 422",
        "2": "8/s, 5-30 ms (1 in 20: 150-250 ms); 20 % fail (500), 5 % 422",
    },
}
"""What each function is sent in each phase (as the docs state it; ``schedule`` does it)."""


Request = tuple[float, str, "dict[str, Any] | str"]
"""(offset in seconds, function, JSON body or raw text)."""


def schedule(seconds: float, phase_at: float, seed: int = 10) -> list[Request]:
    """(offset in seconds, function, JSON body or raw text) for every request, in time order."""
    rng = random.Random(seed)
    out: list[Request] = []
    for fn, rates in (("hello-http", (12.0, 24.0)), ("flaky", (8.0, 8.0))):
        t = 0.0
        n = 0
        while t < seconds:
            phase2 = t >= phase_at
            rate = rates[1] if phase2 else rates[0]
            if fn == "hello-http":
                n += 1
                body: dict[str, Any] | str = '{"name": ' if n % 12 == 0 else {"name": f"caller-{n}"}
            else:
                slow = rng.random() < 0.05
                ms = rng.uniform(150, 250) if slow else rng.uniform(5, 30)
                draw = rng.random()
                fail = draw < (0.20 if phase2 else 0.05)
                reject = not fail and draw > 0.95
                body = {"ms": round(ms, 1), "fail": fail, "reject": reject}
            out.append((t, fn, body))
            t += 1.0 / rate
    out.sort(key=lambda item: item[0])
    return out


def start_functions(work: Path, servers: dict[str, Server]) -> None:
    """Start both functions into ``servers`` (filled as they start, so a failure still stops them)."""
    hello = work / "hello-http"
    shutil.copytree(HELLO, hello, ignore=shutil.ignore_patterns("README.md", "__pycache__"))
    text = (hello / "function.yaml").read_text()
    (hello / "function.yaml").write_text(
        "\n".join(line for line in text.splitlines() if "tracing: {enabled: true}" not in line) + "\n"
    )
    for name, folder in (("hello-http", hello), ("flaky", FLAKY)):
        argv = ["run", str(folder), "--port", "0", "--workers", str(WORKERS)]
        servers[name] = Server(argv, {"TMPDIR": str(work)}, REPO)
    for server in servers.values():
        server.wait_ready(60)
        scrape_until(server.url, lambda s: s.total("funcd_cold_start_seconds_count") == WORKERS, 60)


def drive(servers: dict[str, Server], seconds: float, phase_at: float) -> tuple[float, dict[str, Any]]:
    """Send the schedule, paced; (start time, function -> phase -> status class -> count)."""
    counts = {fn: {p: {"2xx": 0, "4xx": 0, "5xx": 0} for p in ("1", "2")} for fn in servers}
    lock = threading.Lock()

    def send(fn: str, body: dict[str, Any] | str, phase: str) -> None:
        url = servers[fn].url + "/"
        if isinstance(body, str):
            reply = requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=30)
        else:
            reply = requests.post(url, json=body, timeout=30)
        with lock:
            counts[fn][phase][f"{reply.status_code // 100}xx"] += 1

    plan = schedule(seconds, phase_at)
    futures: list[Future[None]] = []
    start = time.time()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for offset, fn, body in plan:
            delay = start + offset - time.time()
            if delay > 0:
                time.sleep(delay)  # pacing the load (not waiting for a state)
            futures.append(pool.submit(send, fn, body, "2" if offset >= phase_at else "1"))
    for future in futures:
        future.result()
    return start, counts


def matrix(prom: Prometheus, promql: str, start: float, end: float) -> dict[str, list[list[float]]]:
    data = prom.api("query_range", query=promql, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{STEP:g}")
    assert data["resultType"] == "matrix", data
    out: dict[str, list[list[float]]] = {}
    for series in data["result"]:
        out[series["metric"].get("function", "")] = [[float(t), float(v)] for t, v in series["values"]]
    return out


def run(seconds: float, work: Path) -> dict[str, Any]:
    subprocess.run([sys.executable, str(REPO / "testbin" / "build.py"), "prometheus"], check=True)
    stack = testbin_stack()
    servers: dict[str, Server] = {}
    prom: Prometheus | None = None
    try:
        start_functions(work, servers)
        targets = [f"127.0.0.1:{s.port}" for s in servers.values()]
        prom = start_prometheus(
            Path(stack.binary("prometheus")),
            stack.version("prometheus"),
            work / "prometheus",
            targets,
            scrape_interval=SCRAPE_INTERVAL,
        )
        wait_until(
            lambda: prom is not None and prom.value('count(up{job="funcd"} == 1)') == len(targets),
            "both targets up",
            30,
            [prom.proc],
        )
        phase_at = round(seconds / 3)
        print(f"promql: {seconds:g} s of load, phase 2 at {phase_at:g} s", flush=True)
        start, counts = drive(servers, seconds, phase_at)
        end = start + seconds
        sent = sum(n for fn in counts.values() for phase in fn.values() for n in phase.values())
        total = "sum(funcd_invocations_total)"
        wait_until(
            lambda: prom is not None and prom.value(total) == sent,
            f"Prometheus to scrape {total} == {sent}",
            30,
            [prom.proc],
        )
        at = end - 1.0
        instant: dict[str, dict[str, float]] = {}
        ranges: dict[str, dict[str, list[list[float]]]] = {}
        for q in render.QUERIES:
            text = q.text(WINDOW)
            answer = prom.query(text, at)
            instant[q.key] = {r["metric"].get("function", ""): float(r["value"][1]) for r in answer}
            if q.key in dict(render.CHARTS):
                ranges[q.key] = matrix(prom, text, start, end + 10)
        run_info = {
            "prometheus": prom.version,
            "scrape_interval": SCRAPE_INTERVAL,
            "workers": WORKERS,
            "seconds": seconds,
            "phase_at": phase_at,
            "window": WINDOW,
            "step": STEP,
            "start": round(start, 3),
            "at_offset": round(at - start, 3),
        }
        load = {fn: {"plan": PLAN[fn], "phases": counts[fn]} for fn in servers}
        return {"run": run_info, "load": load, "instant": instant, "range": ranges}
    finally:
        if prom is not None:
            prom.stop()
        for server in servers.values():
            server.stop()


def write(results: dict[str, Any]) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    for name, svg in render.charts(results).items():
        path = IMAGES / name
        path.write_text(svg)
        size = path.stat().st_size
        if size > MAX_SVG_BYTES:
            raise SystemExit(f"promql: {path} is {size} bytes, more than {MAX_SVG_BYTES}")
        print(f"promql: {path.relative_to(REPO)} ({size // 1024} KiB)", flush=True)
    DOC.write_text(render.replace_fragment(DOC.read_text(), render.results_markdown(results)))
    print(f"promql: {DOC.relative_to(REPO)} updated; results in {RESULTS.relative_to(REPO)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument(
        "--rerender", action="store_true", help="only redraw the docs from docs/images/promql-results.json"
    )
    args = parser.parse_args(argv)
    if args.rerender:
        write(json.loads(RESULTS.read_text()))
        return 0
    work = Path(tempfile.mkdtemp(prefix="funcd-promql-"))
    results = run(args.seconds, work)
    write(results)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
