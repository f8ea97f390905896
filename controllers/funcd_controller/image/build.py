"""``funcd build``: a function folder on top of the runtime image, as an OCI archive. No daemon, no root.

The base image's layers are copied as they are. Two layers go on top, each reproducible:

- the folder's requirements.txt, installed by pip with ``--target`` into the image's function site
  (``--python-version``/``--platform``/``--only-binary=:all:`` pick wheels for the image's Python, so
  nothing runs inside the image), constrained to the versions the runtime image already holds, without
  the distributions it already holds, compiled to hash-checked bytecode;
- the folder itself at ``/function``.
"""

from __future__ import annotations

import ast
import copy
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import names
from .errors import ImageBuildError, ImageInputError
from .oci import (
    CONFIG,
    INDEX,
    LAYER_GZIP,
    MANIFEST,
    BaseImage,
    Blob,
    Layer,
    json_blob,
    layer_names,
    read_image,
    tree_entries,
    write_archive,
    write_layer,
)
from .refs import ImageRef, parse_ref

SKIP = frozenset({".git", "__pycache__", ".venv", "venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
"""Names left out of the function layer, at any depth (with every ``*.pyc``)."""


@dataclass(frozen=True)
class BuildResult:
    """What ``build_function_image`` wrote."""

    output: Path
    """The OCI archive."""
    ref: ImageRef
    """The image's name, as annotated in the archive's index."""
    digest: str
    """The manifest digest: equal for equal inputs."""
    size: int
    """Bytes of the archive."""
    layers: int
    """Layers in the image (the base's and the new ones)."""


def check_function(folder: Path, target: str) -> Path:
    """The folder's main.py, after checking it parses and defines ``target`` at its top level."""
    if not folder.is_dir():
        what = "a file" if folder.is_file() else "nothing"
        raise ImageInputError(f"{folder}: expected a function folder holding main.py, found {what}")
    main = folder / "main.py"
    if not main.is_file():
        raise ImageInputError(f"{folder}: expected a function folder holding main.py, found no main.py")
    try:
        tree = ast.parse(main.read_bytes(), str(main))
    except SyntaxError as exc:
        raise ImageInputError(
            f"{main}:{exc.lineno}: expected Python source, got a syntax error: {exc.msg}"
        ) from None
    defined = _top_level_names(tree)
    if target not in defined:
        found = ", ".join(sorted(defined)) or "none"
        raise ImageInputError(
            f"{main}: expected a function named {target!r}, found top-level names: {found} "
            "(choose with --target)"
        )
    return main


def _top_level_names(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            found.update((a.asname or a.name).split(".")[0] for a in node.names)
    return found


def default_output(ref: ImageRef) -> Path:
    """``<last name component>-<tag>.oci.tar`` in the current folder."""
    return Path(f"{ref.name.rsplit(':', 1)[0].rsplit('/', 1)[-1]}-{ref.tag}.oci.tar")


def build_function_image(
    folder: Path,
    tag: str,
    base: Path,
    output: Path | None = None,
    target: str | None = None,
    epoch: int = 0,
) -> BuildResult:
    """Build ``folder`` on ``base`` (an OCI archive or layout) into an OCI archive named ``tag``.

    ``epoch`` (SOURCE_DATE_EPOCH) is every file's mtime and the config's ``created``. Raises
    ``ImageInputError`` for bad input and ``ImageBuildError`` when pip fails.
    """
    ref = parse_ref(tag)
    check_function(folder, target or "handler")
    image = read_image(base)
    labels = image.labels()
    if names.LABEL_PYTHON not in labels or names.LABEL_FUNCTION_SITE not in labels:
        raise ImageInputError(
            f"base image {base}: expected a funcd runtime image (labels {names.LABEL_PYTHON}, "
            f"{names.LABEL_FUNCTION_SITE}), found labels {sorted(labels) or 'none'}"
        )
    output = output or default_output(ref)
    with tempfile.TemporaryDirectory(prefix="funcd-build-") as tmp:
        work = Path(tmp)
        new: list[Layer] = []
        requirements = folder / "requirements.txt"
        if requirements.is_file():
            site = work / "site"
            install_requirements(requirements, site, image, labels)
            new.append(write_layer(tree_entries(site, labels[names.LABEL_FUNCTION_SITE]), work, epoch))
        new.append(write_layer(tree_entries(folder, names.FUNCTION_DIR, SKIP), work, epoch))
        config = _config(image, new, epoch, target)
        config_desc, config_blob = json_blob(config)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, **config_desc},
            "layers": [
                *image.manifest["layers"],
                *({"mediaType": LAYER_GZIP, "digest": x.blob.digest, "size": x.blob.size} for x in new),
            ],
            "annotations": {"org.opencontainers.image.base.digest": image.manifest_digest},
        }
        manifest_desc, manifest_blob = json_blob(manifest)
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    **manifest_desc,
                    "platform": image.platform,
                    "annotations": {names.REF_NAME: ref.name, names.CONTAINERD_NAME: ref.qualified},
                }
            ],
        }
        base_blobs = [Blob(x["digest"], x["size"]) for x in image.manifest["layers"]]
        blobs = [*base_blobs, *(x.blob for x in new), config_blob, manifest_blob]
        write_archive(output, index, blobs, image)
    return BuildResult(output, ref, manifest_desc["digest"], output.stat().st_size, len(manifest["layers"]))


