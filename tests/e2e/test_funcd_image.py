"""The real images: the runtime image (mmdebstrap + umoci, cached), the daprd image, and ``funcd build``
of samples/hello-http on the runtime image, unpacked with umoci and served by the image's own python3."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from funcd_controller.image import build_function_image, names

from tests.image_support import (
    Archive,
    daprd_image_archive,
    rootfs_python,
    runtime_image_archive,
    stack,
    unpack,
)
from tests.support import SAMPLES

pytestmark = pytest.mark.e2e

_SERVING = re.compile(r"serving '.*' on http://([\d.]+):(\d+)")


@pytest.fixture(scope="module")
def runtime() -> Path:
    return runtime_image_archive()


def _ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_runtime_image_names_and_config(runtime: Path) -> None:
    archive = Archive(runtime)
    refs = {m["annotations"][names.REF_NAME]: m for m in archive.index["manifests"]}
    assert set(refs) == {f"funcd:{names.RUNTIME_REFS[0].split(':')[1]}", "funcd:latest"}
    assert refs["funcd:latest"]["annotations"][names.CONTAINERD_NAME] == "docker.io/library/funcd:latest"
    assert len({m["digest"] for m in refs.values()}) == 1
    config = archive.config["config"]
    assert config["User"] == "65532:65532"
    assert config["WorkingDir"] == "/function"
    assert config["Entrypoint"] == ["funcd", "run"]
    assert "Cmd" not in config or not config["Cmd"]
    assert {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", f"PYTHONPATH={names.FUNCTION_SITE}"} <= set(
        config["Env"]
    )
    assert config["Labels"][names.LABEL_PYTHON] == "3.11"
    assert archive.config["created"] == "1970-01-01T00:00:00Z"
    # Small: no docs (but copyrights), man pages, locales or apt lists; no perl beyond perl-base.
    files = [m.name.removeprefix("./") for m in archive.layer(0).getmembers() if m.isfile()]
    dropped = ("usr/share/man/", "usr/share/locale/", "var/lib/apt/lists/")
    assert not [f for f in files if f.startswith(dropped) and not f.endswith("/lock")]
    assert not [f for f in files if f.startswith("usr/share/doc/") and not f.endswith("/copyright")]
    assert not [f for f in files if f.startswith("usr/share/perl/")]
    assert "usr/bin/python3.11" in files
    passwd = archive.layer(0).extractfile("./etc/passwd")
    assert passwd is not None and b"nonroot:x:65532:65532:" in passwd.read()
    deps = {m.name for m in archive.layer(1).getmembers()}
    assert "usr/local/bin/funcd" in deps
    assert f"{names.RUNTIME_SITE.strip('/')}/functions_framework/cli.py" in deps


def test_daprd_image_runs_its_binary(tmp_path: Path) -> None:
    archive = Archive(daprd_image_archive())
    assert archive.index["manifests"][0]["annotations"][names.REF_NAME] == names.DAPRD_REF
    assert archive.config["config"]["Entrypoint"] == ["/daprd"]
    assert archive.config["config"]["User"] == "65532:65532"
    assert [m.name for m in archive.layer(0).getmembers()] == ["daprd"]
    rootfs = unpack(archive.path, names.DAPRD_REF, tmp_path) / "rootfs"
    out = subprocess.run([str(rootfs / "daprd"), "--version"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == stack.version("daprd") == names.DAPRD_VERSION


def _needed(lib: Path) -> list[str]:
    """The shared libraries an ELF file names (DT_NEEDED), read by the host's readelf."""
    out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def test_every_compiled_extension_finds_its_libraries_in_the_image(runtime: Path, tmp_path: Path) -> None:
    """Run from the unpacked image, the host's libraries would hide a missing one (e.g. grpcio's
    libstdc++): resolve each extension's DT_NEEDED inside the image alone, as a pod does."""
    rootfs = unpack(runtime, names.RUNTIME_REFS[0], tmp_path / "unpacked") / "rootfs"
    system = [rootfs / "usr/lib/x86_64-linux-gnu", rootfs / "usr/lib"]
    missing = []
    extensions = sorted(rootfs.glob("usr/local/lib/python3*/dist-packages/**/*.so*"))
    assert any("grpc" in str(e) for e in extensions), "expected grpcio's extension in the image"
    for ext in extensions:
        bundled = [d for d in ext.parents if d.name.endswith(".libs")] + [
            p for p in ext.parents[0].parent.glob("*.libs")
        ]
        for name in _needed(ext):
            if not any((d / name).exists() for d in [*system, *bundled, ext.parent]):
                missing.append(f"{ext.relative_to(rootfs)} needs {name}")
    assert not missing, "\n".join(missing)


