"""Dapr bulk subscribe, asked for in a pub/sub input's metadata with Dapr's own keys. Pure: no I/O.

============================== ======================================== ===================
key                            meaning                                  Dapr's default
============================== ======================================== ===================
``bulkSubscribe``              ``"true"`` or ``"false"``                ``"false"``
``maxBulkSubCount``            most messages in one bulk, a whole       100
                               number > 0
``maxBulkSubAwaitDurationMs``  longest wait for a bulk to fill, in ms,  1000
                               a whole number > 0
============================== ======================================== ===================

funcd turns them into the subscription's bulk config (gRPC ``TopicSubscription.bulk_subscribe``, HTTP
``/dapr/subscribe`` ``bulkSubscribe``). ``check_bulk`` reports every bad value with its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .context import Component
from .reader import Reader, join

__all__ = [
    "BULK_KEYS",
    "DEFAULT_MAX_AWAIT_MS",
    "DEFAULT_MAX_MESSAGES",
    "BulkSubscribe",
    "bulk_subscribe",
    "check_bulk",
    "subscription_metadata",
]

ENABLED_KEY = "bulkSubscribe"
COUNT_KEY = "maxBulkSubCount"
AWAIT_KEY = "maxBulkSubAwaitDurationMs"
BULK_KEYS = (ENABLED_KEY, COUNT_KEY, AWAIT_KEY)

DEFAULT_MAX_MESSAGES = 100
DEFAULT_MAX_AWAIT_MS = 1000
_MAX = 2**31 - 1  # Dapr reads both as int32


@dataclass(frozen=True)
class BulkSubscribe:
    """A pub/sub input's bulk subscribe settings."""

    max_messages: int = DEFAULT_MAX_MESSAGES
    """``maxBulkSubCount``: the most messages daprd puts in one bulk."""
    max_await_ms: int = DEFAULT_MAX_AWAIT_MS
    """``maxBulkSubAwaitDurationMs``: how long daprd waits for a bulk to fill before it sends it."""


def _whole(value: str) -> int | None:
    text = value.strip()
    if not text.isdigit():
        return None
    number = int(text)
    return number if 0 < number <= _MAX else None


def bulk_subscribe(metadata: Mapping[str, str]) -> BulkSubscribe | None:
    """The bulk settings in an input's metadata, or ``None`` when bulk subscribe is off.

    Values are expected to be valid (``check_bulk`` ran when the model was read); a bad number
    falls back to Dapr's default.
    """
    if metadata.get(ENABLED_KEY, "").strip().lower() != "true":
        return None
    count = _whole(metadata.get(COUNT_KEY, "")) or DEFAULT_MAX_MESSAGES
    wait = _whole(metadata.get(AWAIT_KEY, "")) or DEFAULT_MAX_AWAIT_MS
    return BulkSubscribe(count, wait)


def subscription_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The metadata passed on with an input's subscription: its own, without the bulk keys (they
    become the subscription's bulk config)."""
    return {k: v for k, v in metadata.items() if k not in BULK_KEYS}


def check_bulk(r: Reader, comp: Component, path: str, inputs: bool = True) -> None:
    """Note a problem for each bad bulk key in ``comp.metadata`` (``path`` is the component's)."""
    present = [key for key in BULK_KEYS if key in comp.metadata]
    if not present:
        return
    where = join(path, "metadata")
    if not inputs or comp.kind != "pubsub":
        what = "an output" if not inputs else f"a {comp.component_type or 'binding'} input"
        for key in present:
            r.problem(
                join(where, key),
                f"expected bulk subscribe settings on a pub/sub input only, got them on {what}",
            )
        return
    enabled = comp.metadata.get(ENABLED_KEY)
    if enabled is not None and enabled.strip().lower() not in ("true", "false"):
        r.fail(join(where, ENABLED_KEY), '"true" or "false"', enabled)
    for key in (COUNT_KEY, AWAIT_KEY):
        value = comp.metadata.get(key)
        if value is not None and _whole(value) is None:
            r.fail(join(where, key), f"a whole number 1-{_MAX} (as a string)", value)
