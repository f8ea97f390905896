"""One settings object: typos are refused at start-up, context ports of 0 stay 0, and cli.py is the only
module of functions_framework that reads the environment."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import requests

from functions_framework import Settings
from functions_framework.cli import build_parser, build_settings
from functions_framework.errors import UsageError
from functions_framework.model import parse_context_text
from tests.compat_support import SUCCESS, dapr_stub, topic_event
from tests.support import ROOT, run_cli, write_function

HANDLER = "def handler(context, event):\n    return {'ok': True}\n"


def one_line_error(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("funcd: error: "), lines[0]
    return lines[0]


# ---------------------------------------------------------------- typos are refused


@pytest.mark.parametrize(
    ("flag", "value", "choices"),
    [
        ("--on-error", "dorp", ("retry", "drop")),
        ("--on-invalid", "retyr", ("retry", "drop")),
        ("--app-protocol", "grcp", ("grpc", "http")),
        ("--server", "gunicorn", ("granian", "wsgiref")),
    ],
)
def test_a_typo_in_a_closed_choice_exits_2_naming_the_flag_value_and_choices(tmp_path, flag, value, choices):
    folder = write_function(tmp_path / "f", HANDLER)
    result = run_cli("run", str(folder), "--port", "0", flag, value)
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert flag in line and repr(value) in line, line
    for choice in choices:
        assert repr(choice) in line, line


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_an_unreadable_access_log_setting_in_the_environment_exits_2(tmp_path, value):
    folder = write_function(tmp_path / "f", HANDLER)
    result = run_cli("run", str(folder), "--port", "0", env={"FUNCD_ACCESS_LOG": value})
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert f"FUNCD_ACCESS_LOG: expected 1/true/yes/on or 0/false/no/off, got {value!r}" in line, line


def test_an_unreadable_port_in_the_environment_exits_2(tmp_path):
    folder = write_function(tmp_path / "f", HANDLER)
    result = run_cli("run", str(folder), env={"PORT": "http"})
    assert result.returncode == 2, result.stderr
    assert "PORT: port: expected a number 0-65535, got 'http'" in one_line_error(result)


# ---------------------------------------------------------------- built once, from flags, env, context


def settings(argv: list[str], env: dict[str, str], context: str = "name: s\n") -> Settings:
    args = build_parser().parse_args(["run", *argv])
    return build_settings(args, env, parse_context_text(context, "function.yaml"))


def test_flags_then_env_then_context_then_defaults():
    ctx = "name: s\ntriggers:\n  http: {port: 9000}\n  dapr: [{name: t, type: bindings.cron}]\ndaprPort: 0\n"
    assert settings([], {}, ctx).port == 9000
    assert settings([], {"PORT": "9100"}, ctx).port == 9100
    assert settings(["--port", "9200"], {"PORT": "9100"}, ctx).port == 9200
    assert settings([], {}, ctx).dapr_port == 0
    assert settings(["--dapr-port", "7000"], {}, ctx).dapr_port == 7000
    assert settings([], {}).port == 8080 and settings([], {}).dapr_port == 50051
    for env, on in [({}, False), ({"FUNCD_ACCESS_LOG": "1"}, True), ({"FUNCD_ACCESS_LOG": "off"}, False)]:
        assert settings([], env).access_log is on
    assert settings(["--access-log"], {"FUNCD_ACCESS_LOG": "0"}).access_log is True
    assert settings(["--app-protocol", "http"], {}).app_protocol == "http"
    assert settings([], {}, "name: s\nappProtocol: http\n").app_protocol == "http"
    assert settings(["--on-error", "drop"], {}).ack_policy.on_error == "DROP"


def test_the_settings_object_is_frozen():
    s = settings([], {})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_a_bad_env_flag_is_a_usage_error():
    with pytest.raises(UsageError, match="FUNCD_ACCESS_LOG"):
        settings([], {"FUNCD_ACCESS_LOG": "maybe"})


# ---------------------------------------------------------------- a context port of 0 stays 0

CONTEXT_PORTS_0 = """
name: ports-zero
triggers:
  http: {port: 0}
  dapr:
    - {name: msg, type: pubsub.redis, topic: orders}
daprPort: 0
"""


def test_context_ports_of_0_serve_on_free_ports(funcd, tmp_path, dapr_api):
    folder = write_function(tmp_path / "f", HANDLER, CONTEXT_PORTS_0)
    # Neither --port nor --dapr-port: the context's 0s decide.
    server = funcd(str(folder), "--dapr-address", dapr_api.address, env=dapr_api.env(), port="")
    assert server.port not in (0, 8080), server.output
    assert requests.get(server.url + "/").json() == {"ok": True}
    line = next(x for x in server.lines if "serving Dapr app callbacks" in x)
    match = re.search(r"grpc://127\.0\.0\.1:(\d+)", line)
    assert match, line
    assert int(match.group(1)) not in (0, 50051, server.port), line
    channel, stub = dapr_stub(server)  # connects to the announced port
    try:
        assert stub.OnTopicEvent(topic_event(b"{}")).status == SUCCESS
    finally:
        channel.close()


# ---------------------------------------------------------------- only cli.py reads the environment


ENV_READS = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def env_reads(path: Path, root: Path = ROOT) -> list[str]:
    """Every use of os.environ / os.getenv (and friends) in a module, as 'file:line: code'."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        hit = (
            isinstance(node, ast.Attribute)
            and node.attr in ENV_READS
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ENV_READS for alias in node.names)
        )
        if hit:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_cli_is_the_only_module_that_reads_the_environment():
    package = ROOT / "functions_framework"
    modules = sorted(package.rglob("*.py"))
    assert len(modules) > 20
    outside = [hit for path in modules if path.name != "cli.py" for hit in env_reads(path)]
    assert outside == [], "only functions_framework/cli.py may read the environment:\n" + "\n".join(outside)
    assert env_reads(package / "cli.py"), "the scan finds nothing, not even cli.py's own reads"


def test_the_scan_sees_every_spelling(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nfrom os import getenv\n"
        "a = os.environ.get('A')\nb = os.getenv('B')\nos.environ['C'] = '1'\n"
        '"""os.environ in a docstring is not a read"""\n'
    )
    hits = sorted(hit.split(": ", 1)[1] for hit in env_reads(sample, tmp_path))
    assert hits == ["from os import getenv", "os.environ", "os.environ", "os.getenv"]
