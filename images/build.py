#!/usr/bin/env python3
"""Build funcd's images as OCI archives, without a daemon: ``make image``.

    .venv/bin/python images/build.py              the runtime image and the daprd image
    .venv/bin/python images/build.py runtime      only the runtime image
    .venv/bin/python images/build.py --print-path runtime|daprd
    .venv/bin/python images/build.py --lock       rewrite images/requirements.txt (the dependency pins)

The runtime image (``funcd:<version>``, ``funcd:latest``; also the controller's image): a Debian
bookworm root filesystem made by mmdebstrap (essential packages, python3, ca-certificates; no docs,
man pages or locales; apt lists removed) in one layer, funcd's wheel (the runtime, the duration,
tracing and metrics plugins, the controller) and its pinned dependencies (images/requirements.txt,
wheels from PyPI installed with ``pip --target``) in a second, packed with umoci. The daprd image
(``funcd-daprd:1.18.2``): the pinned slim daprd at ``/daprd``, nothing else. Both run as 65532:65532.
Names and in-image paths: funcd_controller/image/names.py.

Archives are cached in ``<testbin cache>/images/`` under a key that hashes their inputs (the Debian
package list and options, funcd's sources, the pins, the daprd binary); ``funcd-<version>.oci.tar``
and ``funcd-daprd-<version>.oci.tar`` there are the latest builds (``funcd build``'s default base).
Needs mmdebstrap and umoci (``testbin/build.py mmdebstrap node-runtime`` installs them) and root for
mmdebstrap's root mode (else it uses unshare mode).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "controllers")]

from funcd_controller.image import names  # noqa: E402
from funcd_controller.image.build import compile_site, pip_install  # noqa: E402
from funcd_controller.image.oci import Entry, archive_layout, tree_entries, write_layer  # noqa: E402


def _load_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("funcd_testbin_stack", ROOT / "testbin" / "stack.py")
    assert spec and spec.loader
    module = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    if spec.name not in sys.modules:
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


stack = _load_stack()

EPOCH = 0
"""Every timestamp in the images (SOURCE_DATE_EPOCH for mmdebstrap, layer mtimes, config ``created``)."""
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
PACKAGES = ("python3", "ca-certificates", "libstdc++6")
"""Installed on top of mmdebstrap's ``essential`` variant (apt is not needed at run time); libstdc++6 for
grpcio's extension (the Dapr runtime)."""
HOOKS = ("/usr/share/mmdebstrap/hooks/merged-usr",)
"""merged-/usr the debootstrap way, with ``usr-is-merged``: without it init-system-helpers pulls in
``usrmerge`` and with it perl (45 MB)."""
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
)
CUSTOMIZE = (
    f'echo "nonroot:x:{names.UID}:{names.GID}:nonroot:/tmp:/usr/sbin/nologin" >> "$1/etc/passwd"',
    f'echo "nonroot:x:{names.GID}:" >> "$1/etc/group"',
    f'mkdir -p "$1{names.FUNCTION_DIR}" "$1{names.FUNCTION_SITE}"',
    'rm -rf "$1"/var/cache/* "$1"/var/log/* "$1"/var/lib/apt/lists/*',
)
PINS = ROOT / "images" / "requirements.txt"
SOURCES = ("pyproject.toml", "functions_framework", "plugins", "controllers/funcd_controller")
"""What funcd's wheel is built from: the runtime, the plugins (duration, tracing, metrics), the controller."""
ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONDONTWRITEBYTECODE=1",
    "PYTHONUNBUFFERED=1",
    f"PYTHONPATH={names.FUNCTION_SITE}",
    "HOME=/tmp",
)
ENTRYPOINT_SCRIPT = (
    "#!/usr/bin/python3\nimport sys\n\nfrom functions_framework.cli import main\n\nsys.exit(main())\n"
)


