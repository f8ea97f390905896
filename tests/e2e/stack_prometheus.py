"""Prometheus for tests: static scrape targets, a short scrape interval, the query API on loopback.

The ``prometheus`` fixture (function scope) is a factory, since the targets are known only once the
test has started them::

    prom = prometheus(["127.0.0.1:8080"], metrics_path="/metrics")
    prom.wait_target_up()
    prom.value('sum(funcd_invocations_total)')

Each Prometheus keeps its TSDB in the test's temporary folder and is stopped by PID afterwards.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack_procs import HOST, Proc, free_port, http_status, start, wait_until
from tests.support import testbin_stack

JOB = "funcd"


@dataclass
class Prometheus:
    """A running Prometheus scraping static targets."""

    proc: Proc
    port: int
    config_path: Path
    scrape_interval: float
    version: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a successful answer (an error says what was asked)."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"GET {url}: {exc.code} {exc.read()[:500]!r}") from None
        if body.get("status") != "success":
            raise AssertionError(f"GET {url}: expected status success, got {body}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (at ``at``, Unix seconds, or now): the vector's elements."""
        data = self.api("query", query=promql, time=None if at is None else f"{at:.3f}")
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def value(self, promql: str, at: float | None = None) -> float | None:
        """The value of a one-element vector, or ``None`` when the vector is empty."""
        result = self.query(promql, at)
        if not result:
            return None
        assert len(result) == 1, f"{promql}: expected one series, got {result}"
        return float(result[0]["value"][1])

    def wait_target_up(self, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.value(f'min(up{{job="{JOB}"}})') == 1.0, "the scrape target up", timeout, [self.proc]
        )

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"prometheus log ({self.proc.log_path})", self.proc.log_tail(40))]

    def stop(self) -> None:
        self.proc.stop()


def prometheus_config(targets: Sequence[str], metrics_path: str, interval: float) -> dict[str, Any]:
    every = f"{int(interval * 1000)}ms"
    return {
        "global": {"scrape_interval": every, "scrape_timeout": every, "evaluation_interval": every},
        "scrape_configs": [
            {"job_name": JOB, "metrics_path": metrics_path, "static_configs": [{"targets": list(targets)}]}
        ],
    }


def start_prometheus(
    binary: Path,
    version: str,
    workdir: Path,
    targets: Sequence[str],
    metrics_path: str = "/metrics",
    scrape_interval: float = 1.0,
) -> Prometheus:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"  # JSON is YAML
    config_path.write_text(json.dumps(prometheus_config(targets, metrics_path, scrape_interval), indent=2))
    argv = [
        str(binary),
        f"--config.file={config_path}",
        f"--web.listen-address={HOST}:{port}",
        f"--storage.tsdb.path={workdir / 'data'}",
    ]
    proc = start("prometheus", argv, workdir / "logs")
    prom = Prometheus(proc, port, config_path, scrape_interval, version)
    try:
        wait_until(lambda: http_status(f"{prom.url}/-/ready") == 200, "prometheus ready", 60, [proc])
    except BaseException:
        proc.stop()
        raise
    return prom


class PrometheusFactory:
    """Starts Prometheus servers for one test and stops them afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Prometheus] = []

    def __call__(self, targets: Sequence[str], **kwargs: Any) -> Prometheus:
        stack = testbin_stack()
        try:
            binary = Path(stack.binary("prometheus"))
        except stack.MissingBinary as exc:
            pytest.fail(f"{exc}\nbuild it: python testbin/build.py prometheus", pytrace=False)
        workdir = self.workdir / f"prometheus-{len(self.started) + 1}"
        prom = start_prometheus(binary, stack.version("prometheus"), workdir, targets, **kwargs)
        self.started.append(prom)
        return prom

    def log_sections(self) -> list[tuple[str, str]]:
        return [section for prom in self.started for section in prom.log_sections()]

    def stop(self) -> None:
        for prom in reversed(self.started):
            prom.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """A factory: ``prometheus(targets, metrics_path=..., scrape_interval=...)`` -> Prometheus."""
    factory = PrometheusFactory(tmp_path)
    yield factory
    factory.stop()
