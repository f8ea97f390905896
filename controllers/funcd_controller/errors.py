"""Errors of the controller.

ControllerError (FunctionsFrameworkError)
  ├── TemporaryError   the API server is busy, conflicting or unreachable: requeue with backoff
  └── PermanentError   the Function cannot be realised as written: set a condition, do not retry
"""

from __future__ import annotations

from functions_framework.errors import FunctionsFrameworkError


class ControllerError(FunctionsFrameworkError):
    """Base of the controller's errors."""


class TemporaryError(ControllerError):
    """Trying again later may work (409 conflict, 429, 5xx, connection refused)."""


class PermanentError(ControllerError):
    """Trying again cannot work until the Function changes (the API refused an object as invalid)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def classify(exc: BaseException, what: str) -> ControllerError:
    """An API failure as a temporary or permanent error, naming ``what`` was being done."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        reason = getattr(exc, "reason", "") or ""
        body = getattr(exc, "body", "") or ""
        detail = f"{what}: {status} {reason} {body}".strip()
        if status in (409, 429) or status >= 500:
            return TemporaryError(detail)
        return PermanentError("ApplyFailed", detail)
    return TemporaryError(f"{what}: {type(exc).__name__}: {exc}")
