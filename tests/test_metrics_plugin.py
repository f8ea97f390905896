"""The metrics plugin in one process: its own registry (no supervisor), output sends through the
Dapr API protocol fake, the multiprocess directory's archive and lock, the cold start clock."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from funcd_metrics import MetricsPlugin, trigger_label
from funcd_metrics.multiprocess import LockedCollector, retire_worker
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from functions_framework import FunctionContext, OutputError, Trigger
from functions_framework.invocation import Invoker
from functions_framework.model import Component, StateStore
from functions_framework.model.context import Metrics
from functions_framework.outputs import DaprOutputs
from functions_framework.plugins import Hooks, OutboundCall, WorkerInfo, load_plugins
from functions_framework.runtime.http import HttpApp
from functions_framework.runtime.lifecycle import Lifecycle
from functions_framework.runtime_context import RuntimeContext
from functions_framework.settings import Settings
from functions_framework.testing import load


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def handler(context, event):
    if event.data and event.data.get("fail"):
        raise RuntimeError("boom")
    return "ok"


def in_process(context: FunctionContext) -> tuple[Client, MetricsPlugin]:
    """The function's WSGI app with the plugins the context names, built as a worker builds them."""
    hooks = load_plugins(context, extra={"metrics": MetricsPlugin})
    [plugin] = hooks.plugins
    loaded, _ = load(handler)
    invoker = Invoker(loaded.adapter, RuntimeContext(context), hooks)
    app = HttpApp(invoker, Settings(max_body=100), Lifecycle(), routes=hooks.routes())
    return Client(app), plugin


def test_without_a_supervisor_the_plugin_counts_in_its_own_registry():
    assert MetricsPlugin.directory is None  # no supervisor_setup in this process
    context = FunctionContext(name="solo", metrics=Metrics(enabled=True, path="/m"))
    MetricsPlugin(context)  # another instance: registries are per instance, no clash
    client, plugin = in_process(context)
    plugin.worker_started(WorkerInfo(os.getpid(), context, Settings()))
    for _ in range(3):
        assert client.post("/", json={}).status_code == 200
    assert client.post("/", json={"fail": True}).status_code == 500
    assert client.post("/", data=b"x" * 200).status_code == 413

    s = samples(client.get("/m").get_data(as_text=True))
    fn = ("function", "solo")
    assert s[("funcd_invocations_total", (fn, ("outcome", "200"), ("trigger", "http")))] == 3
    assert s[("funcd_invocations_total", (fn, ("outcome", "500"), ("trigger", "http")))] == 1
    assert s[("funcd_invocation_duration_seconds_count", (fn, ("trigger", "http")))] == 4
    assert s[("funcd_rejected_total", (fn, ("reason", "too_large")))] == 1
    assert s[("funcd_in_flight", (fn,))] == 0
    assert s[("funcd_cold_start_seconds_count", (fn,))] == 1


@pytest.mark.parametrize(
    ("pre", "post", "counted"), [((), ("metrics",), 2), (("metrics",), (), 0)], ids=["post-only", "pre-only"]
)
def test_named_in_one_hook_list_only_in_flight_never_drifts(pre, post, counted, caplog):
    context = FunctionContext(name="half", pre_hooks=pre, post_hooks=post)
    client, _ = in_process(context)
    for _ in range(2):
        assert client.post("/", json={}).status_code == 200
    s = samples(client.get("/metrics").get_data(as_text=True))
    assert s[("funcd_in_flight", (("function", "half"),))] == 0
    calls = s.get(
        ("funcd_invocations_total", (("function", "half"), ("outcome", "200"), ("trigger", "http"))), 0
    )
    assert calls == counted
    assert ("pre hooks only" in caplog.text) == (not post)


