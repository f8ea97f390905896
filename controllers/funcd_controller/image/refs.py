"""Image names: ``NAME[:TAG]`` checked, and qualified the way containerd and the kubelet name images."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ImageInputError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|[A-Za-z0-9.-]+:[0-9]+)"
_TAG = r"[\w][\w.-]{0,127}"
_REF = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>{_TAG}))?$"
)


@dataclass(frozen=True)
class ImageRef:
    """An image name as ``funcd build --tag`` takes it."""

    name: str
    """The name as given, with ``:latest`` added when it had no tag (``hello:1``)."""
    tag: str
    """The tag (``1``)."""
    qualified: str
    """The fully qualified name containerd and the kubelet use (``docker.io/library/hello:1``)."""


def parse_ref(text: str) -> ImageRef:
    """Check ``NAME[:TAG]`` (lowercase name components, optional registry host) and qualify it."""
    m = _REF.match(text)
    if not m or len(text) > 255:
        raise ImageInputError(
            f"--tag {text!r}: expected NAME[:TAG] such as hello:1 or registry.example:5000/team/hello:1 "
            "(lowercase name, tag of letters, digits, '_', '.', '-')"
        )
    tag = m["tag"] or "latest"
    path = m["path"]
    domain = m["domain"] or "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    name = text if m["tag"] else f"{text}:latest"
    return ImageRef(name, tag, f"{domain}/{path}:{tag}")
