"""More HTTP peers for bench/http_bench.py (issue 11): Knative's and OpenFunction's Python frameworks.

Each runs from its own virtualenv under bench/.venvs (git-ignored, created on first run) and serves the
same hello function as the other peers (POST / {"name": "bench"} → {"message": "Hello, bench!"}).

- Knative: ``func-python`` (the middleware ``func`` builds Python functions on): an ASGI function served
  by ``func_python.http.serve`` on hypercorn, one process; ``LISTEN_ADDRESS`` picks the address.
- OpenFunction: ``ofn-functions-framework`` 0.2.0rc1, its CLI with an HTTP trigger in ``FUNC_CONTEXT``:
  Flask on gunicorn, 1 worker with 1024 threads (its fixed settings). It binds 0.0.0.0 (hard-coded).
"""

from __future__ import annotations

import json
from typing import Any

import common
from common import BENCH, ROOT, ServerSpec

PEERS = BENCH / "peers"
KNATIVE_VENV = BENCH / ".venvs" / "knative"
KNATIVE_REQUIREMENTS = ["func-python==0.8.1"]
OFN_VENV = BENCH / ".venvs" / "ofn"
# As installed, ofn-functions-framework 0.2.0rc1 pulls dapr-ext-grpc 1.18 beside dapr 1.11 and fails to
# import; the matching dapr-ext-grpc makes it run.
OFN_REQUIREMENTS = ["ofn-functions-framework==0.2.0rc1", "dapr-ext-grpc==1.11.0"]


def ensure() -> dict[str, dict[str, Any]]:
    """Create the virtualenvs if needed; their versions, or {"error": ...} for one that does not import."""
    return {
        "knative": common.ensure_venv(KNATIVE_VENV, KNATIVE_REQUIREMENTS, "import func_python.http"),
        "ofn": common.ensure_venv(OFN_VENV, OFN_REQUIREMENTS, "import functions_framework.runner"),
    }


def knative_spec() -> ServerSpec:
    return ServerSpec(
        "knative",
        "Knative func-python (hypercorn, 1 process)",
        [str(KNATIVE_VENV / "bin" / "python"), str((PEERS / "knative_hello.py").relative_to(ROOT))],
        env={"LISTEN_ADDRESS": "127.0.0.1:{port}"},
        notes="bench/peers/knative_hello.py: ASGI handle() + new(), func_python.http.serve",
        info={"workers": 0},
    )


def ofn_spec() -> ServerSpec:
    context = {"name": "hello", "version": "v1", "port": "{port}", "triggers": {"http": {"port": "{port}"}}}
    # The ports must be JSON numbers: {port} is replaced in the text.
    text = json.dumps(context, separators=(",", ":")).replace('"{port}"', "{port}")
    return ServerSpec(
        "ofn",
        "OpenFunction ofn-functions-framework (gunicorn, 1 worker x 1024 threads)",
        [
            str(OFN_VENV / "bin" / "functions-framework"),
            "--target",
            "hello",
            "--source",
            str((PEERS / "ofn_hello" / "main.py").relative_to(ROOT)),
        ],
        env={"FUNC_CONTEXT": text},
        notes="bench/peers/ofn_hello/main.py: hello(context: UserContext), HTTP trigger",
        info={"workers": 1},
    )


def specs(venvs: dict[str, dict[str, Any]]) -> list[ServerSpec]:
    out = []
    if "error" not in venvs["knative"]:
        out.append(knative_spec())
    if "error" not in venvs["ofn"]:
        out.append(ofn_spec())
    return out
