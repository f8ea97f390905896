"""Merge the user's pod ``template`` into the rendered pod spec. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["merge", "plain_copy"]


def plain_copy(value: Any) -> Any:
    """A deep copy of JSON-like data (mappings, lists, scalars) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_copy(v) for v in value]
    return value


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items)


def merge(ours: Any, theirs: Any) -> Any:
    """``theirs`` merged over ``ours``: mappings key by key, lists of named objects (containers,
    volumes, env, ports...) name by name, anything else replaced by ``theirs``.

    ``ours`` must be freshly built: it is reused (and changed). ``theirs`` is copied, never shared."""
    if isinstance(ours, dict) and isinstance(theirs, Mapping):
        for key, value in theirs.items():
            ours[key] = merge(ours[key], value) if key in ours else plain_copy(value)
        return ours
    if isinstance(ours, list) and isinstance(theirs, list) and _named(ours) and _named(theirs):
        given = {item["name"]: item for item in theirs}
        merged = [merge(item, given[item["name"]]) if item["name"] in given else item for item in ours]
        known = {item["name"] for item in ours}
        merged.extend(plain_copy(item) for item in theirs if item["name"] not in known)
        return merged
    return plain_copy(theirs)
