"""OCI image layouts and archives, read and written byte for byte the same for the same input.

An archive is a tar of an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``), as
``skopeo copy oci-archive:`` and ``ctr images import`` read it. Everything written here is reproducible:
entries sorted, owners 0, modes normalised, every mtime the given epoch, gzip without a name or a time,
JSON with sorted keys.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from .errors import ImageInputError
from .names import CONTAINERD_NAME, REF_NAME

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def canonical_json(value: Any) -> bytes:
    """The JSON bytes of ``value``: sorted keys, no spaces, so equal values give equal digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A blob to write into an archive: in memory, or a file on disk."""

    digest: str
    """``sha256:<hex>`` of the content."""
    size: int
    """Length in bytes."""
    data: bytes | None = None
    """The content, when it is small (JSON)."""
    path: Path | None = None
    """The file holding the content, when it is large (layers)."""

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path.open("rb")


def json_blob(value: Any) -> tuple[dict[str, Any], Blob]:
    """A JSON document as a blob, and its descriptor (without a media type: the caller adds it)."""
    data = canonical_json(value)
    blob = Blob(sha256_digest(data), len(data), data=data)
    return {"digest": blob.digest, "size": blob.size}, blob


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class BaseImage:
    """An image read from an OCI archive or layout directory: the one manifest its index names."""

    source: Path
    """The archive or layout it was read from."""
    manifest: dict[str, Any]
    """The image manifest."""
    manifest_digest: str
    """Digest of the manifest (the image's digest)."""
    config: dict[str, Any]
    """The image configuration (``config.Env``, ``rootfs.diff_ids``, labels...)."""
    platform: dict[str, str]
    """``os`` and ``architecture`` from the configuration."""

    def blob(self, digest: str) -> IO[bytes]:
        """Open one blob of the image for reading (read it before opening another)."""
        name = "blobs/" + digest.replace(":", "/", 1)
        if self.source.is_dir():
            return (self.source / name).open("rb")
        tar = tarfile.open(self.source, "r:")  # noqa: SIM115 (the member's file keeps it open)
        member = tar.extractfile(name)
        if member is None:
            raise ImageInputError(f"{self.source}: expected blob {name} in the archive, found none")
        return member

    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})


def _read_member(source: Path, tar: tarfile.TarFile | None, name: str) -> bytes:
    try:
        if tar is None:
            return (source / name).read_bytes()
        member = tar.extractfile(name)
        if member is None:
            raise KeyError(name)
        return member.read()
    except (KeyError, FileNotFoundError):
        raise ImageInputError(f"{source}: expected an OCI image layout holding {name}, found none") from None


def read_image(source: Path, ref: str | None = None) -> BaseImage:
    """Read the image an archive or layout names (``ref``, or its only manifest)."""
    if not source.exists():
        raise ImageInputError(f"base image {source}: expected an OCI archive (make image), found nothing")
    try:
        tar = None if source.is_dir() else tarfile.open(source, "r:")  # noqa: SIM115 (closed below)
    except tarfile.TarError:
        raise ImageInputError(
            f"base image {source}: expected an OCI archive (a tar), found another file"
        ) from None
    try:
        index = json.loads(_read_member(source, tar, "index.json"))
        entries = [m for m in index.get("manifests", []) if m.get("mediaType") == MANIFEST]
        if ref is not None:
            entries = [m for m in entries if (m.get("annotations") or {}).get(REF_NAME) == ref]
        if len({m.get("digest") for m in entries}) != 1:  # one image, perhaps under several names
            names = [(m.get("annotations") or {}).get(REF_NAME, "?") for m in index.get("manifests", [])]
            want = f"an image named {ref!r}" if ref else "exactly one image"
            raise ImageInputError(f"base image {source}: expected {want}, found {names or 'none'}")
        digest = entries[0]["digest"]
        manifest = json.loads(_read_member(source, tar, "blobs/" + digest.replace(":", "/", 1)))
        config_digest = manifest["config"]["digest"]
        config = json.loads(_read_member(source, tar, "blobs/" + config_digest.replace(":", "/", 1)))
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageInputError(
            f"base image {source}: expected OCI index, manifest and config JSON, got {exc!r}"
        ) from None
    finally:
        if tar is not None:
            tar.close()
    platform = {"os": config.get("os", "linux"), "architecture": config.get("architecture", "amd64")}
    return BaseImage(source, manifest, digest, config, platform)


def layer_names(image: BaseImage) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """Every entry of every layer, bottom up, as (layer digest, entry)."""
    for layer in image.manifest.get("layers", []):
        with image.blob(layer["digest"]) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                yield layer["digest"], member


# ------------------------------------------------------------------------------------------ writing


EntryKind = Literal["dir", "file", "symlink"]


@dataclass(frozen=True)
class Entry:
    """One entry of a layer: a directory, a file (copied from ``source``) or a symlink."""

    path: str
    """Path inside the image, without the leading ``/``."""
    kind: EntryKind
    """``dir``, ``file`` or ``symlink``."""
    source: Path | None = None
    """The file to copy (``file``)."""
    target: str = ""
    """The link target (``symlink``)."""
    executable: bool = False
    """Mode 0755 instead of 0644 (``file``)."""