def test_hello_http_builds_the_same_twice_and_serves_from_the_image(runtime: Path, tmp_path: Path) -> None:
    first = build_function_image(SAMPLES / "hello-http", "hello:1", runtime, tmp_path / "a.tar")
    second = build_function_image(SAMPLES / "hello-http", "hello:1", runtime, tmp_path / "b.tar")
    assert first.digest == second.digest
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()

    bundle = unpack(first.output, "hello:1", tmp_path / "unpacked")
    rootfs = bundle / "rootfs"
    assert (rootfs / "function" / "main.py").read_bytes() == (SAMPLES / "hello-http" / "main.py").read_bytes()
    python, env = rootfs_python(rootfs)
    # The same image runs the controller (manifests/controller/deployment.yaml: funcd:latest).
    help_ = subprocess.run(
        [*python, str(rootfs / "usr/local/bin/funcd"), "controller", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_.returncode == 0 and "--leader-elect" in help_.stdout, help_.stderr
    # The image's entrypoint script, run as the image would: `funcd run` in /function, no path given.
    cmd = [*python, str(rootfs / "usr/local/bin/funcd"), "run", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--workers", "1"],
        cwd=rootfs / "function",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    bound = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = _SERVING.search(line)
            if m and not port:
                port.append(int(m.group(2)))
                bound.set()
        bound.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert bound.wait(60) and port, "".join(lines)
        ready_by = time.monotonic() + 30  # workers bind after the supervisor says where it serves
        while not _ready(f"http://127.0.0.1:{port[0]}/readyz"):
            assert proc.poll() is None and time.monotonic() < ready_by, "".join(lines)
            time.sleep(0.05)
        reply = requests.post(f"http://127.0.0.1:{port[0]}/", json={"name": "image"}, timeout=10)
        assert reply.status_code == 200
        assert reply.json() == {"message": "Hello, image!"}
        assert not (rootfs / "function" / "__pycache__").exists()  # PYTHONDONTWRITEBYTECODE
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=40)


def test_the_runtime_image_carries_the_tracing_and_metrics_plugins_and_their_dependencies(
    runtime: Path, tmp_path: Path
) -> None:
    rootfs = unpack(runtime, names.RUNTIME_REFS[0], tmp_path / "unpacked") / "rootfs"
    site = rootfs / names.RUNTIME_SITE.strip("/")
    [entry_points] = site.glob("funcd-*.dist-info/entry_points.txt")
    plugins = entry_points.read_text().split("[functions_framework.plugins]", 1)[1]
    assert (
        "tracing = funcd_tracing:TracingPlugin" in plugins
        and "metrics = funcd_metrics:MetricsPlugin" in plugins
    )
    for package in (
        "funcd_tracing/plugin.py",
        "funcd_metrics/plugin.py",
        "opentelemetry/sdk/trace/__init__.py",
        "opentelemetry/exporter/otlp/proto/grpc/trace_exporter/__init__.py",
        "opentelemetry/exporter/otlp/proto/http/trace_exporter/__init__.py",
        "prometheus_client/multiprocess.py",
    ):
        assert (site / package).is_file(), f"expected {package} in the image's {names.RUNTIME_SITE}"
