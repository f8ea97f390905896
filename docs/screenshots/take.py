#!/usr/bin/env python3
"""Screenshots for docs/observability.md, taken from the real test stack (``make screenshots``).

Starts Jaeger v2 (testbin ``jaeger``) serving the Jaeger UI (testbin/jaeger_ui.py), a daprd
(testbin ``daprd``) that traces to Jaeger over OTLP/gRPC, and ``funcd run samples/pubsub-consumer``
behind that daprd with ``serving.tracing`` on. It publishes orders through daprd's HTTP API, waits
until Jaeger holds the trace, then has headless Chromium (Debian's ``chromium``, installed here
when missing) take PNGs of the Jaeger UI into docs/images/.

    python docs/screenshots/take.py                      funcd's tracing plugin on (the docs' trace)
    python docs/screenshots/take.py --no-funcd-tracing   daprd's spans only
    python docs/screenshots/take.py --tree DIR           funcd and its plugins from another tree
    python docs/screenshots/take.py --keep               leave the stack up (the UI's address is printed)

No screenshot is taken before the trace is complete: daprd's publish and delivery spans, and with
funcd tracing on, a funcd span and daprd's span under every funcd call to daprd. Nothing here is
needed by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "testbin")]

import browser  # noqa: E402  (docs/screenshots/browser.py)
import jaeger_ui  # noqa: E402  (testbin/jaeger_ui.py)

from tests.e2e.stack_dapr import DaprdFactory, component  # noqa: E402
from tests.e2e.stack_jaeger import Jaeger, start_jaeger  # noqa: E402
from tests.e2e.stack_procs import Proc, StackError, free_port, start, wait_until  # noqa: E402
from tests.support import testbin_stack  # noqa: E402

IMAGES = REPO / "docs" / "images"
SAMPLE = REPO / "samples" / "pubsub-consumer"
APP_ID = "pubsub-consumer"
MAX_PNG_BYTES = 300_000
DAPRD_SCOPE = "dapr-diagnostics"
"""The instrumentation scope of daprd's spans; a span of any other scope is funcd's."""


def ensure_chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    print("screenshots: installing Debian's chromium (apt-get)", flush=True)
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        subprocess.run(
            cmd,
            check=True,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
    return shutil.which("chromium") or "/usr/bin/chromium"


def ensure_stack() -> tuple[Path, str, Path, str, Path]:
    """(jaeger binary, its version, daprd binary, its version, UI assets); builds what is missing."""
    subprocess.run([sys.executable, str(REPO / "testbin" / "build.py"), "jaeger", "daprd"], check=True)
    stack = testbin_stack()
    assets = jaeger_ui.assets_dir()
    if assets is None:
        source = os.environ.get(jaeger_ui.SOURCE_ENV)
        if not source:
            raise SystemExit(
                f"screenshots: the Jaeger UI {jaeger_ui.VERSION} is not built: set ${jaeger_ui.SOURCE_ENV} "
                f"to a jaeger-ui git directory holding commit {jaeger_ui.COMMIT} (see testbin/jaeger_ui.py)"
            )
        assets = jaeger_ui.build(Path(source))
    return (
        stack.binary("jaeger"),
        stack.version("jaeger"),
        stack.binary("daprd"),
        stack.version("daprd"),
        assets,
    )


def tracing_config(jaeger: Jaeger) -> dict[str, Any]:
    """A Dapr Configuration: every request sampled, spans to Jaeger over OTLP/gRPC."""
    otel = {"endpointAddress": jaeger.otlp_grpc_endpoint, "isSecure": False, "protocol": "grpc"}
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "tracing"},
        "spec": {"tracing": {"samplingRate": "1", "otel": otel}},
    }


def function_folder(work: Path, jaeger: Jaeger, funcd_tracing: bool) -> Path:
    """The sample, with in-memory components for a local daprd and (optionally) tracing on."""
    folder = work / APP_ID
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("demo.py", "README.md", "__pycache__"))
    if funcd_tracing:
        text = (folder / "function.yaml").read_text()
        tracing = (
            "  serving:\n"
            "    tracing:\n"
            "      enabled: true\n"
            "      provider:\n"
            "        name: opentelemetry\n"
            "        exporter:\n"
            f"          endpoint: {jaeger.otlp_grpc_endpoint}\n"
            "          protocol: grpc\n"
        )
        (folder / "function.yaml").write_text(text.replace("  serving:\n", tracing, 1))
    return folder


def start_funcd(folder: Path, app_port: int, sidecar: Any, logs: Path, tree: Path) -> Proc:
    """``funcd run`` for the function behind ``sidecar``, with funcd and its plugins from ``tree``."""
    http = sidecar.http_url.removeprefix("http://")
    argv = [
        sys.executable, "-m", "functions_framework.cli", "run", str(folder), "--workers", "1",
        "--port", "0", "--dapr-port", str(app_port),
        "--dapr-address", sidecar.grpc_address, "--dapr-http-address", http,
    ]  # fmt: skip
    return start("funcd", argv, logs, env={"PYTHONPATH": f"{tree}:{tree / 'plugins'}"}, cwd=tree)


def traces(jaeger: Jaeger) -> list[dict[str, Any]]:
    reply = requests.get(
        f"{jaeger.query_url}/api/traces", params={"service": APP_ID, "limit": "20"}, timeout=5
    )
    reply.raise_for_status()
    return list(reply.json().get("data") or [])


def _scope(span: dict[str, Any]) -> str:
    tags = {t["key"]: t["value"] for t in span.get("tags", [])}
    return str(tags.get("otel.scope.name", tags.get("otel.library.name", "")))


def _complete(trace: dict[str, Any], funcd_tracing: bool) -> bool:
    """daprd's publish and delivery spans are there; with funcd tracing, a funcd span too, and every
    funcd span that calls daprd (client or producer) has daprd's span under it."""
    spans = trace["spans"]
    daprd = [s for s in spans if _scope(s) == DAPRD_SCOPE]
    if len(daprd) < 2:
        return False
    if not funcd_tracing:
        return True
    funcd = [s for s in spans if _scope(s) != DAPRD_SCOPE]
    parents = {r["spanID"] for s in daprd for r in s.get("references", []) if r["refType"] == "CHILD_OF"}
    kinds = {s["spanID"]: {t["key"]: t["value"] for t in s["tags"]}.get("span.kind") for s in funcd}
    calls = {span_id for span_id, kind in kinds.items() if kind in ("client", "producer")}
    return bool(funcd) and calls <= parents


