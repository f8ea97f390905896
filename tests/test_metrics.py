"""The metrics plugin over HTTP with real worker processes: a real ``/metrics`` scrape, parsed with
prometheus_client's parser, sums what every worker counted; a worker's files are folded into the
archive when it exits, and the directory goes with the supervisor."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.metrics_support import Scrape, scrape, scrape_until
from tests.support import write_function

FUNCTION = """
import os
import time
from pathlib import Path
import functions_framework as ff

def handler(context, event):
    data = event.data if isinstance(event.data, dict) else {}
    kind = data.get("kind")
    if kind == "client":
        raise ff.HTTPError(422, "unprocessable")
    if kind == "server":
        raise RuntimeError("boom")
    if kind == "hold":  # stay in flight until the test creates the file (bounded)
        deadline = time.monotonic() + 20
        while not Path(data["until"]).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return {"pid": os.getpid()}
"""

CONTEXT = """
name: counted
metrics: {enabled: true}
"""

N_OK, N_CLIENT, N_SERVER = 240, 30, 30
HOLDS = 3


def metrics_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("funcd-metrics-*"))


def files_of(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*.db")}


@pytest.fixture
def started(funcd, tmp_path):
    """A function served by 2 workers; TMPDIR points into the test's folder, so that the supervisor's
    multiprocess directory is found (and checked gone) there."""
    folder = write_function(tmp_path / "f", FUNCTION, CONTEXT)
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    def start(*args: str, workers: str = "2"):
        server = funcd(str(folder), "--max-body", "1KiB", *args, env={"TMPDIR": str(tmp)}, workers=workers)
        # ready once one worker answers; wait until every worker has started
        scrape_until(server.url, lambda s: s.total("funcd_cold_start_seconds_count") == int(workers))
        return server, tmp

    return start


def post(url: str, data: dict) -> requests.Response:
    return requests.post(url + "/", json=data, timeout=30)  # a new connection per request


def test_counts_from_both_workers_add_up_exactly(started, tmp_path):
    server, tmp = started()
    [directory] = metrics_dirs(tmp)

    # Calls held in flight: the gauge sums the workers that hold them.
    release = tmp_path / "release"
    holders = [
        threading.Thread(target=post, args=(server.url, {"kind": "hold", "until": str(release)}))
        for _ in range(HOLDS)
    ]
    for t in holders:
        t.start()
    scrape_until(server.url, lambda s: s.total("funcd_in_flight") == HOLDS)
    release.touch()
    for t in holders:
        t.join(30)

    kinds = ["ok"] * N_OK + ["client"] * N_CLIENT + ["server"] * N_SERVER
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda k: post(server.url, {"kind": k}), kinds))
    expected = {"ok": 200, "client": 422, "server": 500}
    assert [r.status_code for r in replies] == [expected[k] for k in kinds]
    pids = {r.json()["pid"] for r in replies if r.status_code == 200}
    assert len(pids) == 2, f"expected both workers to serve, got pids {pids}"
    assert {f"counter_{p}.db" for p in pids} <= files_of(directory)

    too_large = [requests.post(server.url + "/", data=b"x" * 2048, timeout=10) for _ in range(2)]
    bad_ce = [
        requests.post(
            server.url + "/", data=b"{}", headers={"ce-specversion": "1.0", "ce-type": "t"}, timeout=10
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in too_large + bad_ce] == [413, 413, 400, 400]

    # The worker answering a scrape flushes its own counts; the other's arrive within its flush
    # interval. Once every call is in, scrapes answered by either worker are all the same.
    calls = N_OK + HOLDS + N_CLIENT + N_SERVER
    scrape_until(server.url, lambda s: s.total("funcd_invocations_total") == calls, timeout=10)
    scrapes = [scrape(server.url) for _ in range(10)]
    assert all(s.samples == scrapes[0].samples for s in scrapes), "scrapes of the workers differ"
    s = scrapes[0]
    check_http_counts(s, ok=N_OK + HOLDS, client=N_CLIENT, server=N_SERVER)
    assert s.total("funcd_in_flight", function="counted") == 0
    assert s.total("funcd_rejected_total", function="counted", reason="too_large") == 2
    assert s.total("funcd_rejected_total", function="counted", reason="bad_cloudevent") == 2
    assert s.total("funcd_rejected_total", function="counted", reason="invalid_delivery") == 0
    assert s.total("funcd_cold_start_seconds_count", function="counted") == 2  # once per worker
    assert 0 < s.total("funcd_cold_start_seconds_sum") < 60


def check_http_counts(s: Scrape, ok: int, client: int, server: int) -> None:
    expected = {
        (("function", "counted"), ("outcome", "200"), ("trigger", "http")): ok,
        (("function", "counted"), ("outcome", "422"), ("trigger", "http")): client,
        (("function", "counted"), ("outcome", "500"), ("trigger", "http")): server,
    }
    assert s.series("funcd_invocations_total") == {k: v for k, v in expected.items() if v}, s.text
    total = ok + client + server
    assert s.total("funcd_invocation_duration_seconds_count", function="counted", trigger="http") == total
    assert s.total("funcd_invocation_duration_seconds_bucket", trigger="http", le="+Inf") == total
    assert s.total("funcd_invocation_duration_seconds_bucket", trigger="http", le="60.0") == total
    assert s.total("funcd_invocation_duration_seconds_sum", trigger="http") > 0


def test_a_restarted_workers_files_are_folded_into_the_archive(started):
    server, tmp = started()
    [directory] = metrics_dirs(tmp)
    for i in range(20):
        assert post(server.url, {"kind": "ok" if i % 4 else "server"}).status_code in (200, 500)
    scrape_until(server.url, lambda s: s.total("funcd_invocations_total") == 20)
    before = {f.split("_")[-1][:-3] for f in files_of(directory)}
    assert len(before) == 2, files_of(directory)

    os.kill(server.proc.pid, signal.SIGHUP)  # granian restarts every worker, one after the other

    def restarted(s: Scrape) -> bool:
        left = {f for f in files_of(directory) if f.split("_")[-1][:-3] in before}
        return s.total("funcd_cold_start_seconds_count") == 4 and not left

    s = scrape_until(server.url, restarted, timeout=40)
    check_http_counts(s, ok=15, client=0, server=5)  # nothing lost, nothing counted twice
    names = files_of(directory)
    assert {"counter_archive.db", "histogram_archive.db"} <= names, names
    assert not any(n.startswith("gauge_") and n.split("_")[-1][:-3] in before for n in names)
    assert len({n.split("_")[-1][:-3] for n in names} - {"archive"}) == 2, names  # the new workers
    assert s.total("funcd_in_flight") == 0

    assert server.stop() == 0
    assert metrics_dirs(tmp) == [], "the supervisor left its multiprocess directory behind"


def test_a_killed_worker_takes_the_server_down_and_the_directory_goes(started):
    server, tmp = started()
    [directory] = metrics_dirs(tmp)
    pids = set()
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        pids.add(post(server.url, {"kind": "ok"}).json()["pid"])
    assert len(pids) == 2
    os.kill(pids.pop(), signal.SIGKILL)
    # granian does not respawn a crashed worker (funcd leaves respawn off): the server stops.
    code = server.proc.wait(30)
    assert code != 0
    assert not directory.exists(), f"left behind: {sorted(files_of(directory))}"


def test_single_process_server(started):
    server, tmp = started("--server", "wsgiref", workers="1")
    for _ in range(5):
        assert post(server.url, {"kind": "ok"}).status_code == 200
    s = scrape(server.url)
    check_http_counts(s, ok=5, client=0, server=0)
    assert s.total("funcd_cold_start_seconds_count") == 1
    assert server.stop() == 0
    assert metrics_dirs(tmp) == []


def test_a_killed_supervisors_directory_goes_at_the_next_start_and_a_live_one_stays(started):
    first, tmp = started()
    [abandoned] = metrics_dirs(tmp)
    first.kill()  # SIGKILL: no clean-up of its own
    assert abandoned.exists()
    second, _ = started()
    assert not abandoned.exists(), "the next start left the abandoned directory"
    [live] = metrics_dirs(tmp)
    third, _ = started()  # starts while the second serves: the second's directory is in use
    assert live.exists() and len(metrics_dirs(tmp)) == 2
    assert post(second.url, {"kind": "ok"}).status_code == 200
    scrape_until(second.url, lambda s: s.total("funcd_invocations_total") == 1, timeout=10)
    assert second.stop() == 0 and third.stop() == 0
    assert metrics_dirs(tmp) == []
