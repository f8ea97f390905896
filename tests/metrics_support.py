"""Reading a real ``/metrics`` scrape in the metrics tests (prometheus_client's own text parser)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """The samples of one scrape: (sample name, sorted label items) -> value."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    text: str

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, items), v in self.samples.items() if n == name and want <= set(items))

    def series(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {items: v for (n, items), v in self.samples.items() if n == name}

    def has(self, name: str, **labels: str) -> bool:
        want = set(labels.items())
        return any(n == name and want <= set(items) for (n, items) in self.samples)


def scrape(url: str, path: str = "/metrics") -> Scrape:
    r = requests.get(url + path, timeout=10)
    assert r.status_code == 200, f"GET {path}: expected 200, got {r.status_code}: {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return Scrape(samples, r.text)


def scrape_until(
    url: str, done: Callable[[Scrape], bool], timeout: float = 15.0, path: str = "/metrics"
) -> Scrape:
    """Scrape until ``done`` holds (at most ``timeout`` seconds); the last scrape in the error."""
    deadline = time.monotonic() + timeout
    while True:
        last = scrape(url, path)
        if done(last):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"the scrape did not reach the expected state within {timeout}s:\n{last.text}"
            )
        time.sleep(0.05)