def _config(image: BaseImage, new: list[Layer], epoch: int, target: str | None) -> dict[str, Any]:
    config = copy.deepcopy(image.config)
    config["created"] = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    config["rootfs"]["diff_ids"] = [*config["rootfs"].get("diff_ids", []), *(x.diff_id for x in new)]
    if target:
        env = [e for e in config["config"].get("Env") or [] if not e.startswith("FUNCTION_TARGET=")]
        config["config"]["Env"] = [*env, f"FUNCTION_TARGET={target}"]
    if config.get("history"):  # one entry per layer, without timestamps; none when the base has none
        config["history"] = [*config["history"], *({"created_by": "funcd build"} for _ in new)]
    return config


# ----------------------------------------------------------------------------------- requirements


def wheel_platforms(machine: str | None = None) -> list[str]:
    """``--platform`` values for a glibc 2.36 (Debian bookworm) image on this machine's architecture."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        machine or platform.machine(), machine or platform.machine()
    )
    return [
        *(f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)),
        f"manylinux2014_{arch}",
        *(f"manylinux{v}_{arch}" for v in ("2010", "1") if arch == "x86_64"),
    ]


def pip_install(args: list[str], target: Path, python: str, what: str) -> None:
    """``pip install --target`` for the image's Python: wheels only, no compiling, nothing run."""
    abi = "cp" + python.replace(".", "")
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
        "--target", str(target), "--python-version", python, "--implementation", "cp", "--abi", abi,
        *(f"--platform={p}" for p in wheel_platforms()), "--only-binary=:all:", "--no-compile", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise ImageBuildError(f"pip could not install {what} (exit {proc.returncode}): " + " | ".join(tail))
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts would point at this machine's Python
    for direct in target.glob("*.dist-info/direct_url.json"):  # names a file on this machine
        direct.unlink()
        record = direct.parent / "RECORD"
        if record.is_file():
            lines = record.read_text().splitlines(keepends=True)
            record.write_text(
                "".join(x for x in lines if not x.startswith(f"{direct.parent.name}/direct_url"))
            )


def compile_site(site: Path, inside: str, python: str) -> None:
    """Bytecode with unchecked hashes (valid whatever the mtimes), when this Python matches the image's."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != python:
        return
    cmd = [sys.executable, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash"]
    proc = subprocess.run([*cmd, "-s", str(site), "-p", inside, str(site)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildError(f"compileall failed on {site}: {proc.stdout.strip()[-400:]}")


_DIST_INFO = re.compile(r"^(?P<name>[^/-]+)-(?P<version>[^/-]+)\.dist-info$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_distributions(image: BaseImage, site: str) -> dict[str, str]:
    """Normalised name -> version of every distribution installed in ``site`` in the image."""
    prefix = site.strip("/") + "/"
    found: dict[str, str] = {}
    for _, member in layer_names(image):
        path = member.name.removeprefix("./").rstrip("/")
        if path.startswith(prefix) and "/" not in path[len(prefix) :]:
            m = _DIST_INFO.match(path[len(prefix) :])
            if m:
                found[_normalise(m["name"])] = m["version"]
    return found


def install_requirements(requirements: Path, site: Path, image: BaseImage, labels: dict[str, str]) -> None:
    """Install requirements.txt into ``site`` as the image will see it; drop what the image already has."""
    python = labels[names.LABEL_PYTHON]
    present = base_distributions(image, labels.get(names.LABEL_RUNTIME_SITE, names.RUNTIME_SITE))
    constraints = site.parent / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(present.items())))
    site.mkdir()
    pip_install(["-r", str(requirements), "-c", str(constraints)], site, python, str(requirements))
    for info in sorted(site.glob("*.dist-info")):
        m = _DIST_INFO.match(info.name)
        if m and present.get(_normalise(m["name"])) == m["version"]:
            _remove_distribution(site, info)
    compile_site(site, labels[names.LABEL_FUNCTION_SITE], python)


def _remove_distribution(site: Path, info: Path) -> None:
    record = info / "RECORD"
    for line in record.read_text().splitlines() if record.is_file() else []:
        rel = line.split(",", 1)[0]
        path = (site / rel).resolve()
        if path.is_file() and site.resolve() in path.parents:
            path.unlink()
    shutil.rmtree(info, ignore_errors=True)
    for d in sorted((p for p in site.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
