"""Local embedded mode pieces that need no daprd: finding it, default components, the records of
running daprds and their clean-up, funcd publish errors."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from functions_framework.errors import FunctionsFrameworkError
from functions_framework.model import parse_context
from functions_framework.runtime.sidecar import (
    default_components,
    find_daprd,
    start_local_daprd,
    tracing_configuration,
)
from functions_framework.runtime.sidecar_record import SidecarRecord, live_records, process_started
from tests.support import run_cli, write_function

CONTEXT = {
    "name": "f",
    "triggers": {"dapr": [{"name": "msg", "type": "pubsub.redis", "topic": "orders"}]},
    "outputs": {"next": {"componentName": "msg", "componentType": "pubsub.redis", "topic": "next"}},
    "states": {"s": {"componentName": "store", "componentType": "state.redis"}},
}


def test_default_components_are_in_memory():
    docs = default_components(parse_context(CONTEXT))
    assert [(d["metadata"]["name"], d["spec"]["type"]) for d in docs] == [
        ("msg", "pubsub.in-memory"),
        ("store", "state.in-memory"),
    ]


def test_a_binding_needs_a_component_file():
    ctx = parse_context({"triggers": {"dapr": [{"name": "ticker", "type": "bindings.cron"}]}})
    with pytest.raises(FunctionsFrameworkError, match=r"add components/ticker.yaml"):
        default_components(ctx)


def test_find_daprd_search_order_and_error(tmp_path):
    home, cache, bin_dir = tmp_path / "home", tmp_path / "cache", tmp_path / "bin"
    for d in (home, cache, bin_dir):
        d.mkdir()
    with pytest.raises(FunctionsFrameworkError, match=r"dapr init --slim.*make testbin"):
        find_daprd(str(bin_dir), home, cache)
    cached = cache / "daprd-1.18.2" / "daprd"
    cached.parent.mkdir()
    cached.write_text("#!/bin/sh\n")
    cached.chmod(cached.stat().st_mode | stat.S_IXUSR)
    assert find_daprd(str(bin_dir), home, cache) == cached
    on_path = bin_dir / "daprd"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(on_path.stat().st_mode | stat.S_IXUSR)
    assert find_daprd(str(bin_dir), home, cache) == on_path


def test_run_without_daprd_says_how_to_get_it(tmp_path):
    folder = write_function(tmp_path / "f", "def handler(c, e):\n    pass\n")
    (folder / "function.yaml").write_text(
        "name: f\ntriggers:\n  dapr:\n    - {name: msg, type: pubsub.redis, topic: orders}\n"
    )
    env = {
        "PATH": os.path.dirname(sys.executable),
        "HOME": str(tmp_path),
        "FUNCD_TESTBIN_CACHE": str(tmp_path),
    }
    result = run_cli("run", str(folder), "--port", "0", env=env)
    assert result.returncode == 1
    assert "no sidecar is configured" in result.stderr and "make testbin" in result.stderr
    assert "Traceback" not in result.stderr


def test_publish_with_nothing_running(tmp_path):
    result = run_cli("publish", "orders", '{"a": 1}', env={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "funcd: error: no function is running with a local daprd; start one with `funcd run <folder>`"
    )


# ------------------------------------------------------------------ records of local daprds


def spawn(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(argv), start_new_session=True)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def record(state: Path, app_id: str, funcd_pid: int, funcd_started: int, daprd: subprocess.Popen[bytes]):
    started = process_started(daprd.pid)
    assert started is not None
    path = state / f"{app_id}.json"
    SidecarRecord(app_id, funcd_pid, funcd_started, daprd.pid, started, 1, 2, [["msg", "orders"]]).write(path)
    return path


def test_a_record_whose_funcd_is_gone_is_cleaned_and_its_daprd_stopped(tmp_path):
    state = tmp_path / "funcd"
    state.mkdir()
    orphan = spawn("sleep", "300")  # stands in for the daprd a kill -9 of funcd left behind
    try:
        path = record(state, "f", dead_pid(), 1, orphan)
        result = run_cli("publish", "orders", "{}", env={"XDG_RUNTIME_DIR": str(tmp_path)})
        assert result.returncode == 1
        assert "no function is running with a local daprd" in result.stderr
        assert orphan.wait(15) == -signal.SIGTERM
        assert not path.exists()
    finally:
        orphan.kill()
        orphan.wait()


def test_a_stale_record_never_stops_a_process_that_reused_the_pid(tmp_path):
    state = tmp_path / "funcd"
    state.mkdir()
    other = spawn("sleep", "300")
    try:
        path = state / "f.json"
        # The recorded daprd started at another time than the process that now has its pid.
        SidecarRecord("f", dead_pid(), 1, other.pid, 1, 1, 2, []).write(path)
        assert live_records(state) == {}
        assert not path.exists()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_function_already_running_locally_is_not_started_twice(tmp_path):
    folder = write_function(tmp_path / "f", "def handler(c, e):\n    pass\n")
    (folder / "function.yaml").write_text(
        "name: twice\ntriggers:\n  dapr:\n    - {name: msg, type: pubsub.redis, topic: orders}\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "daprd"
    fake.write_text("#!/bin/sh\nexec sleep 300\n")
    fake.chmod(0o755)
    state = tmp_path / "run" / "funcd"
    state.mkdir(parents=True)
    daprd = spawn("sleep", "300")
    try:
        me = os.getpid()  # a funcd that runs: this test process
        started = process_started(me)
        assert started is not None
        record(state, "twice", me, started, daprd)
        env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "XDG_RUNTIME_DIR": str(tmp_path / "run")}
        result = run_cli("run", str(folder), "--port", "0", "--dapr-port", "0", env=env)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"funcd: error: 'twice' already runs with a local daprd (funcd pid {me}, daprd pid {daprd.pid}); "
            "stop it first, or give this function another name"
        ]
        assert daprd.poll() is None
    finally:
        daprd.kill()
        daprd.wait()


def _tracing(exporter: dict[str, str], **more: object) -> dict[str, object]:
    return {
        **CONTEXT,
        "tracing": {"enabled": True, "provider": {"name": "opentelemetry", "exporter": exporter}, **more},
    }


def test_a_local_daprd_traces_to_the_functions_otlp_collector():
    ctx = parse_context(_tracing({"name": "otlp", "endpoint": "127.0.0.1:4317", "protocol": "grpc"}))
    assert tracing_configuration(ctx) == {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "f-tracing"},
        "spec": {
            "tracing": {
                "samplingRate": "1",
                "otel": {"endpointAddress": "127.0.0.1:4317", "isSecure": False, "protocol": "grpc"},
            }
        },
    }


@pytest.mark.parametrize(
    ("endpoint", "protocol", "otel"),
    [
        (
            "http://collector:4317",
            "grpc",
            {"endpointAddress": "collector:4317", "isSecure": False, "protocol": "grpc"},
        ),
        (
            "https://collector:4317",
            "grpc",
            {"endpointAddress": "collector:4317", "isSecure": True, "protocol": "grpc"},
        ),
        (
            "http://collector:4318/v1/traces",
            "http/protobuf",
            {"endpointAddress": "collector:4318", "isSecure": False, "protocol": "http"},
        ),
    ],
)
def test_the_collector_endpoint_becomes_daprds_host_port(endpoint, protocol, otel):
    ctx = parse_context(_tracing({"name": "otlp", "endpoint": endpoint, "protocol": protocol, "headers": ""}))
    config = tracing_configuration(ctx)
    assert config is not None
    assert config["spec"]["tracing"]["otel"] == otel  # type: ignore[index]


def test_headers_are_passed_on():
    ctx = parse_context(_tracing({"name": "otlp", "endpoint": "c:4317", "headers": "api-key=s3cret"}))
    config = tracing_configuration(ctx)
    assert config is not None
    assert config["spec"]["tracing"]["otel"]["headers"] == "api-key=s3cret"  # type: ignore[index]


@pytest.mark.parametrize(
    "tracing",
    [
        None,
        {
            "enabled": False,
            "provider": {"name": "opentelemetry", "exporter": {"name": "otlp", "endpoint": "c:4317"}},
        },
        {
            "enabled": True,
            "provider": {"name": "opentelemetry", "exporter": {"name": "otlp", "endpoint": ""}},
        },
        {
            "enabled": True,
            "provider": {"name": "opentelemetry", "exporter": {"name": "zipkin", "endpoint": "c:9411"}},
        },
        {"enabled": True, "provider": {"name": "skywalking", "oapServer": "oap:11800"}},
    ],
)
def test_no_configuration_without_an_otlp_collector(tracing):
    ctx = parse_context({**CONTEXT, **({"tracing": tracing} if tracing is not None else {})})
    assert tracing_configuration(ctx) is None


@pytest.mark.parametrize(("protocol", "limit"), [("grpc", None), ("http", "1")])
def test_a_local_daprd_calls_an_http_app_one_at_a_time(tmp_path, protocol, limit):
    """daprd's HTTP app channel can ack an event the app never got when it calls the app
    concurrently (docs/architecture.md): a local daprd over HTTP runs with --app-max-concurrency 1."""
    args_file = tmp_path / "args"
    fake = tmp_path / "daprd"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {args_file}.tmp && mv {args_file}.tmp {args_file}\n')
    fake.chmod(0o755)
    folder = tmp_path / "fn"
    folder.mkdir()
    (tmp_path / "run").mkdir()
    sidecar = start_local_daprd(fake, parse_context(CONTEXT), folder, 8080, protocol, tmp_path / "run")
    assert sidecar.proc.wait(10) == 0
    shutil.rmtree(sidecar.work_dir)
    args = args_file.read_text().splitlines()
    assert args[args.index("--app-protocol") + 1] == protocol
    found = args[args.index("--app-max-concurrency") + 1] if "--app-max-concurrency" in args else None
    assert found == limit
