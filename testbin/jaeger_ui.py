#!/usr/bin/env python3
"""The Jaeger UI's static files for the test stack's Jaeger (optional: only docs screenshots use it).

Standard library only. Jaeger v2's Go module ships a placeholder page instead of the UI: the UI is
a separate JavaScript project, published on no package registry as a build. This builds it from
its source at the release that matches the ``jaeger`` recipe (tag v1.76.0, commit below), with
``npm ci`` against that release's package-lock.json (packages from the npm registry) and
``npm run build``, then keeps ``packages/jaeger-ui/build`` in the cache::

    python testbin/jaeger_ui.py --source DIR    build from a jaeger-ui git directory or source tree
    python testbin/jaeger_ui.py --print-path    print the assets directory (exit 1 if not built)

``--source`` (or ``$FUNCD_JAEGER_UI_SRC``) is a git directory holding the pinned commit (a clone,
bare or not), or an unpacked source tree of that release. Jaeger serves the result when its
``jaeger_query`` extension has ``ui: {assets_path: <dir>}`` (tests/e2e/stack_jaeger.py does that
when asked). It is not in testbin/stack.py's RECIPES, so ``make testbin`` never needs the source.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

VERSION = "v1.76.0"
COMMIT = "1ceadb6f6fb29774bfaa77a6148499ff7a04902b"
"""jaeger-ui's tag v1.76.0: the UI released with Jaeger v2.13.0 (Go module v1.76.0)."""
SOURCE_ENV = "FUNCD_JAEGER_UI_SRC"
STAMP = ".recipe"


class BuildError(RuntimeError):
    pass


def _cache_root() -> Path:
    env = os.environ.get("FUNCD_TESTBIN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "funcd-testbin"


def cache_dir() -> Path:
    return _cache_root() / f"jaeger-ui-{VERSION}"


def assets_dir() -> Path | None:
    """The built UI (a directory with index.html and static/), or None if it is not built."""
    stamp, assets = cache_dir() / STAMP, cache_dir() / "assets"
    if stamp.is_file() and stamp.read_text().strip() == COMMIT and (assets / "index.html").is_file():
        return assets
    return None


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    if proc.returncode != 0:
        raise BuildError(
            f"`{' '.join(cmd)}` failed in {cwd} (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def _unpack(source: Path, dest: Path) -> None:
    """Put the pinned release's files in ``dest``, from a git directory or a source tree."""
    git_dir = source / ".git" if (source / ".git").exists() else source
    if (git_dir / "HEAD").is_file() and (git_dir / "objects").is_dir():
        archive = dest.parent / "src.tar"
        try:
            _run(["git", f"--git-dir={git_dir}", "archive", "-o", str(archive), COMMIT], dest.parent)
        except BuildError as exc:
            raise BuildError(
                f"{git_dir} does not hold jaeger-ui {VERSION} (commit {COMMIT}): {exc}"
            ) from None
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        archive.unlink()
        return
    package = source / "packages" / "jaeger-ui" / "package.json"
    if not package.is_file():
        raise BuildError(
            f"{source} is neither a git directory with commit {COMMIT} nor a jaeger-ui source tree "
            f"(expected {package})"
        )
    found = json.loads(package.read_text()).get("version")
    if f"v{found}" != VERSION:
        raise BuildError(f"{package}: expected version {VERSION[1:]}, found {found}")
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("node_modules", "build", "lib", "dist"))


def build(source: Path) -> Path:
    """Build the UI from ``source`` into the cache; return the assets directory."""
    if shutil.which("npm") is None or shutil.which("git") is None:
        raise BuildError("the Jaeger UI build needs git and npm (Node >= 20) on PATH")
    final = cache_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        src = work / "src"
        src.mkdir()
        _unpack(source, src)
        # The release asks for Node >= 24 (engine-strict); it builds with Debian's Node 20 too.
        # Install scripts are skipped: the only one that matters (git hooks) needs a git work tree.
        npm = ["npm", "--engine-strict=false", "--no-audit", "--no-fund"]
        env = dict(os.environ, CI="true")
        started = time.monotonic()
        _run([*npm, "ci", "--ignore-scripts"], src, env)
        print(f"jaeger-ui: npm ci {time.monotonic() - started:.0f}s", flush=True)
        started = time.monotonic()
        _run([*npm, "run", "build"], src, env)
        print(f"jaeger-ui: npm run build {time.monotonic() - started:.0f}s", flush=True)
        built = src / "packages" / "jaeger-ui" / "build"
        if not (built / "index.html").is_file():
            raise BuildError(f"npm run build finished but {built / 'index.html'} is missing")
        staging = work / "out"
        shutil.copytree(built, staging / "assets")
        sums = [
            f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(staging).as_posix()}"
            for p in sorted((staging / "assets").rglob("*"))
            if p.is_file()
        ]
        (staging / "SHA256SUMS").write_text("\n".join(sums) + "\n")
        (staging / STAMP).write_text(COMMIT + "\n")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final / "assets"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=os.environ.get(SOURCE_ENV), help="jaeger-ui source")
    parser.add_argument("--print-path", action="store_true", help="print the assets directory")
    parser.add_argument("--force", action="store_true", help="rebuild even if built")
    args = parser.parse_args(argv)
    assets = assets_dir()
    if args.print_path or (assets and not args.force):
        if assets is None:
            print(f"jaeger-ui {VERSION} is not built: run testbin/jaeger_ui.py --source DIR", file=sys.stderr)
            return 1
        print(assets)
        return 0
    if args.source is None:
        parser.error(f"jaeger-ui {VERSION} is not built: give --source DIR (or ${SOURCE_ENV})")
    try:
        print(build(args.source))
    except BuildError as exc:
        print(f"jaeger-ui: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
