"""Plugins load by name through the real entry-point mechanism and run around every call."""

from __future__ import annotations

import json

import requests

from tests.support import run_cli, write_function

PLUGINS_MODULE = '''
import logging

class Recorder:
    """Records its hooks' order into a response header."""
    def __init__(self, context, name):
        self.name = name

    def pre_hook(self, invocation):
        invocation.state.setdefault("order", []).append(f"pre:{self.name}")

    def post_hook(self, invocation, outcome):
        order = invocation.state.setdefault("order", [])
        order.append(f"post:{self.name}:{outcome.status.value}")
        invocation.response_headers["x-order"] = ",".join(order)

def first(context):
    return Recorder(context, "first")

def second(context):
    return Recorder(context, "second")

class Exploding:
    name = "exploding"
    def __init__(self, context):
        pass
    def pre_hook(self, invocation):
        raise RuntimeError("pre went wrong")
    def post_hook(self, invocation, outcome):
        raise RuntimeError("post went wrong")
'''

ENTRY_POINTS = """[functions_framework.plugins]
first = funcd_test_plugins:first
second = funcd_test_plugins:second
exploding = funcd_test_plugins:Exploding
"""

HANDLER = """
def handler(context, event):
    return {"ok": True}
"""


def install_test_plugins(site):
    """A real distribution on PYTHONPATH: a module plus dist-info with entry points."""
    site.mkdir()
    (site / "funcd_test_plugins.py").write_text(PLUGINS_MODULE)
    dist = site / "funcd_test_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: funcd-test-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return {"PYTHONPATH": str(site)}


def test_hooks_run_in_order_with_per_call_state(funcd, tmp_path):
    env = install_test_plugins(tmp_path / "site")
    folder = write_function(
        tmp_path / "f",
        HANDLER,
        "name: p\npreHooks: [first, second, duration]\npostHooks: [second, first, duration]\n",
    )
    server = funcd(str(folder), env=env, workers="2")
    for _ in range(3):
        r = requests.get(server.url)
        assert r.status_code == 200
        assert r.headers["x-order"] == "pre:first,pre:second,post:second:success,post:first:success"
        assert float(r.headers["x-funcd-duration"]) > 0


def test_v1beta1_plugin_names(funcd, tmp_path):
    env = install_test_plugins(tmp_path / "site")
    ctx = json.dumps(
        {"name": "p", "runtime": "Knative", "port": "8080", "prePlugins": ["first"], "postPlugins": ["first"]}
    )
    folder = write_function(tmp_path / "f", HANDLER)
    server = funcd(str(folder), env={**env, "FUNC_CONTEXT": ctx})
    assert requests.get(server.url).headers["x-order"] == "pre:first,post:first:success"


def test_a_raising_hook_is_logged_and_isolated(funcd, tmp_path):
    env = install_test_plugins(tmp_path / "site")
    folder = write_function(
        tmp_path / "f", HANDLER, "name: p\npreHooks: [exploding, first]\npostHooks: [exploding, first]\n"
    )
    server = funcd(str(folder), env=env)
    r = requests.get(server.url)
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert r.headers["x-order"] == "pre:first,post:first:success"
    for hook in ("pre_hook", "post_hook"):
        line = server.wait_for_log(lambda x, h=hook: f"{h} of plugin 'exploding' raised" in x["message"])
        assert line["level"] == "error" and "Traceback" in line.get("exception", ""), line


def test_unknown_plugin_fails_at_start_listing_what_is_installed(tmp_path):
    env = install_test_plugins(tmp_path / "site")
    folder = write_function(tmp_path / "f", HANDLER, "name: p\npreHooks: [first, nosuch]\n")
    result = run_cli("run", str(folder), "--port", "0", env=env)
    assert result.returncode == 1
    assert "'nosuch'" in result.stderr and "not installed" in result.stderr
    assert "installed: duration, exploding, first, metrics, second, tracing" in result.stderr
    assert "Traceback" not in result.stderr
