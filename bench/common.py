"""Shared pieces of the benchmarks: machine facts, servers, readiness, wrk, memory, results.

Standard library only, so every benchmark runs with whatever Python starts it.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
CORES = os.cpu_count() or 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- machine


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout
        wrk_version = out.split("[")[0].strip() if out else ""
    return {
        "cores": CORES,
        "memory_mib": mem_kib // 1024,
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version,
        "loadavg_start": loadavg(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------- CPU accounting


def cpu_busy_ticks() -> int:
    """All CPUs' non-idle time since boot, in clock ticks (from /proc/stat)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already counted in user
    return total - idle


def proc_cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks; 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# ---------------------------------------------------------------- processes and memory


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc/<pid>/task/*/children."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        if not Path(f"/proc/{p}").exists():
            continue
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def _kib(path: Path, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def memory(pid: int) -> dict[str, Any]:
    """RSS and PSS summed over the process tree, in MiB, with a per-process breakdown."""
    procs = []
    for p in process_tree(pid):
        cmd = ""
        with contextlib.suppress(OSError):
            cmd = (
                Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            )
        procs.append(
            {
                "pid": p,
                "rss_kib": _kib(Path(f"/proc/{p}/status"), "VmRSS:"),
                "pss_kib": _kib(Path(f"/proc/{p}/smaps_rollup"), "Pss:"),
                "cmd": cmd[:160],
            }
        )
    return {
        "processes": len(procs),
        "rss_mib": round(sum(x["rss_kib"] for x in procs) / 1024, 1),
        "pss_mib": round(sum(x["pss_kib"] for x in procs) / 1024, 1),
        "tree": procs,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- HTTP probes


@dataclass(frozen=True)
class Probe:
    """The request every server gets, and what it must answer."""

    method: str = "POST"
    path: str = "/"
    body: bytes = b'{"name":"bench"}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    expect: Any = None
    """The decoded JSON body expected back."""


def request(
    port: int, probe: Probe, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(probe.method, probe.path, body=probe.body, headers=probe.headers)
        resp = conn.getresponse()
        if headers is not None:
            headers.update(resp.getheaders())
        return resp.status, resp.read()
    finally:
        conn.close()


def check(port: int, probe: Probe) -> dict[str, Any]:
    """Fail loudly unless the server answers 200 with the expected JSON; returns the answer."""
    headers: dict[str, str] = {}
    status, body = request(port, probe, headers=headers)
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if status != 200 or decoded != probe.expect:
        raise RuntimeError(f"unexpected answer on port {port}: {status} {body[:200]!r}")
    return {"status": status, "headers": headers, "body": body.decode(errors="replace")}


# ---------------------------------------------------------------- servers


@dataclass
class ServerSpec:
    """How to start one server. ``{port}`` in argv or env values is replaced by the port."""

    key: str
    label: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    notes: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class Server:
    """One running server, started in its own session so it can be stopped as a group."""

    def __init__(self, spec: ServerSpec, logdir: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.logfile = logdir / f"{spec.key}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.killed = False

    def start(self) -> None:
        argv = [a.replace("{port}", str(self.port)) for a in self.spec.argv]
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        # Let every server keep bytecode caches as an installed package would; see bench/README.md.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update({k: v.replace("{port}", str(self.port)) for k, v in self.spec.env.items()})
        env["PYTHONUNBUFFERED"] = "1"
        out = self.logfile.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            cwd=self.spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_first_200(self, probe: Probe, timeout: float = 30.0, interval: float = 0.005) -> float:
        """Seconds from exec to the first 200 answer to ``probe``, polling every ``interval`` seconds."""
        assert self.proc is not None
        deadline = self.started + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.key} exited with {self.proc.returncode}; see {self.logfile}:\n"
                    + self.log_tail()
                )
            try:
                # A short per-attempt timeout: a request parked on a worker that never comes up must not
                # hide the others.
                status, _ = request(
                    self.port, probe, timeout=min(2.0, max(0.1, deadline - time.perf_counter()))
                )
                if status == 200:
                    return time.perf_counter() - self.started
            except (OSError, http.client.HTTPException):
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"{self.spec.key}: no 200 within {timeout:g}s; see {self.logfile}:\n" + self.log_tail()
                )
            time.sleep(interval)

    def wait_workers(self, timeout: float = 15.0, settle: float = 0.5) -> int:
        """Wait until the process tree holds the parent and ``spec.info["workers"]`` workers, then ``settle``.

        The first 200 comes from the first worker up; loading before the others exist would pin all
        of wrk's keep-alive connections on it.
        """
        want = 1 + int(self.spec.info.get("workers", 0))
        deadline = time.monotonic() + timeout
        while len(process_tree(self.pid)) < want and time.monotonic() < deadline:
            time.sleep(0.02)
        n = len(process_tree(self.pid))
        if n < want:
            log(f"{self.spec.key}: {n} process(es) after {timeout:g}s, expected {want}")
        time.sleep(settle)
        return n

    def log_tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the server (it drains and exits), then SIGKILL its own process group if it lingers.

        Returns the exit code (negative: killed by that signal). ``self.killed`` tells whether SIGTERM
        was not enough.
        """
        self.killed = False
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.spec.key}: no exit {timeout:g}s after SIGTERM; killing its process group {pid}")
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            code = self.proc.wait(10)
        # Workers left behind by a parent that exited (should not happen) go with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        return code


@contextlib.contextmanager
def running(spec: ServerSpec, logdir: Path, probe: Probe):  # type: ignore[no-untyped-def]
    server = Server(spec, logdir)
    server.start()
    try:
        server.wait_first_200(probe)
        check(server.port, probe)
        server.wait_workers()
        yield server
    finally:
        server.stop()


def cold_starts(
    specs: list[ServerSpec], logdir: Path, probe: Probe, runs: int, settle: float = 1.0
) -> dict[str, dict[str, Any]]:
    """Exec → first 200, ``runs`` times per server, servers taking turns; the median is reported.

    Taking turns spreads any change in the machine's other load over all servers. After the first
    200 the server gets ``settle`` seconds before SIGTERM (not measured): stopping a granian server
    whose other workers are still booting can hang (see bench/README.md). A run that never answers
    is recorded and retried, up to ``runs`` extra attempts per server.
    """
    out: dict[str, dict[str, Any]] = {s.key: {"runs_s": [], "failures": [], "stops": []} for s in specs}
    for _ in range(2 * runs):
        for spec in specs:
            res = out[spec.key]
            if len(res["runs_s"]) >= runs or len(res["runs_s"]) + len(res["failures"]) >= 2 * runs:
                continue
            server = Server(spec, logdir)
            server.start()
            try:
                res["runs_s"].append(round(server.wait_first_200(probe), 4))
                time.sleep(settle)
            except RuntimeError as exc:
                res["failures"].append(str(exc).splitlines()[0])
                log(f"{spec.key}: a cold start failed: {res['failures'][-1]}")
            finally:
                t0 = time.perf_counter()
                code = server.stop()
                res["stops"].append(
                    {
                        "exit_code": code,
                        "seconds": round(time.perf_counter() - t0, 3),
                        "killed": server.killed,
                    }
                )
    for key, res in out.items():
        if not res["runs_s"]:
            raise RuntimeError(f"{key}: no cold start succeeded: {res['failures']}")
        res["median_s"] = round(statistics.median(res["runs_s"]), 4)
    return out


# ---------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"cannot read a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms), request count and errors from ``wrk --latency`` output."""
    res: dict[str, Any] = {}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if not m:
        raise ValueError(f"no Requests/sec in wrk output:\n{out}")
    res["rps"] = round(float(m.group(1)), 1)
    dist = re.search(r"Latency Distribution\n((?:\s+\d+%\s+\S+\n)+)", out)
    if dist:
        for pct, val in re.findall(r"(\d+)%\s+(\S+)", dist.group(1)):
            res[f"p{pct}_ms"] = round(_ms(val), 3)
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        res["avg_ms"] = round(_ms(m.group(1)), 3)
        res["max_ms"] = round(_ms(m.group(3)), 3)
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)) if m else {}
    )
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def run_wrk(
    port: int, duration: float, connections: int, threads: int, server_pid: int | None = None, path: str = "/"
) -> dict[str, Any]:
    """Load ``127.0.0.1:port`` with bench/post.lua; also account the CPU the server, wrk and others used.

    wrk takes whole seconds: ``duration`` is rounded (at least 1).
    """
    wrk = shutil.which("wrk")
    if not wrk:
        raise RuntimeError("wrk not found: apt-get install -y wrk")
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        str(BENCH / "post.lua"),
        f"http://127.0.0.1:{port}{path}",
    ]
    tree = process_tree(server_pid) if server_pid else []
    per0 = {p: proc_cpu_ticks(p) for p in tree}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, t0 = cpu_busy_ticks(), time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out_b, _ = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    elapsed = time.perf_counter() - t0
    busy = cpu_busy_ticks() - busy0
    per = {p: proc_cpu_ticks(p) - per0[p] for p in tree}
    srv = sum(per.values())
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # only wrk was reaped in between
    wrk_ticks = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) * CLK_TCK
    out = out_b.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out}")
    res = parse_wrk(out)
    capacity = elapsed * CLK_TCK * CORES
    res["cpu"] = {
        "machine_busy_pct": round(100 * busy / capacity, 1),
        "server_pct": round(100 * srv / capacity, 1),
        "wrk_pct": round(100 * wrk_ticks / capacity, 1),
        "other_pct": round(100 * max(0.0, busy - srv - wrk_ticks) / capacity, 1),
        # Per server process (parent first): shows how evenly the workers shared the load.
        "per_process_pct": [round(100 * per[p] / capacity, 1) for p in tree],
    }
    res["command"] = " ".join([*argv[:-1], f"http://127.0.0.1:PORT{path}"])
    res["raw"] = out
    return res


# ---------------------------------------------------------------- peer virtualenvs


def ensure_venv(venv: Path, requirements: list[str], check: str) -> dict[str, Any]:
    """Create ``venv`` with ``requirements`` on first use; ``check`` is Python that must run in it.

    Returns the installed versions of the requirements' distributions, or {"error": ...}.
    """
    py = venv / "bin" / "python"
    if not py.exists():
        log(f"creating {venv.relative_to(ROOT)} with {requirements}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements], check=True
        )
    names = [r.split("=")[0].split(">")[0].split("<")[0] for r in requirements]
    code = (
        f"{check}\nimport importlib.metadata as m, json\n"
        f"print(json.dumps({{p: m.version(p) for p in {names!r}}}))"
    )
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=venv)
    if proc.returncode != 0:
        lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- results


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def update_readme_section(name: str, markdown: str) -> None:
    """Replace the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in bench/README.md."""
    begin, end = f"<!-- BEGIN {name} results -->", f"<!-- END {name} results -->"
    text = README.read_text() if README.exists() else ""
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def make_logdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="funcd-bench-"))


# ---------------------------------------------------------------- Kubernetes API


class Api:
    """Plain HTTPS GETs on the test apiserver with the admin token (cheap polling, no kubectl per poll)."""

    def __init__(self, url: str, token: str, ca_file: Path) -> None:
        self.url, self.token = url, token
        self.ctx = ssl.create_default_context(cafile=str(ca_file))

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
            return json.loads(resp.read())

    def count(self, path: str) -> int:
        return len(self.get(path).get("items") or [])


def testbin() -> ModuleType:
    """testbin/stack.py (versions and paths of the built test stack), loaded once."""
    name = "funcd_testbin_stack"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "testbin" / "stack.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
