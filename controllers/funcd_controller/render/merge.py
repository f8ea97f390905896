"""Merge the user's pod ``template`` into the rendered pod spec. Pure."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["merge"]


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items)


def merge(ours: Any, theirs: Any) -> Any:
    """``theirs`` merged over ``ours``: mappings key by key, lists of named objects (containers,
    volumes, env, ports...) name by name, anything else replaced by ``theirs``. Inputs are not changed."""
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        out = {k: copy.deepcopy(v) for k, v in ours.items()}
        for key, value in theirs.items():
            out[key] = merge(ours[key], value) if key in ours else copy.deepcopy(value)
        return out
    if isinstance(ours, list) and isinstance(theirs, list) and _named(ours) and _named(theirs):
        given = {item["name"]: item for item in theirs}
        merged = [merge(item, given[item["name"]]) if item["name"] in given else copy.deepcopy(item)
                  for item in ours]  # fmt: skip
        known = {item["name"] for item in ours}
        merged.extend(copy.deepcopy(item) for item in theirs if item["name"] not in known)
        return merged
    return copy.deepcopy(theirs)
