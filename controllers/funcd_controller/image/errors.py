"""Errors of image builds.

ImageError (FunctionsFrameworkError)
  ├── ImageInputError (UsageError)   bad input: no folder, no main.py or target, bad tag, no base (exit 2)
  └── ImageBuildError                the build itself failed: pip could not install the requirements (exit 1)
"""

from __future__ import annotations

from functions_framework.errors import FunctionsFrameworkError, UsageError


class ImageError(FunctionsFrameworkError):
    """Base of the image build's errors."""


class ImageInputError(ImageError, UsageError):
    """The folder, tag or base image given to the build is not usable; the message says which and why."""


class ImageBuildError(ImageError):
    """A build step failed (pip); the message names the step and ends with its output."""
