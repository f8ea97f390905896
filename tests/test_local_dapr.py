"""Local embedded mode pieces that need no daprd: finding it, default components, funcd publish errors."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from functions_framework.errors import FunctionsFrameworkError
from functions_framework.model import parse_context
from functions_framework.runtime.sidecar import default_components, find_daprd
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
    cached = cache / "daprd-1.15.4" / "daprd"
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
