"""``funcd deploy``: validate a Function with the model, server-side apply it, follow its status.

Exit codes: 0 when ``Ready=True`` for the applied generation; 1 on timeout (with the last reason and
message) or when the API server refuses the Function; 2 when the model refuses it (nothing applied).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .reconcile import API_VERSION, KIND

FIELD_MANAGER = "funcd-cli"

Print = Callable[[str], None]


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _out(line: str) -> None:
    print(line, flush=True)


def _client(kubeconfig: str | None) -> tuple[Any, str]:
    """An API client and the default namespace: from the kubeconfig, else in-cluster."""
    from kubernetes import client, config

    if kubeconfig or Path(config.KUBE_CONFIG_DEFAULT_LOCATION).expanduser().exists():
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
        return config.new_client_from_config(config_file=kubeconfig), namespace
    config.load_incluster_config()
    ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return client.ApiClient(), ns_file.read_text().strip() if ns_file.exists() else "default"


def describe(cond: dict[str, Any]) -> str:
    """``Ready=False WorkloadUnavailable: message``."""
    text = f"{cond.get('type')}={cond.get('status')} {cond.get('reason', '')}".rstrip()
    return f"{text}: {cond['message']}" if cond.get("message") else text


class Follower:
    """Prints each condition of the applied generation when it appears or changes."""

    def __init__(self, generation: int, out: Print) -> None:
        self.generation, self.out = generation, out
        self.seen: dict[str, tuple[Any, ...]] = {}
        self.ready: dict[str, Any] | None = None

    def observe(self, obj: dict[str, Any]) -> bool:
        """Take a new state of the Function; True once it is Ready for our generation (or a later one)."""
        status = obj.get("status") or {}
        if int(status.get("observedGeneration") or 0) < self.generation:
            return False
        for cond in status.get("conditions") or []:
            now = (cond.get("status"), cond.get("reason"), cond.get("message"))
            if self.seen.get(cond.get("type", "")) != now:
                self.seen[cond.get("type", "")] = now
                self.out(describe(cond))
            if cond.get("type") == "Ready":
                self.ready = cond
        return self.ready is not None and self.ready.get("status") == "True"


def deploy(
    file: str,
    kubeconfig: str | None,
    namespace: str | None,
    timeout: float,
    out: Print = _out,
    err: Print = _err,
) -> int:
    import yaml

    from functions_framework.errors import ContextError
    from functions_framework.model import parse_function

    from .render import render

    path = Path(file)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        err(f"funcd: error: cannot read {path}: {exc.strerror}")
        return 2
    except yaml.YAMLError as exc:
        err(f"funcd: error: {path}: expected a YAML Function resource, got a syntax error: {exc}")
        return 2
    try:
        render(parse_function(data, str(path)))  # the controller would refuse what fails here
    except ContextError as exc:
        err(f"funcd: error: {exc}")
        return 2
    try:
        api_client, default_ns = _client(kubeconfig)
    except Exception as exc:
        err(f"funcd: error: cannot load the cluster configuration ({kubeconfig or 'default'}): {exc}")
        return 1
    ns = namespace or data["metadata"].get("namespace") or default_ns
    data["metadata"]["namespace"] = ns
    data.pop("status", None)
    name = data["metadata"]["name"]
    where = f"Function {ns}/{name}"
    from kubernetes.dynamic import DynamicClient

    try:
        functions = DynamicClient(api_client).resources.get(api_version=API_VERSION, kind=KIND)
        applied = functions.server_side_apply(
            body=data, name=name, namespace=ns, field_manager=FIELD_MANAGER, force_conflicts=True
        ).to_dict()
    except Exception as exc:
        err(f"funcd: error: cannot apply {where}: {_reason(exc)}")
        return 1
    generation = int(applied["metadata"].get("generation") or 0)
    out(f"applied {where} (generation {generation}); waiting up to {timeout:g}s for Ready")
    follower = Follower(generation, out)
    if _follow(functions, ns, name, follower, time.monotonic() + timeout):
        out(f"{where} is Ready")
        return 0
    last = follower.ready
    if last is None:
        err(f"funcd: error: {where}: no status for generation {generation} after {timeout:g}s "
            "(is the funcd controller running?)")  # fmt: skip
    else:
        err(f"funcd: error: {where} not Ready after {timeout:g}s: {describe(last)}")
    return 1


def _follow(functions: Any, ns: str, name: str, follower: Follower, deadline: float) -> bool:
    """Watch the Function until ``follower`` says Ready or ``deadline`` passes."""
    selector = f"metadata.name={name}"
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            listed = functions.get(namespace=ns, field_selector=selector)
            for item in listed.items:
                if follower.observe(item.to_dict()):
                    return True
            version = listed.metadata.resourceVersion
            for event in functions.watch(
                namespace=ns,
                field_selector=selector,
                resource_version=version,
                timeout=max(1, int(remaining)),
            ):
                obj = event["raw_object"]
                if event["type"] in ("ADDED", "MODIFIED") and follower.observe(obj):
                    return True
                if deadline <= time.monotonic():
                    return False
        except Exception as exc:  # a dropped watch or a restarted server: list again
            if deadline - time.monotonic() > 1:
                follower.out(f"(watch interrupted: {_reason(exc)}; retrying)")
                time.sleep(1)
    return False


def _reason(exc: BaseException) -> str:
    """The API server's message when there is one, else the exception."""
    import json

    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)
    return str(exc)


__all__ = ["FIELD_MANAGER", "Follower", "deploy"]