class ImageBuildFailed(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


def images_dir() -> Path:
    """``<testbin cache>/images``: the image archives and the cached root filesystem."""
    return stack.cache_root() / "images"


def _run(cmd: list[str], **kw: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise ImageBuildFailed(
            f"`{' '.join(cmd[:4])} ...` failed (exit {proc.returncode}): {proc.stderr[-3000:]}"
        )


def _hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part + b"\0")
    return h.hexdigest()[:16]


def base_key() -> str:
    """The root filesystem's inputs: suite, mirror, packages, dpkg filters, customize commands."""
    inputs = (SUITE, MIRROR, "essential", PACKAGES, HOOKS, DPKG_EXCLUDES, CUSTOMIZE, EPOCH)
    return _hash(repr(inputs).encode())


def sources_digest() -> bytes:
    h = hashlib.sha256()
    for top in SOURCES:
        path = ROOT / top
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" not in f.parts and f.suffix != ".pyc":
                h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.digest()


def runtime_key() -> str:
    """The runtime image's inputs: the base, funcd's sources, the pins, how the image is configured."""
    return _hash(
        base_key().encode(),
        sources_digest(),
        PINS.read_bytes(),
        repr(ENV).encode(),
        ENTRYPOINT_SCRIPT.encode(),
        Path(__file__).read_bytes(),
    )


def build_rootfs(out: Path) -> None:
    """The Debian root filesystem as a tar, with mmdebstrap."""
    mode = "root" if os.geteuid() == 0 else "unshare"
    cmd = [
        stack.binary("mmdebstrap").as_posix(), f"--mode={mode}", "--variant=essential", "--format=tar",
        f"--include={','.join(PACKAGES)}", *(f"--dpkgopt={o}" for o in DPKG_EXCLUDES),
        *(f"--hook-dir={h}" for h in HOOKS),
        *(f"--customize-hook={c}" for c in CUSTOMIZE), SUITE, str(out), MIRROR,
    ]  # fmt: skip
    _run(cmd, env=dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH)))


def base_rootfs() -> Path:
    """The cached root filesystem tar, built when its key is not in the cache."""
    path = images_dir() / f"rootfs-{base_key()}.tar"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        log(f"mmdebstrap {SUITE} ({', '.join(PACKAGES)}) ...")
        started = time.monotonic()
        tmp = path.with_name(f".{path.name}.tmp")
        build_rootfs(tmp)
        tmp.replace(path)
        _drop_others(path, "rootfs-*.tar")
        log(f"root filesystem: {path.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f}s")
    return path


def python_layer(work: Path) -> Path:
    """funcd's wheel and its pinned dependencies, as an uncompressed tar (umoci compresses it)."""
    wheels = work / "wheel"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)])
    wheel = next(wheels.glob("funcd-*.whl"))
    site = work / "site"
    pip_install([str(wheel), "-c", str(PINS)], site, names.PYTHON_VERSION, f"funcd ({wheel.name})")
    compile_site(site, names.RUNTIME_SITE, names.PYTHON_VERSION)
    script = work / "funcd"
    script.write_text(ENTRYPOINT_SCRIPT)
    entries = {e.path: e for e in tree_entries(site, names.RUNTIME_SITE)}
    entries["usr/local/bin/funcd"] = Entry("usr/local/bin/funcd", "file", source=script, executable=True)
    layer = write_layer(sorted(entries.values(), key=lambda e: e.path), work, EPOCH)
    assert layer.blob.path is not None
    plain = work / "python.tar"
    with gzip.open(layer.blob.path, "rb") as src, plain.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return plain


def _umoci(*args: str) -> None:
    _run([stack.binary("umoci").as_posix(), *args])


def _pack(layout: Path, refs: tuple[str, ...], layers: list[Path], config: list[str], output: Path) -> None:
    image = f"{layout}:{refs[0]}"
    _umoci("init", "--layout", str(layout))
    _umoci("new", "--image", image)
    for layer in layers:
        _umoci("raw", "add-layer", "--no-history", "--image", image, str(layer))
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH))
    _umoci("config", "--no-history", "--image", image, f"--created={created}", *config)
    for ref in refs[1:]:
        _umoci("tag", "--image", image, ref)
    _umoci("gc", "--layout", str(layout))
    archive_layout(layout, output)