def test_output_sends_are_counted_by_outcome(dapr_api, caplog):
    context = FunctionContext(
        name="sender",
        outputs={"out": Component("out", "pubsub", "pubsub.redis", topic="t")},
        states={"kv": StateStore("kv", "statestore", "state.redis")},
    )
    plugin = MetricsPlugin(context)

    class Raising:
        name = "raising"

        def outbound(self, call: OutboundCall) -> None:
            def fail(error: BaseException | None) -> None:
                raise ValueError("callback failure")

            call.on_done.append(fail)

    hooks = Hooks(plugins=(plugin, Raising()))
    outputs = DaprOutputs(context, dapr_api.address, hooks.outbound)
    try:
        with caplog.at_level(logging.ERROR, "functions_framework.plugins"):
            outputs.send({"a": 1}, output="out")
        assert any("on_done callback" in r.getMessage() for r in caplog.records), caplog.text
        dapr_api.fail_next("PublishEvent", grpc.StatusCode.UNAVAILABLE)
        with pytest.raises(OutputError) as temporary:
            outputs.send({"a": 2}, output="out")
        assert temporary.value.temporary
        dapr_api.fail_next("PublishEvent", grpc.StatusCode.INVALID_ARGUMENT)
        with pytest.raises(OutputError):
            outputs.send({"a": 3}, output="out")
        outputs.state("kv").save("k", 1)  # state calls are not sends
    finally:
        outputs.close()
    s = samples(Client(plugin.routes()["/metrics"]).get("/metrics").get_data(as_text=True))
    sends = {k[1]: v for k, v in s.items() if k[0] == "funcd_output_sends_total"}
    fn, out = ("function", "sender"), ("output", "out")
    assert sends == {
        (fn, ("outcome", "success"), out): 1,
        (fn, ("outcome", "temporary_error"), out): 1,
        (fn, ("outcome", "permanent_error"), out): 1,
    }


def test_trigger_labels():
    assert trigger_label(Trigger("http", "http")) == "http"
    assert trigger_label(Trigger("pubsub", "orders")) == "pubsub:orders"
    assert trigger_label(Trigger("binding", "cron")) == "binding:cron"


def write_counter(directory: Path, pid: int | str, value: float, labels: tuple[str, ...] = ("f",)) -> None:
    """A counter file as a worker writes it (prometheus_client's own file format)."""
    f = MmapedDict(str(directory / f"counter_{pid}.db"))
    key = mmap_key("c", "c_total", ["function"], list(labels), "help")
    f.write_value(key, f.read_value(key)[0] + value, 0.0)
    f.close()


def collected_total(directory: Path) -> float:
    return sum(s.value for m in LockedCollector(str(directory)).collect() for s in m.samples)


def test_a_retired_workers_counts_move_into_the_archive(tmp_path):
    write_counter(tmp_path, 101, 5)
    write_counter(tmp_path, 102, 7)
    gauge = MmapedDict(str(tmp_path / "gauge_livesum_101.db"))
    gauge.write_value(mmap_key("g", "g", ["function"], ["f"], "help"), 2.0, 0.0)
    gauge.close()
    assert collected_total(tmp_path) == 14

    removed = retire_worker(str(tmp_path), 101)
    assert sorted(Path(p).name for p in removed) == ["counter_101.db", "gauge_livesum_101.db"]
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_102.db", "counter_archive.db"]
    assert collected_total(tmp_path) == 12  # the counter stays; the dead worker's gauge is gone
    retire_worker(str(tmp_path), 102)
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive.db"]
    assert collected_total(tmp_path) == 12


def test_a_scrape_never_sees_a_retiring_worker_twice_or_not_at_all(tmp_path):
    write_counter(tmp_path, "archive", 0)
    seen: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def scraper() -> None:
        while not stop.is_set():
            try:
                seen.append(collected_total(tmp_path))
            except BaseException as exc:  # a file removed between glob and read
                errors.append(exc)

    thread = threading.Thread(target=scraper)
    thread.start()
    try:
        for pid in range(1000, 1200):
            write_counter(tmp_path, pid, 1)
            retire_worker(str(tmp_path), pid)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors[:3]
    assert len(seen) > 10
    assert all(a <= b for a, b in itertools.pairwise(seen)), "a counter went down during a retirement"
    assert collected_total(tmp_path) == 200


def test_cold_start_is_measured_from_the_process_start():
    code = "import time; time.sleep(0.3); from funcd_metrics import process_age; print(process_age())"
    age = float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    assert 0.3 <= age < 30
