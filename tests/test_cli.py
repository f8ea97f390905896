"""The funcd command: arguments, errors, environment, scaffolding."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import requests

from functions_framework import __version__
from tests.support import SAMPLES, run_cli, write_function


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"funcd {__version__}"


def test_bad_arguments_get_one_line_errors():
    for args, expected in [
        (
            ("run", str(SAMPLES / "hello-http"), "--port", "eighty"),
            "port: expected a number 0-65535, got 'eighty'",
        ),
        (("run", str(SAMPLES / "hello-http"), "--workers", "0"), "workers: expected 1 or more, got 0"),
        (("run", str(SAMPLES / "hello-http"), "--max-body", "lots"), "max-body: expected a size"),
        (("run", "--bogus"), "unrecognized arguments: --bogus"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("funcd: error: ") and expected in lines[0], lines[0]


def test_missing_target_names_the_file_and_lists_callables(tmp_path):
    folder = write_function(tmp_path / "f", "def hello(req):\n    return 'x'\n\ndef other(c, e):\n    pass\n")
    result = run_cli("run", str(folder), "--port", "0")
    assert result.returncode == 1
    assert f"{folder / 'main.py'}: expected a function named 'handler'" in result.stderr
    assert "callables defined there: hello, other" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_source_and_broken_module(tmp_path):
    result = run_cli("run", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "found nothing there" in result.stderr
    folder = write_function(tmp_path / "f", "import no_such_module_here\n")
    result = run_cli("run", str(folder))
    assert result.returncode == 1
    assert "importing it raised ModuleNotFoundError" in result.stderr


def test_invalid_context_lists_every_problem(tmp_path):
    folder = write_function(
        tmp_path / "f",
        "def handler(c, e):\n    pass\n",
        "name: f\ntriggers:\n  http: {port: -1}\n  dapr:\n    - {name: m, type: kafka}\n",
    )
    result = run_cli("run", str(folder))
    assert result.returncode == 1
    assert "triggers.http.port: expected a port number 0-65535, got -1" in result.stderr
    assert "triggers.dapr[0].type: expected 'pubsub.*' or 'bindings.*', got \"kafka\"" in result.stderr


def test_context_from_env_file_and_flag(funcd, tmp_path):
    folder = write_function(
        tmp_path / "f", "def handler(c, e):\n    return c.function_name\n", "name: from-yaml\n"
    )
    assert requests.get(funcd(str(folder)).url).text == "from-yaml"
    env_ctx = json.dumps({"name": "from-env", "version": "v1", "triggers": {"http": {"port": 8080}}})
    assert requests.get(funcd(str(folder), env={"FUNC_CONTEXT_V1BETA2": env_ctx}).url).text == "from-env"
    ctx_file = tmp_path / "ctx.json"
    ctx_file.write_text(json.dumps({"name": "from-flag"}))
    server = funcd(str(folder), "--context", str(ctx_file), env={"FUNC_CONTEXT_V1BETA2": env_ctx})
    assert requests.get(server.url).text == "from-flag"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_google_environment_variables(funcd):
    port = _free_port()
    server = funcd(
        env={
            "FUNCTION_TARGET": "hello",
            "FUNCTION_SOURCE": str(SAMPLES / "gcf-http" / "main.py"),
            "PORT": str(port),
        },
        port="",
    )
    assert server.port == port
    assert requests.get(server.url + "/?name=Env").text == "Hello Env!"


def test_workers_share_the_port_and_each_runs_init_context(funcd, tmp_path):
    source = (
        "import os\n"
        "def init_context(context):\n"
        "    context.user_data.pid = os.getpid()\n"
        "    context.logger.info('init_context in %d', os.getpid())\n"
        "def handler(context, event):\n"
        "    return {'pid': context.user_data.pid}\n"
    )
    server = funcd(str(write_function(tmp_path / "f", source)), workers="2")
    pids = {requests.get(server.url).json()["pid"] for _ in range(60)}
    inits = [x for x in server.json_logs() if str(x.get("message", "")).startswith("init_context in")]
    assert len(inits) == 2, server.output
    assert pids <= {int(x["message"].split()[-1]) for x in inits}


def test_cloud_event_signature(funcd, tmp_path):
    source = (
        "import functions_framework\n"
        "seen = []\n"
        "@functions_framework.cloud_event\n"
        "def on_event(cloud_event):\n"
        "    assert cloud_event['type'] == 'com.example.t'\n"
        "    assert cloud_event.data == {'n': 1}\n"
    )
    server = funcd(str(write_function(tmp_path / "f", source)), "--target", "on_event")
    r = requests.post(
        server.url,
        json={"n": 1},
        headers={"ce-specversion": "1.0", "ce-id": "1", "ce-type": "com.example.t", "ce-source": "/t"},
    )
    assert r.status_code == 200 and r.text == "OK"
    r = requests.post(server.url, json={"n": 1})
    assert r.status_code == 400 and "expected a CloudEvent" in r.json()["error"]["message"]


def test_new_scaffolds_a_function_whose_test_passes(tmp_path, funcd):
    result = run_cli("new", "greeter", "--template", "http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "greeter"
    assert {p.name for p in folder.iterdir()} >= {"main.py", "function.yaml", "test_greeter.py", "README.md"}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
    server = funcd(str(folder))
    assert requests.post(server.url, json={"name": "Ada"}).json() == {"message": "Hello, Ada!"}
    again = run_cli("new", "greeter", cwd=tmp_path)
    assert again.returncode == 1 and "expected a new or empty folder" in again.stderr
