"""The names and in-image paths of funcd's images: the one place they are written.

``make image`` (images/build.py) builds the runtime and daprd images under these names, ``funcd build``
reads the runtime image's labels, and manifests/controller/deployment.yaml runs ``funcd:latest``.
"""

from __future__ import annotations

from functions_framework import __version__

RUNTIME_REPOSITORY = "funcd"
"""The runtime image (also the controller's image: ``funcd controller``)."""
DAPRD_REPOSITORY = "funcd-daprd"
"""The slim daprd image; the binary is ``/daprd``."""
DAPRD_VERSION = "1.18.2"
"""The daprd release the image holds: the pinned testbin recipe's version."""

RUNTIME_REFS = (f"{RUNTIME_REPOSITORY}:{__version__}", f"{RUNTIME_REPOSITORY}:latest")
"""The runtime image's names: this funcd's version, and ``latest`` (the controller Deployment's)."""
DAPRD_REF = f"{DAPRD_REPOSITORY}:{DAPRD_VERSION}"
"""The daprd image's name."""

RUNTIME_ARCHIVE = f"{RUNTIME_REPOSITORY}-{__version__}.oci.tar"
"""File name of the runtime image archive in the images cache (``funcd build``'s default base)."""
DAPRD_ARCHIVE = f"{DAPRD_REPOSITORY}-{DAPRD_VERSION}.oci.tar"
"""File name of the daprd image archive in the images cache."""

UID = GID = 65532
"""The non-root user and group every funcd image runs as (the controller renders runAsUser 65532)."""
FUNCTION_DIR = "/function"
"""Where ``funcd build`` puts the function's folder; the runtime image's working directory."""
PYTHON_VERSION = "3.11"
"""Debian bookworm's python3: the interpreter wheels are chosen for."""
RUNTIME_SITE = "/usr/local/lib/python3.11/dist-packages"
"""Where funcd and its dependencies are installed in the runtime image."""
FUNCTION_SITE = "/opt/function/site-packages"
"""Where ``funcd build`` installs a function's requirements.txt; on the runtime image's PYTHONPATH."""

LABEL_PYTHON = "dev.funcd.python"
"""Runtime image label: the Python version (``funcd build`` picks wheels for it)."""
LABEL_RUNTIME_SITE = "dev.funcd.runtime-site"
"""Runtime image label: where funcd's own dependencies are (they constrain a function's requirements)."""
LABEL_FUNCTION_SITE = "dev.funcd.function-site"
"""Runtime image label: where a function's requirements go (a directory on PYTHONPATH)."""

REF_NAME = "org.opencontainers.image.ref.name"
"""The OCI index annotation that names an image in an archive (skopeo, umoci)."""
CONTAINERD_NAME = "io.containerd.image.name"
"""The index annotation ``ctr images import`` names the image by (a fully qualified reference)."""
