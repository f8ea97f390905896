"""Daemonless OCI images: ``funcd build`` (a function folder on the runtime image) and the names and
in-image paths ``make image`` builds the runtime and daprd images with (images/build.py).

Errors: see ``errors.py``.
"""

from .build import BuildResult, build_function_image, check_function
from .errors import ImageBuildError, ImageError, ImageInputError
from .oci import BaseImage, read_image
from .refs import ImageRef, parse_ref

__all__ = [
    "BaseImage",
    "BuildResult",
    "ImageBuildError",
    "ImageError",
    "ImageInputError",
    "ImageRef",
    "build_function_image",
    "check_function",
    "parse_ref",
    "read_image",
]
