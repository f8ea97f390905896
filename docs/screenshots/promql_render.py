"""Pure writers for docs/screenshots/promql.py: the results as Markdown tables, SVG charts, the fragment
spliced into docs/observability.md. No I/O here, so tests/test_promql_docs.py can check that the
committed fragment and charts are what these functions make of the committed results
(docs/images/promql-results.json).
"""

from __future__ import annotations

import html
import math
import textwrap
from dataclasses import dataclass
from typing import Any, Literal

START = "<!-- promql-results:start -->"
END = "<!-- promql-results:end -->"

Unit = Literal["per_second", "ratio", "seconds", "count"]


@dataclass(frozen=True)
class Query:
    """One documented PromQL query, with its range written as ``{w}``."""

    key: str
    """Short name: the key in the results file and the chart's file name."""
    label: str
    """Column heading in the table."""
    promql: str
    """The query as docs/observability.md writes it, ``[5m]`` replaced by ``[{w}]``."""
    unit: Unit
    """How a value is shown."""

    def text(self, window: str) -> str:
        return self.promql.replace("{w}", window)


QUERIES: tuple[Query, ...] = (
    Query("rate", "calls/s", "sum by (function) (rate(funcd_invocations_total[{w}]))", "per_second"),
    Query(
        "error_ratio",
        "error ratio (5xx)",
        'sum by (function) (rate(funcd_invocations_total{outcome=~"5..|RETRY|DROP"}[{w}]))'
        " / sum by (function) (rate(funcd_invocations_total[{w}]))",
        "ratio",
    ),
    Query(
        "client_errors",
        "4xx/s",
        'sum by (function) (rate(funcd_invocations_total{outcome=~"4.."}[{w}]))',
        "per_second",
    ),
    Query(
        "p50",
        "p50",
        "histogram_quantile(0.5, sum by (function, le) "
        "(rate(funcd_invocation_duration_seconds_bucket[{w}])))",
        "seconds",
    ),
    Query(
        "p99",
        "p99",
        "histogram_quantile(0.99, sum by (function, le) "
        "(rate(funcd_invocation_duration_seconds_bucket[{w}])))",
        "seconds",
    ),
    Query(
        "mean",
        "mean",
        "sum by (function) (rate(funcd_invocation_duration_seconds_sum[{w}]))"
        " / sum by (function) (rate(funcd_invocation_duration_seconds_count[{w}]))",
        "seconds",
    ),
    Query("in_flight", "in flight", "sum by (function) (funcd_in_flight)", "count"),
)
CHARTS: tuple[tuple[str, str], ...] = (
    ("rate", "calls per second"),
    ("error_ratio", "error ratio (HTTP 5xx / all calls)"),
    ("p99", "p99 duration"),
)
"""(query key, chart title) of the query_range charts."""


def query(key: str) -> Query:
    return next(q for q in QUERIES if q.key == key)


def format_value(value: float | None, unit: Unit) -> str:
    """A value as the tables show it; ``None`` (no series) and NaN (no calls) as an em dash."""
    if value is None or value != value:
        return "—"
    if unit == "ratio":
        return f"{value * 100:.1f} %"
    if unit == "seconds":
        return f"{value * 1000:.1f} ms"
    if unit == "per_second":
        return f"{value:.2f}"
    return f"{value:g}"