def delivered_trace(jaeger: Jaeger, funcd_tracing: bool, procs: list[Proc]) -> dict[str, Any]:
    """The trace of one delivered order, once all its spans are in Jaeger."""

    def ready() -> dict[str, Any] | None:
        found = [t for t in traces(jaeger) if _complete(t, funcd_tracing)]
        return max(found, key=lambda t: len(t["spans"])) if found else None

    what = "a trace through daprd" + (" and funcd" if funcd_tracing else "") + f" for {APP_ID} in Jaeger"
    try:
        trace: dict[str, Any] = wait_until(ready, what, 60, procs, interval=0.5)
    except StackError as exc:
        hint = "\n(funcd's spans need the tracing plugin, plugins/funcd_tracing; or --no-funcd-tracing)"
        raise SystemExit(f"screenshots: {exc}{hint if funcd_tracing else ''}") from None
    return trace


def screenshot(chromium: str, url: str, out: Path, size: str, budget_ms: int = 8000) -> None:
    profile = tempfile.mkdtemp(prefix="funcd-chromium-")
    try:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out}", url,
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    check_size(out, url)


def check_size(out: Path, url: str) -> None:
    size_bytes = out.stat().st_size
    if size_bytes > MAX_PNG_BYTES:
        raise SystemExit(f"screenshots: {out} is {size_bytes} bytes, more than {MAX_PNG_BYTES}")
    print(f"screenshots: {out.relative_to(REPO)} ({size_bytes // 1024} KiB) <- {url}", flush=True)