def _publish(keyed: Path, stable: Path) -> None:
    """Point the stable name at the keyed archive (a hard link), and drop older keyed archives."""
    tmp = stable.with_name(f".{stable.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.link(keyed, tmp)
    tmp.replace(stable)
    _drop_others(keyed, f"{keyed.name.rsplit('-', 1)[0]}-*.oci.tar", keep=stable)


def _drop_others(current: Path, pattern: str, keep: Path | None = None) -> None:
    """Remove older cached builds (other keys) matching ``pattern`` next to ``current``."""
    for old in current.parent.glob(pattern):
        if old not in (current, keep) and re.fullmatch(
            r"[0-9a-f]{16}", old.name.split(".")[0].rsplit("-")[-1]
        ):
            old.unlink()


def runtime_image_archive() -> Path:
    """The runtime image's OCI archive (``funcd:<version>``, ``funcd:latest``); built when not cached."""
    keyed = images_dir() / f"funcd-runtime-{runtime_key()}.oci.tar"
    stable = images_dir() / names.RUNTIME_ARCHIVE
    if not keyed.is_file():
        rootfs = base_rootfs()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="funcd-image-", dir=images_dir()) as tmp:
            work = Path(tmp)
            layer = python_layer(work)
            labels = {
                names.LABEL_PYTHON: names.PYTHON_VERSION,
                names.LABEL_RUNTIME_SITE: names.RUNTIME_SITE,
                names.LABEL_FUNCTION_SITE: names.FUNCTION_SITE,
            }
            config = [
                f"--config.user={names.UID}:{names.GID}",
                f"--config.workingdir={names.FUNCTION_DIR}",
                "--config.entrypoint=funcd",
                "--config.entrypoint=run",
                *(f"--config.env={e}" for e in ENV),
                *(f"--config.label={k}={v}" for k, v in sorted(labels.items())),
            ]
            _pack(work / "layout", names.RUNTIME_REFS, [rootfs, layer], config, work / "out.tar")
            (work / "out.tar").replace(keyed)
        log(f"runtime image: {keyed.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f}s")
    if not stable.is_file() or not os.path.samefile(keyed, stable):
        _publish(keyed, stable)
    return stable


def daprd_image_archive() -> Path:
    """The daprd image's OCI archive (``funcd-daprd:<version>``); built when not cached."""
    daprd = stack.binary("daprd")
    keyed = images_dir() / f"funcd-daprd-{_hash(daprd.read_bytes())}.oci.tar"
    stable = images_dir() / names.DAPRD_ARCHIVE
    if not keyed.is_file():
        keyed.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="funcd-image-", dir=images_dir()) as tmp:
            work = Path(tmp)
            layer = write_layer([Entry("daprd", "file", source=daprd, executable=True)], work, EPOCH)
            assert layer.blob.path is not None
            plain = work / "daprd.tar"
            with gzip.open(layer.blob.path, "rb") as src, plain.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            config = [f"--config.user={names.UID}:{names.GID}", "--config.entrypoint=/daprd"]
            _pack(work / "layout", (names.DAPRD_REF,), [plain], config, work / "out.tar")
            (work / "out.tar").replace(keyed)
        log(f"daprd image: {keyed.stat().st_size / 1e6:.0f} MB")
    if not stable.is_file() or not os.path.samefile(keyed, stable):
        _publish(keyed, stable)
    return stable


def lock() -> None:
    """Resolve funcd's dependencies for the image's Python and write them to images/requirements.txt."""
    with tempfile.TemporaryDirectory(prefix="funcd-lock-") as tmp:
        work = Path(tmp)
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work), str(ROOT)])
        wheel = next(work.glob("funcd-*.whl"))
        pip_install([str(wheel)], work / "site", names.PYTHON_VERSION, wheel.name)
        pins = sorted(
            p.name.removesuffix(".dist-info").replace("-", "==", 1)
            for p in (work / "site").glob("*.dist-info")
            if not p.name.startswith("funcd-")
        )
    header = "# funcd's dependencies in the runtime image (images/build.py --lock rewrites this file).\n"
    PINS.write_text(header + "".join(f"{p}\n" for p in pins))
    log(f"wrote {PINS.relative_to(ROOT)}: {len(pins)} pins")


ARCHIVES = {"runtime": runtime_image_archive, "daprd": daprd_image_archive}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="*", help="runtime, daprd (default: both)")
    parser.add_argument("--print-path", choices=list(ARCHIVES), help="print an archive's path (building it)")
    parser.add_argument("--lock", action="store_true", help="rewrite images/requirements.txt and exit")
    args = parser.parse_args(argv)
    unknown = [n for n in args.images if n not in ARCHIVES]
    if unknown:
        parser.error(f"expected image names among {', '.join(ARCHIVES)}, got {', '.join(unknown)}")
    try:
        if args.lock:
            lock()
            return 0
        if args.print_path:
            print(ARCHIVES[args.print_path]())
            return 0
        for name in args.images or list(ARCHIVES):
            path = ARCHIVES[name]()
            refs = names.RUNTIME_REFS if name == "runtime" else (names.DAPRD_REF,)
            log(f"{name}: {path} ({', '.join(refs)})")
    except (ImageBuildFailed, stack.MissingBinary) as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
