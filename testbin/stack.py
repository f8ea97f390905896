"""The pinned test stack: which binaries, at which versions, and where they are cached.

Standard library only. ``testbin/build.py`` builds what this module describes; the end-to-end
fixtures (``tests/e2e/``) use it to find the binaries. Load it by file path (it is not a package
on ``sys.path``)::

    spec = importlib.util.spec_from_file_location("funcd_testbin_stack", ".../testbin/stack.py")

Binaries live outside the repository, in ``$FUNCD_TESTBIN_CACHE`` or else
``~/.cache/funcd-testbin``, one directory per recipe: ``<name>-<version>/``. Each directory holds
a ``.recipe`` stamp, the digest of the recipe that built it; a directory whose stamp differs from
the current recipe counts as missing and is rebuilt.

Errors::

    MissingBinary      a binary the caller asked for is not built or not installed
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "RECIPES",
    "TESTBIN_DIR",
    "AptRecipe",
    "GoRecipe",
    "MissingBinary",
    "binary",
    "cache_root",
    "data_dir",
    "image_archive",
    "recipe_for",
    "version",
]

TESTBIN_DIR = Path(__file__).resolve().parent
CACHE_ENV = "FUNCD_TESTBIN_CACHE"
STAMP = ".recipe"


class MissingBinary(RuntimeError):
    """A stack binary is not built (or not installed); the message says how to get it."""


@dataclass(frozen=True)
class GoRecipe:
    """Build one or more binaries from a wrapper Go module under testbin/."""

    name: str
    """Recipe name; also the cache directory prefix (``<name>-<version>``)."""
    version: str
    """Upstream version the binaries report (the cache directory suffix)."""
    module: str
    """Wrapper module directory, relative to testbin/."""
    binaries: dict[str, str]
    """Binary name -> Go package to build from the wrapper module ("." is the wrapper's own main)."""
    ldflags: tuple[str, ...] = ()
    """Extra ``-X`` assignments (version strings), passed with ``-s -w``."""
    data: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Cache subdirectory -> (upstream module@version, directory inside it) copied after the build."""
    images: dict[str, tuple[str, str]] = field(default_factory=dict)
    """OCI image archive file name -> (binary to pack as the image's entrypoint, image tag): a
    one-layer image made with umoci after the build (the node's local pod images)."""
    tags: tuple[str, ...] = ()
    """Go build tags (``go build -tags``), e.g. to leave out optional parts of an upstream command."""
    why: str = ""
    """Why this version: printed by ``build.py --list`` and in docs/test-stack.md."""

    def cache_dir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    def digest(self) -> str:
        """Digest of everything that decides the build: the wrapper module's files and the flags."""
        h = hashlib.sha256()
        module_dir = TESTBIN_DIR / self.module
        for path in sorted(module_dir.rglob("*")):
            if path.is_file() and (path.suffix in {".go", ".mod", ".sum"}):
                name = path.relative_to(module_dir).as_posix()
                h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        h.update(repr((self.version, sorted(self.binaries.items()), self.ldflags)).encode())
        h.update(repr(sorted(self.data.items())).encode())
        if self.images:
            h.update(repr(sorted(self.images.items())).encode())
        if self.tags:  # only when set, so that recipes without tags keep their digests
            h.update(repr(self.tags).encode())
        return h.hexdigest()[:16]

    def is_built(self) -> bool:
        stamp = self.cache_dir() / STAMP
        if not stamp.is_file() or stamp.read_text().strip() != self.digest():
            return False
        files = [*self.binaries, *self.images]
        return all((self.cache_dir() / f).is_file() for f in files)

    def binary_path(self, binary: str) -> Path:
        return self.cache_dir() / binary


@dataclass(frozen=True)
class AptRecipe:
    """Binaries (and files) that come from Debian packages, installed with apt-get when missing."""

    name: str
    packages: tuple[str, ...]
    """Debian packages installed together (one apt-get call)."""
    binaries: dict[str, str]
    """Binary name -> absolute path where the packages install it."""
    version: str = "debian"
    files: tuple[str, ...] = ()
    """Other absolute paths the packages must provide (e.g. CNI plugins, which are not on PATH)."""
    why: str = ""

    def is_built(self) -> bool:
        paths = [*self.binaries.values(), *self.files]
        return all(Path(p).is_file() for p in paths)

    def binary_path(self, binary: str) -> Path:
        return Path(self.binaries[binary])


RECIPES: dict[str, GoRecipe | AptRecipe] = {
    r.name: r
    for r in (
        GoRecipe(
            name="daprd",
            version="1.18.2",
            module="daprd",
            binaries={"daprd": "."},
            ldflags=("github.com/dapr/dapr/pkg/buildinfo.version=1.18.2",),
            data={"crds": ("github.com/dapr/dapr@v1.18.2", "charts/dapr/crds")},
            why=(
                "Slim build: only in-memory/redis pub/sub and state, cron and localstorage bindings, "
                "loopback name resolution (no mDNS); 143 modules linked. 1.18.2 is the newest release "
                "that builds from the module proxy here: v1.18.3 requires github.com/dapr/durabletask-go "
                'v0.12.4, which the proxy refuses (403 "This module version is not available").'
            ),
        ),
        GoRecipe(
            name="etcd",
            version="3.5.21",
            module="etcd",
            binaries={"etcd": "."},
            ldflags=(),
            why="The etcd release Kubernetes v1.33 is built and tested against (its go.mod pins 3.5.21).",
        ),
        GoRecipe(
            name="kube",
            version="1.33.13",
            module="kube",
            binaries={
                "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
                "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            },
            ldflags=tuple(
                f"{pkg}.{var}={val}"
                for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
                for var, val in (("gitVersion", "v1.33.13"), ("gitMajor", "1"), ("gitMinor", "33"))
            ),
            why=(
                "Newest 1.33 patch; 1.33 is the newest minor the machine's versioned kubectl clients "
                "cover and lies inside KEDA 2.20's supported window. kubectl is built from the same "
                "release so the client always matches the server."
            ),
        ),
        GoRecipe(
            name="kube-control-plane",
            version="1.33.13",
            module="kube-control-plane",
            binaries={
                "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
                "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            },
            ldflags=tuple(
                f"{pkg}.{var}={val}"
                for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
                for var, val in (("gitVersion", "v1.33.13"), ("gitMajor", "1"), ("gitMinor", "33"))
            ),
            why=(
                "The rest of the control plane, from the same Kubernetes release as kube-apiserver: "
                "Deployments -> ReplicaSets -> Pods, the garbage collector, scheduling. A recipe of its "
                "own so that adding it does not rebuild kube-apiserver."
            ),
        ),
        GoRecipe(
            name="kubelet",
            version="1.33.13",
            module="kubelet",
            binaries={"kubelet": "k8s.io/kubernetes/cmd/kubelet"},
            ldflags=tuple(
                f"{pkg}.{var}={val}"
                for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
                for var, val in (("gitVersion", "v1.33.13"), ("gitMajor", "1"), ("gitMinor", "33"))
            ),
            why=(
                "The node agent from the same Kubernetes release as the control plane, so the e2e "
                "node runs real pods through containerd. A recipe of its own so that adding it does "
                "not rebuild the control plane."
            ),
        ),
        GoRecipe(
            name="keda",
            version="2.20.2",
            module="keda",
            binaries={"keda-operator": "github.com/kedacore/keda/v2/cmd/operator"},
            ldflags=("github.com/kedacore/keda/v2/version.Version=2.20.2",),
            data={"crds": ("github.com/kedacore/keda/v2@v2.20.2", "config/crd/bases")},
            why="Built against k8s.io v0.35; KEDA supports N-2, so Kubernetes 1.33-1.35.",
        ),
        GoRecipe(
            name="keda-adapter",
            version="2.20.2",
            module="keda-adapter",
            binaries={"keda-adapter": "github.com/kedacore/keda/v2/cmd/adapter"},
            ldflags=("github.com/kedacore/keda/v2/version.Version=2.20.2",),
            why=(
                "KEDA's metrics adapter (external.metrics.k8s.io behind the kube-apiserver's "
                "aggregation layer), same release as the operator: the HPA reads it to scale past 1. "
                "A recipe of its own so that adding it does not rebuild the operator."
            ),
        ),
        GoRecipe(
            name="jaeger",
            version="2.13.0",
            module="jaeger",
            binaries={"jaeger": "github.com/jaegertracing/jaeger/cmd/jaeger"},
            ldflags=("github.com/jaegertracing/jaeger/internal/version.latestVersion=v2.13.0",),
            why="Jaeger v2 (Go module v1.76.0): in-memory storage, OTLP receivers, query API.",
        ),
        GoRecipe(
            name="prometheus",
            version="3.16.0",
            module="prometheus",
            binaries={"prometheus": "github.com/prometheus/prometheus/cmd/prometheus"},
            ldflags=("github.com/prometheus/common/version.Version=3.16.0",),
            tags=("remove_all_sd",),
            why=(
                "Prometheus 3.16.0 (Go module v0.316.0, the newest release the module proxy serves): "
                "static and file scrape configs only (tag remove_all_sd leaves out the cloud service "
                "discoveries); no embedded web UI, the query API is what the tests use."
            ),
        ),
        AptRecipe(
            name="node-runtime",
            packages=("containerd", "runc", "containernetworking-plugins", "umoci", "nftables", "iproute2"),
            binaries={
                "containerd": "/usr/bin/containerd",
                "containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2",
                "ctr": "/usr/bin/ctr",
                "runc": "/usr/sbin/runc",
                "umoci": "/usr/bin/umoci",
                "nft": "/usr/sbin/nft",
                "ip": "/usr/sbin/ip",
            },
            files=tuple(f"/usr/lib/cni/{p}" for p in ("bridge", "host-local", "loopback")),
            why=(
                "Debian bookworm's containerd (1.6), runc, CNI plugins (bridge, host-local, loopback "
                "in /usr/lib/cni), umoci (packs the local pod images), nftables and iproute2: what the "
                "e2e node runs pods with."
            ),
        ),
        GoRecipe(
            name="pause",
            version="1",
            module="pause",
            binaries={"pause": ".", "probe": "./probe"},
            images={"pause.oci.tar": ("pause", "1"), "probe.oci.tar": ("probe", "1")},
            why=(
                "Our own pod sandbox program (waits for SIGINT/SIGTERM, reaps zombies) and a tiny HTTP "
                "server/client for pod tests, each packed as a one-layer OCI image: the node never "
                "pulls an image."
            ),
        ),
        AptRecipe(
            name="redis",
            packages=("redis-server",),
            binaries={"redis-server": "/usr/bin/redis-server", "redis-cli": "/usr/bin/redis-cli"},
            why="Debian bookworm's redis-server (7.0).",
        ),
        AptRecipe(
            name="mmdebstrap",
            packages=("mmdebstrap",),
            binaries={"mmdebstrap": "/usr/bin/mmdebstrap"},
            why="Debian bookworm's mmdebstrap: the runtime image's root filesystem, without a daemon.",
        ),
    )
}


def cache_root() -> Path:
    """Where built binaries live: $FUNCD_TESTBIN_CACHE, else ~/.cache/funcd-testbin."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "funcd-testbin"


def recipe_for(name: str) -> GoRecipe | AptRecipe:
    """The recipe that provides ``name`` (a recipe name or a binary name)."""
    if name in RECIPES:
        return RECIPES[name]
    for recipe in RECIPES.values():
        if name in recipe.binaries:
            return recipe
    known = sorted(set(RECIPES) | {b for r in RECIPES.values() for b in r.binaries})
    raise KeyError(f"unknown test-stack binary {name!r}; known: {', '.join(known)}")


def version(name: str) -> str:
    """The pinned version of a binary or recipe."""
    return recipe_for(name).version


def binary(name: str) -> Path:
    """Path of a built binary; raises MissingBinary saying how to build it."""
    recipe = recipe_for(name)
    if name in RECIPES and len(recipe.binaries) == 1:
        name = next(iter(recipe.binaries))
    path = recipe.binary_path(name)
    if recipe.is_built():
        return path
    if isinstance(recipe, AptRecipe):
        found = shutil.which(name)
        if found:
            return Path(found)
        names = " ".join(recipe.packages)
        how = f"install the Debian packages {names}: `make testbin` does it (apt-get, as root)"
    else:
        state = "is stale (its recipe changed)" if path.is_file() else "is not built"
        how = f"{state}; build it with `make testbin` (or `python testbin/build.py {recipe.name}`)"
    raise MissingBinary(f"test-stack binary {name} {recipe.version} missing at {path}: {how}")


def data_dir(recipe_name: str, subdir: str) -> Path:
    """A data directory copied into a recipe's cache at build time (e.g. keda's ``crds``)."""
    recipe = RECIPES[recipe_name]
    if not isinstance(recipe, GoRecipe) or subdir not in recipe.data:
        raise KeyError(f"recipe {recipe_name!r} has no data directory {subdir!r}")
    binary(recipe_name if len(recipe.binaries) == 1 else next(iter(recipe.binaries)))
    return recipe.cache_dir() / subdir


def image_archive(recipe_name: str, archive: str) -> Path:
    """An OCI image archive a recipe packed at build time (e.g. pause's ``pause.oci.tar``)."""
    recipe = RECIPES[recipe_name]
    if not isinstance(recipe, GoRecipe) or archive not in recipe.images:
        raise KeyError(f"recipe {recipe_name!r} has no image archive {archive!r}")
    binary(next(iter(recipe.binaries)))
    return recipe.cache_dir() / archive
