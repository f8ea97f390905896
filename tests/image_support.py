"""Test helpers for images: a small fake runtime image made with umoci, and archive readers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from funcd_controller.image import names
from funcd_controller.image.oci import archive_layout

from tests.support import ROOT, load_module, testbin_stack

stack = testbin_stack()


def umoci(*args: str) -> str:
    proc = subprocess.run([str(stack.binary("umoci")), *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"umoci {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def _tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        dirs = sorted({str(Path(f).parents[i]) for f in files for i in range(len(Path(f).parents) - 1)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def make_fake_base(work: Path, labels: bool = True, present: tuple[str, ...] = ("shared-1.0",)) -> Path:
    """A runtime-like image archive: one small layer (a python site with ``present`` distributions)."""
    work.mkdir(parents=True, exist_ok=True)
    site = names.RUNTIME_SITE.strip("/")
    files = {f"{site}/{dist}.dist-info/METADATA": b"Metadata-Version: 2.1\n" for dist in present}
    files["usr/bin/python3"] = b"#!fake\n"
    _tar(work / "base-layer.tar", files)
    layout = work / "layout"
    image = f"{layout}:funcd:test"
    umoci("init", "--layout", str(layout))
    umoci("new", "--image", image)
    umoci("raw", "add-layer", "--no-history", "--image", image, str(work / "base-layer.tar"))
    config = [
        f"--config.user={names.UID}:{names.GID}",
        f"--config.workingdir={names.FUNCTION_DIR}",
        "--config.entrypoint=funcd",
        "--config.entrypoint=run",
        f"--config.env=PYTHONPATH={names.FUNCTION_SITE}",
    ]
    if labels:
        config += [
            f"--config.label={names.LABEL_PYTHON}={names.PYTHON_VERSION}",
            f"--config.label={names.LABEL_RUNTIME_SITE}={names.RUNTIME_SITE}",
            f"--config.label={names.LABEL_FUNCTION_SITE}={names.FUNCTION_SITE}",
        ]
    umoci("config", "--no-history", "--image", image, "--created=1970-01-01T00:00:00Z", *config)
    archive_layout(layout, work / "base.oci.tar")
    return work / "base.oci.tar"


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A pure-Python wheel with one module ``<name>.py``, for installs without an index."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for n, text in {**files, f"{info}/RECORD": record}.items():
            zf.writestr(n, text)
    return path


class Archive:
    """An OCI archive opened for reading: index, manifest, config, layers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar = tarfile.open(path)  # noqa: SIM115 (closed by close())
        self.index = self.json("index.json")
        self.manifest = self.blob_json(self.index["manifests"][0]["digest"])
        self.config = self.blob_json(self.manifest["config"]["digest"])

    def member(self, name: str) -> bytes:
        f = self.tar.extractfile(name)
        assert f is not None, name
        return f.read()

    def json(self, name: str) -> Any:
        return json.loads(self.member(name))

    def blob(self, digest: str) -> bytes:
        return self.member("blobs/" + digest.replace(":", "/"))

    def blob_json(self, digest: str) -> Any:
        return json.loads(self.blob(digest))

    def layer(self, i: int) -> tarfile.TarFile:
        return tarfile.open(fileobj=io.BytesIO(self.blob(self.manifest["layers"][i]["digest"])))

    def close(self) -> None:
        self.tar.close()


# ---------------------------------------------------------------------------------------- real images

images = load_module("funcd_images_build", ROOT / "images" / "build.py")


def runtime_image_archive() -> Path:
    """The runtime image archive (``funcd:<version>``, ``funcd:latest``); built when not cached."""
    path: Path = images.runtime_image_archive()
    return path


def daprd_image_archive() -> Path:
    """The daprd image archive (``funcd-daprd:<version>``), from the testbin daprd."""
    path: Path = images.daprd_image_archive()
    return path


def unpack(archive: Path, ref: str, dest: Path) -> Path:
    """Unpack one image of an OCI archive with umoci; returns the bundle (``rootfs/``, ``config.json``)."""
    layout = dest / "layout"
    layout.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    umoci("unpack", *rootless, "--image", f"{layout}:{ref}", str(dest / "bundle"))
    return dest / "bundle"


def rootfs_python(rootfs: Path) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run the image's own python3 from an unpacked rootfs, without a
    chroot: the image's dynamic loader and libraries, PYTHONHOME at the image's /usr, PYTHONPATH as in
    the image (with the rootfs prefix)."""
    loader = rootfs / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    libs = rootfs / "usr/lib/x86_64-linux-gnu"
    cmd = [str(loader), "--library-path", str(libs), str(rootfs / "usr/bin/python3")]
    env = {
        "PYTHONHOME": str(rootfs / "usr"),
        "PYTHONPATH": str(rootfs / names.FUNCTION_SITE.strip("/")),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": "/tmp",
        "PATH": "/usr/bin:/bin",
    }
    return cmd, env
