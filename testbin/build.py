#!/usr/bin/env python3
"""Build the pinned end-to-end test stack into the cache (standard library only).

    python testbin/build.py                  build everything that is missing
    python testbin/build.py daprd etcd       only these (recipe or binary names)
    python testbin/build.py --print-path kubectl
    python testbin/build.py --list           show versions, cache paths and state
    python testbin/build.py --force keda     rebuild even if cached

Go recipes build wrapper modules under testbin/<name>/ through the Go module proxy with
GOTOOLCHAIN=local CGO_ENABLED=0 -trimpath -mod=readonly, sequentially, with `go build -p`
set from $FUNCD_TESTBIN_JOBS (default 2). Apt recipes (redis, the node runtime) install Debian
packages; the pause recipe also packs its programs as OCI image archives with umoci.
What is built, and why each version, is in testbin/stack.py and docs/test-stack.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import ModuleType


def _load_stack() -> ModuleType:
    path = Path(__file__).resolve().parent / "stack.py"
    spec = importlib.util.spec_from_file_location("funcd_testbin_stack", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


stack = _load_stack()


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"testbin: {msg}", flush=True)


def find_go() -> str:
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise BuildError("no Go toolchain: install Go (>= 1.26) and put `go` on PATH")


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    jobs = env.get("FUNCD_TESTBIN_JOBS", "2")
    env.update(
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
        GOFLAGS=f"-p={jobs} -mod=readonly -buildvcs=false",
    )
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    if proc.returncode != 0:
        raise BuildError(
            f"`{' '.join(cmd)}` failed in {cwd} (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def build_go(recipe: stack.GoRecipe) -> None:
    go = find_go()
    env = go_env()
    module_dir = stack.TESTBIN_DIR / recipe.module
    final = recipe.cache_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        ldflags = " ".join(["-s", "-w", *(f"-X {x}" for x in recipe.ldflags)])
        for binary, package in recipe.binaries.items():
            started = time.monotonic()
            tags = ["-tags", ",".join(recipe.tags)] if recipe.tags else []
            run(
                [go, "build", "-trimpath", *tags, "-ldflags", ldflags, "-o", str(staging / binary), package],
                module_dir,
                env,
            )
            log(f"  go build {binary}: {time.monotonic() - started:.1f}s")
        for subdir, (module, inner) in recipe.data.items():
            info = json.loads(run([go, "mod", "download", "-json", module], module_dir, env))
            if info.get("Error"):
                raise BuildError(f"go mod download {module}: {info['Error']}")
            shutil.copytree(Path(info["Dir"]) / inner, staging / subdir)
            for path in [staging / subdir, *(staging / subdir).rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
        for archive, (binary, tag) in recipe.images.items():
            pack_image(staging / binary, staging / archive, tag, staging)
        (staging / stack.STAMP).write_text(recipe.digest() + "\n")
        staging.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def pack_image(binary: Path, archive: Path, tag: str, workdir: Path) -> None:
    """A one-layer OCI image whose entrypoint is ``/<binary name>`` (static, run as 65532), written
    as a tar of an OCI layout whose only reference is ``tag``."""
    umoci = shutil.which("umoci")
    if not umoci:
        raise BuildError(
            f"umoci is needed to pack {archive.name}: build the node-runtime recipe first "
            "(`python testbin/build.py node-runtime`, apt-get as root)"
        )
    layout = workdir / f".{archive.name}.layout"
    image = f"{layout}:{tag}"
    env = dict(os.environ)
    entry = f"/{binary.name}"
    created = "2000-01-01T00:00:00Z"  # a fixed date keeps the image's config the same across builds
    os.utime(binary, (946684800, 946684800))  # the layer records the file's time: a fixed one
    run([umoci, "init", "--layout", str(layout)], workdir, env)
    run([umoci, "new", "--image", image], workdir, env)
    run([umoci, "insert", "--image", image, "--history.created", created, str(binary), entry], workdir, env)
    config = [
        f"--config.entrypoint={entry}",
        "--config.user=65532:65532",
        f"--created={created}",
        f"--history.created={created}",
    ]
    run([umoci, "config", "--image", image, *config], workdir, env)
    run([umoci, "gc", "--layout", str(layout)], workdir, env)
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(layout).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_dir():
                tar.addfile(info)
            else:
                with path.open("rb") as f:
                    tar.addfile(info, f)
    shutil.rmtree(layout)


def build_apt(recipe: stack.AptRecipe) -> None:
    packages = " ".join(recipe.packages)
    if os.geteuid() != 0:
        raise BuildError(
            f"{packages} not (all) installed and this is not root: run `sudo apt-get install -y {packages}`"
        )
    # RUNLEVEL=1 keeps a package's init script from starting a system-wide server.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *recipe.packages]
    if subprocess.run(cmd, env=env, capture_output=True, text=True).returncode != 0:
        run(["apt-get", "update", "-q"], Path("/"), env)
        run(cmd, Path("/"), env)


def build(recipe: stack.GoRecipe | stack.AptRecipe, force: bool) -> float | None:
    """Build one recipe if needed; return the seconds spent, or None if it was already there."""
    if recipe.is_built() and not force:
        return None
    log(f"building {recipe.name} {recipe.version} ...")
    started = time.monotonic()
    if isinstance(recipe, stack.GoRecipe):
        build_go(recipe)
    else:
        build_apt(recipe)
    if not recipe.is_built():
        raise BuildError(f"{recipe.name}: build finished but binaries are missing")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="recipes or binaries to build (default: all)")
    parser.add_argument("--print-path", metavar="NAME", help="print the cached path of a binary and exit")
    parser.add_argument("--list", action="store_true", help="list recipes, versions and state")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)

    if args.print_path:
        try:
            print(stack.binary(args.print_path))
        except (stack.MissingBinary, KeyError) as exc:
            print(f"testbin: {exc}", file=sys.stderr)
            return 1
        return 0

    try:
        recipes = [stack.recipe_for(n) for n in args.names] or list(stack.RECIPES.values())
    except KeyError as exc:
        parser.error(str(exc))
    recipes = list({r.name: r for r in recipes}.values())

    if args.list:
        for r in recipes:
            state = "built" if r.is_built() else "missing"
            where = r.cache_dir() if isinstance(r, stack.GoRecipe) else ", ".join(r.binaries.values())
            print(f"{r.name:8} {r.version:9} {state:8} {where}\n         {r.why}")
        return 0

    log(f"cache: {stack.cache_root()}")
    total_started = time.monotonic()
    failures = []
    for recipe in recipes:
        try:
            secs = build(recipe, args.force)
        except BuildError as exc:
            failures.append(recipe.name)
            log(f"FAILED {recipe.name} {recipe.version}: {exc}")
            continue
        if secs is None:
            log(f"{recipe.name} {recipe.version}: cached")
        else:
            log(f"{recipe.name} {recipe.version}: built in {secs:.1f}s")
    log(f"done in {time.monotonic() - total_started:.1f}s")
    if failures:
        log(f"failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