FIND_SPAN = """[...document.querySelectorAll('.span-name')]
  .find(n => n.querySelector('.endpoint-name')?.textContent.trim() === %s)"""
TAGS_HEADER = """[...document.querySelectorAll('.AccordianKeyValues--header')]
  .find(h => h.textContent.trim().startsWith('Tags'))"""


def span_screenshot(chromium: str, url: str, out: Path, size: str, operation: str) -> None:
    """The trace page with ``operation``'s span opened and its tags shown as a table."""
    span = FIND_SPAN % json.dumps(operation)
    page = browser.Page(chromium, size)
    try:
        page.open(url)
        page.wait_for(f"!!{span}", f"the span {operation!r} in the Jaeger UI")
        page.evaluate(f"{span}.click()")
        page.wait_for(f"!!{TAGS_HEADER}", f"the details of {operation!r}")
        page.evaluate(f"{TAGS_HEADER}.click()")
        page.wait_for("!!document.querySelector('.KeyValueTable')", f"the tags of {operation!r}")
        page.png(out)
    finally:
        page.close()
    check_size(out, url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-funcd-tracing", dest="funcd_tracing", action="store_false")
    parser.add_argument("--orders", type=int, default=3, help="orders to publish")
    parser.add_argument(
        "--tree",
        type=Path,
        default=REPO,
        help="funcd source tree to run the function with (default: this one)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running until Ctrl-C")
    args = parser.parse_args(argv)
    chromium = ensure_chromium()
    jaeger_bin, jaeger_version, daprd_bin, daprd_version, assets = ensure_stack()
    work = Path(tempfile.mkdtemp(prefix="funcd-screenshots-"))
    nr_dir = work / "dapr-name-resolution"
    nr_dir.mkdir()
    jaeger = start_jaeger(jaeger_bin, jaeger_version, work / "jaeger", ui_assets=assets)
    daprd = DaprdFactory(daprd_bin, daprd_version, work / "daprd", nr_dir)
    funcd: Proc | None = None
    try:
        app_port = free_port()
        resources = [component("orders-pubsub", "pubsub.in-memory"), component("totals", "state.in-memory")]
        sidecar = daprd(app_port, resources, tracing_config(jaeger), "grpc", app_id=APP_ID, wait="outbound")
        folder = function_folder(work, jaeger, args.funcd_tracing)
        funcd = start_funcd(folder, app_port, sidecar, work / "logs", args.tree.resolve())
        sidecar.wait_ready(full=True, timeout=60)
        for n in range(args.orders):
            order = {"customer": "ada", "amount": 5 + n}
            url = f"{sidecar.http_url}/v1.0/publish/orders-pubsub/orders"
            requests.post(url, json=order, timeout=10).raise_for_status()
        trace = delivered_trace(jaeger, args.funcd_tracing, [jaeger.proc, sidecar.proc, funcd])
        print(f"screenshots: trace {trace['traceID']} has {len(trace['spans'])} spans", flush=True)
        IMAGES.mkdir(parents=True, exist_ok=True)
        ui = jaeger.query_url
        screenshot(
            chromium,
            f"{ui}/search?service={APP_ID}&limit=20&lookback=1h",
            IMAGES / "jaeger-search.png",
            "1280,860",
        )
        screenshot(chromium, f"{ui}/trace/{trace['traceID']}", IMAGES / "jaeger-trace.png", "1600,560")
        if args.funcd_tracing:
            trace_url = f"{ui}/trace/{trace['traceID']}"
            span_screenshot(chromium, trace_url, IMAGES / "jaeger-span.png", "1600,900", "orders process")
        (work / "trace.json").write_text(json.dumps(trace, indent=2))
        if args.keep:
            # Ctrl-C or SIGTERM stops the stack (a background job may have inherited SIGINT ignored).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            print(f"screenshots: Jaeger UI at {ui} (Ctrl-C stops)", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if funcd is not None:
            funcd.stop()
        daprd.stop_all()
        jaeger.stop()
        print(f"screenshots: logs in {work}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
