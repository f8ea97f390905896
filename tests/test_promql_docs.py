"""docs/observability.md's PromQL results stay what docs/screenshots/promql_render.py makes of the
stored query answers (docs/images/promql-results.json), and the writers draw what a small fixed input
says. ``make promql-results`` (docs/screenshots/promql.py) produces all three from a real Prometheus.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.support import ROOT, load_module

render = load_module("promql_render", ROOT / "docs" / "screenshots" / "promql_render.py")
DOC = ROOT / "docs" / "observability.md"
IMAGES = ROOT / "docs" / "images"


def counts(ok: int, client: int, server: int) -> dict[str, int]:
    return {"2xx": ok, "4xx": client, "5xx": server}


def small_results() -> dict:
    return {
        "run": {
            "prometheus": "3.16.0",
            "scrape_interval": 1.0,
            "workers": 2,
            "seconds": 10.0,
            "phase_at": 4,
            "window": "5s",
            "step": 2.0,
            "start": 100.0,
            "at_offset": 9.0,
        },
        "load": {
            "a": {
                "plan": {"1": "2/s", "2": "4/s"},
                "phases": {p: {"2xx": 3, "4xx": 1, "5xx": 0} for p in "12"},
            },
            "b": {
                "plan": {"1": "1/s", "2": "1/s"},
                "phases": {p: {"2xx": 1, "4xx": 0, "5xx": 2} for p in "12"},
            },
        },
        "instant": {
            "rate": {"a": 4.0, "b": 1.25},
            "error_ratio": {"b": 0.5},
            "client_errors": {"a": 0.2, "b": 0.0},
            "p50": {"a": 0.0005, "b": 0.02},
            "p99": {"a": 0.002, "b": 0.2},
            "mean": {"a": 0.0006, "b": math.nan},
            "in_flight": {"a": 0.0, "b": 1.0},
        },
        "range": {
            "rate": {
                "a": [[100.0, 0.0], [110.0, 10.0]],
                "b": [[100.0, 1.0], [105.0, math.nan], [110.0, 1.0]],
            },
            "error_ratio": {"b": [[100.0, 0.25], [110.0, 0.5]]},
            "p99": {"a": [[100.0, 0.002], [110.0, 0.002]], "b": [[100.0, 0.2], [110.0, 0.2]]},
        },
    }


def fragment_of(doc: str) -> str:
    start, end = doc.index(render.START), doc.index(render.END) + len(render.END)
    return doc[start:end]


def test_the_markers_follow_the_promql_block_once():
    doc = DOC.read_text()
    assert doc.count(render.START) == 1, f"expected one {render.START} in {DOC}"
    assert doc.count(render.END) == 1, f"expected one {render.END} in {DOC}"
    head = doc[: doc.index(render.START)]
    assert head.rstrip().endswith("```"), "the results must come right after the PromQL code block"
    assert head[head.rindex("### PromQL") :].count("```promql") == 1


def test_the_docs_hold_what_the_writers_make_of_the_stored_results():
    results = json.loads((IMAGES / "promql-results.json").read_text())
    assert fragment_of(DOC.read_text()) == render.results_markdown(results), (
        "docs/observability.md's promql-results fragment differs from what promql_render.py writes "
        "for docs/images/promql-results.json: run `python docs/screenshots/promql.py --rerender`"
    )
    charts = render.charts(results)
    assert sorted(charts) == ["promql-error-ratio.svg", "promql-p99.svg", "promql-rate.svg"]
    for name, svg in charts.items():
        stored = (IMAGES / name).read_text()
        assert stored == svg, f"docs/images/{name} differs from what promql_render.py draws"
        assert len(stored.encode()) < 100_000, f"docs/images/{name} is {len(stored)} bytes"
        assert f"images/{name}" in DOC.read_text(), f"docs/observability.md does not show {name}"


def test_the_markdown_of_a_small_input():
    text = render.results_markdown(small_results())
    assert text.startswith(render.START + "\n") and text.endswith(render.END)
    assert "| `a` | 1 | 2/s | 3 | 1 | 0 |" in text
    assert "| `b` | 2 | 1/s | 1 | 0 | 2 |" in text
    assert "at 9 s into the load, so the `[5s]` window lies in the second phase" in text
    assert "| `a` | 4.00 | — | 0.20 | 0.5 ms | 2.0 ms | 0.6 ms | 0 |" in text
    assert "| `b` | 1.25 | 50.0 % | 0.00 | 20.0 ms | 200.0 ms | — | 1 |" in text
    assert "`a` has no error ratio (5xx) series" in text
    assert "sum by (function) (rate(funcd_invocations_total[5s]))" in text
    assert "[5m]" in text and "rate(funcd_invocations_total[5m])" not in text
    assert "![p99 duration: Prometheus query_range results, drawn by" in text
    assert "(images/promql-error-ratio.svg)" in text


def test_a_window_that_starts_before_the_second_phase_is_said_so():
    results = small_results()
    results["run"]["at_offset"] = 8.0
    assert "the `[5s]` window spans both phases" in render.results_markdown(results)


def test_the_svg_of_a_small_input():
    results = small_results()
    charts = render.charts(results)
    rate = charts["promql-rate.svg"]
    assert rate.startswith('<svg xmlns="http://www.w3.org/2000/svg" width="640" height="260"')
    assert rate.endswith("</svg>\n")
    # a from (0 s, 0) to (10 s, 10/s): the plot's bottom left to its top right (y up to 10)
    assert 'points="64.0,224.0 490.0,34.0"' in rate
    # b's NaN at 5 s splits its line in two
    assert re.findall(r'stroke="#d62728" stroke-width="1.6" points="([^"]*)"', rate) == [
        "64.0,205.0",
        "490.0,205.0",
    ]
    assert ">phase 2</text>" in rate and ">load ends</text>" in rate
    assert ">a</text>" in rate and ">b</text>" in rate
    # durations on a log axis: 2 ms and 200 ms between the decades 1 ms and 1 s
    p99 = charts["promql-p99.svg"]
    assert re.findall(r">1 m?s<|>10 ms<|>100 ms<", p99) == [">1 ms<", ">10 ms<", ">100 ms<", ">1 s<"]
    ticks = re.findall(r'text-anchor="end">([^<]*)</text>', charts["promql-error-ratio.svg"])
    assert ticks == ["0 %", "10 %", "20 %", "30 %", "40 %", "50 %"]  # up to 0.5, in 5 steps
    assert ">a: no series</text>" in charts["promql-error-ratio.svg"]
    assert "no series" not in rate


def test_replace_fragment():
    doc = f"head\n{render.START}\nold\n{render.END}\ntail\n"
    assert render.replace_fragment(doc, "NEW") == "head\nNEW\ntail\n"
    with pytest.raises(ValueError, match="expected one"):
        render.replace_fragment("no markers", "NEW")


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (None, "ratio", "—"),
        (math.nan, "seconds", "—"),
        (0.1234, "ratio", "12.3 %"),
        (0.0125, "seconds", "12.5 ms"),
        (23.456, "per_second", "23.46"),
        (2.0, "count", "2"),
    ],
)
def test_format_value(value, unit, shown):
    assert render.format_value(value, unit) == shown
