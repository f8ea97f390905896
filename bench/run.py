"""Run funcd's benchmarks: ``.venv/bin/python bench/run.py [--only NAME] [--duration S] [--connections N]``.

Each benchmark is a module in bench/ with NAME, DESCRIPTION, add_arguments(parser), run(args) → dict and
markdown(result) → str. Results go to bench/results/<NAME>.json and to the <NAME> section of bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

# name → module: one benchmark each.
BENCHMARKS = {
    "http": "http_bench",
    "dapr": "dapr_bench",
    "controller": "controller_bench",
    "image": "image_bench",
    "pods": "pods_bench",
    "plugins": "plugins_bench",
    "async": "async_bench",
}
# The benchmarks that load servers with wrk.
NEEDS_WRK = {"http", "dapr", "plugins"}


def main(argv: list[str] | None = None) -> int:
    modules = {name: importlib.import_module(mod) for name, mod in BENCHMARKS.items()}
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(modules),
        help="run only this benchmark (repeatable; default: all)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured load (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--no-readme", action="store_true", help="write the JSON only, leave bench/README.md alone"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing under bench/ (a quick check): print the Markdown only",
    )
    for mod in modules.values():
        mod.add_arguments(parser)
    args = parser.parse_args(argv)
    if NEEDS_WRK & set(args.only or modules) and not shutil.which("wrk"):
        print("bench: wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    for name in args.only or list(modules):
        mod = modules[name]
        common.log(f"== {name}: {mod.DESCRIPTION}")
        t0 = time.monotonic()
        result = mod.run(args)
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
        if args.dry_run:
            common.log(f"== {name}: done in {result['elapsed_s']:.0f}s (dry run: nothing written)")
        else:
            path = common.write_json(name, result)
            common.log(
                f"== {name}: done in {result['elapsed_s']:.0f}s; wrote {path.relative_to(common.ROOT)}"
            )
        if not (args.no_readme or args.dry_run):
            common.update_readme_section(name, mod.markdown(result))
            common.log(f"== {name}: updated bench/README.md")
        print(mod.markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