def results_markdown(results: dict[str, Any], images: str = "images") -> str:
    """The fragment: what was run, the load sent, one table of the instant queries, the charts.

    ``results`` is the results file's content: ``run`` (prometheus, seconds, window, scrape_interval,
    workers, phase_at, at_offset), ``load`` (function -> phase -> status -> count, and ``plan``),
    ``instant`` (query key -> function -> value) and ``range`` (query key -> function -> [[t, v]])."""
    run = results["run"]
    window = run["window"]
    functions = sorted(results["load"])
    seconds_of = {"s": 1, "m": 60}
    window_s = float(window[:-1]) * seconds_of[window[-1]]
    inside = run["at_offset"] - window_s >= run["phase_at"]
    lines = [
        START,
        "",
        *_wrap(
            f"**Real results.** `make promql-results` ran these queries against Prometheus "
            f"{run['prometheus']} (testbin `prometheus`, scraping every {run['scrape_interval']:g} s) "
            f"scraping two functions, each `funcd run --workers {run['workers']}` with metrics on: "
            "`hello-http` (samples/hello-http) and `flaky` (docs/screenshots/flaky, whose caller "
            f"picks its duration and outcome), under {run['seconds']:g} s of paced load. The load lasts "
            f"less than 5 minutes, so the ranges are `[{window}]` instead of `[5m]`; otherwise the "
            "queries are the ones above."
        ),
        "",
        f"The load, by the status the requests got (the second phase starts at {run['phase_at']:g} s):",
        "",
        "| function | phase | requests sent | 2xx | 4xx | 5xx |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for fn in functions:
        load = results["load"][fn]
        for phase in ("1", "2"):
            counts = load["phases"][phase]
            lines.append(
                f"| `{fn}` | {phase} | {load['plan'][phase]} | {counts['2xx']} | {counts['4xx']} "
                f"| {counts['5xx']} |"
            )
    where = (
        f"so the `[{window}]` window lies in the second phase"
        if inside
        else f"so the `[{window}]` window spans both phases"
    )
    lines += [
        "",
        f"Instant queries (`/api/v1/query`) at {run['at_offset']:g} s into the load, {where}:",
        "",
        "| function | " + " | ".join(q.label for q in QUERIES) + " |",
        "| --- | " + " | ".join("---:" for _ in QUERIES) + " |",
    ]
    for fn in functions:
        cells = [format_value(results["instant"][q.key].get(fn), q.unit) for q in QUERIES]
        lines.append(f"| `{fn}` | " + " | ".join(cells) + " |")
    missing = [
        f"`{fn}` has no {q.label} series"
        for q in QUERIES
        for fn in functions
        if fn not in results["instant"][q.key]
    ]
    if missing:
        lines += [
            "",
            *_wrap(
                "— is an empty answer: "
                + ", ".join(missing)
                + ". A ratio's numerator has no series for a function that never had a matching call "
                "(here: no 5xx), and PromQL's `/` keeps only the series both sides have."
            ),
        ]
    lines += ["", "<details><summary>The queries as run</summary>", "", "```promql"]
    lines += [f"# {q.label}\n{q.text(window)}" for q in QUERIES]
    lines += ["```", "", "</details>", ""]
    lines += _wrap(
        f"Range queries (`/api/v1/query_range`, step {run['step']:g} s) from the start of the load to 10 s "
        f"after its end, one line per function (durations on a log axis; each value covers the `[{window}]` "
        "before it, so the lines ramp up over the first window and lag the phase change by up to one). "
        "Prometheus's web UI is not part "
        "of the test stack, so these charts are drawn by `docs/screenshots/promql_render.py` from the "
        "query API's answers; they are not screenshots of Prometheus."
    )
    lines.append("")
    for key, title in CHARTS:
        lines.append(
            f"![{title}: Prometheus query_range results, drawn by docs/screenshots/promql_render.py]"
            f"({images}/promql-{key.replace('_', '-')}.svg)"
        )
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, 105, break_long_words=False, break_on_hyphens=False)


def replace_fragment(doc: str, fragment: str) -> str:
    """``doc`` with the text from START to END (both included) replaced by ``fragment``."""
    if doc.count(START) != 1 or doc.count(END) != 1:
        raise ValueError(f"expected one {START} and one {END}, found {doc.count(START)}/{doc.count(END)}")
    head, rest = doc.split(START)
    _, tail = rest.split(END)
    return head + fragment + tail


COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 34, 36