def tree_entries(folder: Path, prefix: str, skip: frozenset[str] = frozenset()) -> list[Entry]:
    """The entries that put ``folder``'s content at ``prefix`` (with ``prefix``'s parents), sorted.

    Names in ``skip`` (at any depth) are left out. Sockets, devices and fifos are refused.
    """
    top = PurePosixPath(prefix.strip("/"))
    entries = [Entry(str(p), "dir") for p in reversed(top.parents) if str(p) != "."]
    entries.append(Entry(str(top), "dir"))
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        rel = Path(root).relative_to(folder)
        for name in sorted([*dirs, *(f for f in files if f not in skip and not f.endswith(".pyc"))]):
            path = Path(root) / name
            inside = str(top / rel.as_posix() / name).replace("/./", "/")
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(inside, "symlink", target=os.readlink(path)))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(inside, "dir"))
            elif stat.S_ISREG(st.st_mode):
                entries.append(Entry(inside, "file", source=path, executable=bool(st.st_mode & 0o111)))
            else:
                raise ImageInputError(f"{path}: expected a file, folder or symlink, found a special file")
    return sorted(entries, key=lambda e: e.path)


class _HashingWriter:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)


@dataclass(frozen=True)
class Layer:
    """A gzip layer written to disk: its blob and its uncompressed digest (the config's diff_id)."""

    blob: Blob
    """The compressed layer."""
    diff_id: str
    """``sha256:`` of the uncompressed tar."""


def write_layer(entries: Iterable[Entry], workdir: Path, epoch: int, uid: int = 0, gid: int = 0) -> Layer:
    """A reproducible gzip tar layer of ``entries`` in ``workdir``: owner uid:gid, mtime ``epoch``."""
    fd, name = tempfile.mkstemp(prefix="layer-", suffix=".tar.gz", dir=workdir)
    path = Path(name)
    with os.fdopen(fd, "wb") as raw:
        zipped = _HashingWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=zipped, mtime=0, compresslevel=6) as gz:  # type: ignore[call-overload]
            plain = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for entry in entries:
                    info = tarfile.TarInfo(entry.path + ("/" if entry.kind == "dir" else ""))
                    info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, uid, gid, "", ""
                    if entry.kind == "dir":
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        tar.addfile(info)
                    elif entry.kind == "symlink":
                        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
                        tar.addfile(info)
                    else:
                        assert entry.source is not None
                        info.mode = 0o755 if entry.executable else 0o644
                        with entry.source.open("rb") as f:
                            info.size = os.fstat(f.fileno()).st_size
                            tar.addfile(info, f)
    digest = "sha256:" + zipped.sha.hexdigest()
    return Layer(Blob(digest, zipped.size, path=path), "sha256:" + plain.sha.hexdigest())


def write_archive(output: Path, index: dict[str, Any], blobs: Iterable[Blob], base: BaseImage | None) -> None:
    """Write the OCI archive: ``oci-layout``, ``index.json``, then the blobs sorted by digest.

    Blobs with neither data nor path are copied from ``base``. The file is replaced atomically.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    unique = {b.digest: b for b in blobs}
    with tmp.open("wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "blobs", None, 0)
        _add(tar, "blobs/sha256", None, 0)
        _add(tar, "oci-layout", io.BytesIO(b'{"imageLayoutVersion":"1.0.0"}'), 30)
        data = canonical_json(index)
        _add(tar, "index.json", io.BytesIO(data), len(data))
        for digest in sorted(unique):
            blob = unique[digest]
            name = "blobs/" + digest.replace(":", "/", 1)
            if blob.data is None and blob.path is None:
                assert base is not None
                with base.blob(digest) as f:
                    _add(tar, name, f, blob.size)
            else:
                with blob.open() as f:
                    _add(tar, name, f, blob.size)
    tmp.replace(output)


def _add(tar: tarfile.TarFile, name: str, data: IO[bytes] | None, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.mode, info.size = 0o644, size
        tar.addfile(info, data)


def archive_layout(layout: Path, output: Path) -> None:
    """Archive an OCI layout directory (umoci's), naming each image for containerd too.

    Every index entry with a ref name (``funcd:latest``) also gets ``io.containerd.image.name``
    (``docker.io/library/funcd:latest``), the name ``ctr images import`` gives it.
    """
    from .refs import parse_ref

    index = json.loads((layout / "index.json").read_text())
    for entry in index.get("manifests", []):
        annotations = entry.setdefault("annotations", {})
        if REF_NAME in annotations:
            annotations[CONTAINERD_NAME] = parse_ref(annotations[REF_NAME]).qualified
    blobs = [
        Blob("sha256:" + p.name, p.stat().st_size, path=p)
        for p in sorted((layout / "blobs" / "sha256").iterdir())
    ]
    write_archive(output, index, blobs, None)