def _nice_max(top: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above ``top``."""
    if top <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 < top:
        scale *= 10
    while scale > top:
        scale /= 10
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * scale >= top:
            return step * scale
    return 10 * scale


def _tick(value: float, unit: Unit) -> str:
    if unit == "ratio":
        return f"{value * 100:g} %"
    if unit == "seconds":
        return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"
    return f"{value:g}"


def _y_axis(values: list[float], log: bool) -> tuple[float, float, list[float]]:
    """(bottom, top, ticks): decades on a log axis, else 0 to a round top in 4 or 5 steps."""
    if log:
        positive = [v for v in values if v > 0] or [1.0]
        bottom = 10.0 ** math.floor(math.log10(min(positive)))
        top = 10.0 ** math.ceil(math.log10(max(positive)))
        if top <= bottom:
            top = bottom * 10
        ticks = [bottom * 10.0**i for i in range(round(math.log10(top / bottom)) + 1)]
        return bottom, top, ticks
    top = _nice_max(max(values, default=0.0))
    lead = round(top / 10.0 ** math.floor(math.log10(top)), 3)
    steps = 5 if lead in (2.5, 5.0) else 4
    return 0.0, top, [top * i / steps for i in range(steps + 1)]


def chart_svg(
    title: str,
    unit: Unit,
    series: dict[str, list[list[float]]],
    t0: float,
    caption: str,
    marks: tuple[tuple[float, str], ...] = (),
    absent: tuple[str, ...] = (),
) -> str:
    """A line chart: x in seconds since ``t0``, one polyline per series (NaN points break the line),
    a dashed vertical line with a label at each of ``marks`` (seconds since ``t0``, text), and the
    ``absent`` functions (no series in the answer) named under the legend.

    Durations get a log axis (a fast and a slow function on one chart), the rest a linear one."""
    log = unit == "seconds"
    points = [(t - t0, v) for pts in series.values() for t, v in pts if v == v and not (log and v <= 0)]
    x_max = max((x for x, _ in points), default=1.0) or 1.0
    y_min, y_max, y_ticks = _y_axis([y for _, y in points], log)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + x / x_max * plot_w

    def sy(y: float) -> float:
        share = math.log10(y / y_min) / math.log10(y_max / y_min) if log else (y - y_min) / (y_max - y_min)
        return TOP + plot_h - share * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="{LEFT}" y="28" fill="#666" font-size="9">{html.escape(caption)}</text>',
    ]
    for y in y_ticks:
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 4}" y="{sy(y) + 4:.1f}" text-anchor="end">{_tick(y, unit)}</text>'
        )
    step = 10.0 if x_max > 30 else 5.0
    x = 0.0
    while x <= x_max + 1e-9:
        out.append(
            f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#eee"/>'
            f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">{x:g}</text>'
        )
        x += step
    out.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" fill="#444">'
        "seconds since the load started</text>"
    )
    for x, text in marks:
        out.append(
            f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#888" '
            f'stroke-dasharray="4 3"/><text x="{sx(x) + 3:.1f}" y="{TOP + 10}" fill="#666">'
            f"{html.escape(text)}</text>"
        )
    for n, (name, pts) in enumerate(sorted(series.items())):
        color = COLORS[n % len(COLORS)]
        runs: list[list[str]] = [[]]
        for t, v in pts:
            if v != v or (log and v <= 0):
                runs.append([])
            else:
                runs[-1].append(f"{sx(t - t0):.1f},{sy(v):.1f}")
        for run in runs:
            if run:
                out.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{" ".join(run)}"/>'
                )
        ly = TOP + 8 + 16 * n
        out.append(
            f'<line x1="{WIDTH - RIGHT + 12}" x2="{WIDTH - RIGHT + 30}" y1="{ly}" y2="{ly}" '
            f'stroke="{color}" stroke-width="2"/><text x="{WIDTH - RIGHT + 34}" y="{ly + 4}">'
            f"{html.escape(name)}</text>"
        )
    for n, name in enumerate(absent, start=len(series)):
        out.append(
            f'<text x="{WIDTH - RIGHT + 12}" y="{TOP + 12 + 16 * n}" fill="#888">'
            f"{html.escape(name)}: no series</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def charts(results: dict[str, Any]) -> dict[str, str]:
    """File name -> SVG text of the query_range charts in ``results``."""
    t0 = results["run"]["start"]
    marks = ((results["run"]["phase_at"], "phase 2"), (results["run"]["seconds"], "load ends"))
    caption = (
        f"Prometheus {results['run']['prometheus']} query_range, [{results['run']['window']}] windows; "
        "drawn by docs/screenshots/promql_render.py"
    )
    return {
        f"promql-{key.replace('_', '-')}.svg": chart_svg(
            title,
            query(key).unit,
            results["range"][key],
            t0,
            caption,
            marks,
            tuple(fn for fn in sorted(results["load"]) if fn not in results["range"][key]),
        )
        for key, title in CHARTS
    }
