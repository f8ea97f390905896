"""The problem-collecting reader: read JSON-like data and note every problem with its exact path.

Nothing stops at the first problem. Each one is a line ``path: what was expected, what was found``::

    spec.serving.outputs[0].dapr.type: expected 'pubsub.*' or 'bindings.*', got "foo"
    spec.serving.trigers: unknown field; did you mean 'triggers'?

``Reader.raise_problems`` raises them all at once as one ``ContextError``. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from ..errors import ContextError

__all__ = ["Reader", "at", "join", "show"]

T = TypeVar("T", bound=str)

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def join(path: str, key: object) -> str:
    """The path of ``key`` inside ``path``: ``a.b``, or ``a["dapr.io/app-id"]`` for keys with dots."""
    text = str(key)
    if _PLAIN_KEY.fullmatch(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text)}]"


def at(path: str, index: int) -> str:
    """The path of item ``index`` of the list at ``path``."""
    return f"{path}[{index}]"


def show(value: Any) -> str:
    """A short rendering of a found value for a problem line."""
    if value is None:
        return "nothing"
    text = json.dumps(value) if isinstance(value, (str, int, float, bool)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def suggest(key: str, known: Collection[str]) -> str | None:
    """The known field closest to a misspelt ``key``, if one is close enough."""
    lowered = {k.lower(): k for k in known}
    if key.lower() in lowered:
        return lowered[key.lower()]
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


class Reader:
    """Reads nested JSON-like data; every problem found is kept in ``problems``."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    # ------------------------------------------------------------ reporting

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top level)'}: {message}")

    def fail(self, path: str, expected: str, got: Any) -> None:
        self.problem(path, f"expected {expected}, got {show(got)}")

    def raise_problems(self, source: str) -> None:
        """Raise every problem found so far as one ``ContextError``, if there is any."""
        if self.problems:
            raise ContextError(list(self.problems), source)

    # ------------------------------------------------------------ containers

    def obj(self, data: Any, path: str, fields: Collection[str]) -> Mapping[str, Any]:
        """``data`` as an object whose keys must be among ``fields``; ``None`` reads as empty."""
        found = self.mapping(data, path)
        for key in found:
            if key not in fields:
                self.unknown(str(key), path, fields)
        return found

    def unknown(self, key: str, path: str, fields: Collection[str]) -> None:
        guess = suggest(key, fields)
        if guess is not None:
            self.problem(join(path, key), f"unknown field; did you mean {guess!r}?")
        else:
            known = ", ".join(repr(f) for f in sorted(fields))
            self.problem(join(path, key), f"unknown field; expected one of {known}")

    def mapping(self, data: Any, path: str) -> Mapping[str, Any]:
        """``data`` as an object with any keys (names chosen by the author); ``None`` reads as empty."""
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            self.fail(path, "an object", data)
            return {}
        return data

    def opaque(self, data: Any, path: str) -> Mapping[str, Any] | None:
        """An object kept as it is (e.g. a pod template); ``None`` when absent."""
        if data is None:
            return None
        return self.mapping(data, path)

    def sequence(self, data: Any, path: str) -> list[Any]:
        """``data`` as a list; ``None`` reads as empty."""
        if data is None:
            return []
        if not isinstance(data, list):
            self.fail(path, "a list", data)
            return []
        return data

    # ------------------------------------------------------------ scalars

    def string(self, data: Mapping[str, Any], key: str, path: str, required: bool = False) -> str:
        """``data[key]`` as a string; absent, null or (when optional) empty reads as ``""``."""
        value = data.get(key)
        where = join(path, key)
        if value is None or value == "":
            if required:
                self.fail(where, "a non-empty string", value)
            return ""
        if not isinstance(value, str):
            self.fail(where, "a non-empty string" if required else "a string", value)
            return ""
        return value

    def strings(self, data: Any, path: str) -> tuple[str, ...]:
        """A list of non-empty strings."""
        out = []
        for i, item in enumerate(self.sequence(data, path)):
            if isinstance(item, str) and item:
                out.append(item)
            else:
                self.fail(at(path, i), "a non-empty string", item)
        return tuple(out)

    def str_map(self, data: Any, path: str) -> dict[str, str]:
        """An object of string values; numbers and booleans (as YAML writes them) become strings."""
        out: dict[str, str] = {}
        for key, value in self.mapping(data, path).items():
            if isinstance(value, bool):
                out[str(key)] = "true" if value else "false"
            elif isinstance(value, (str, int, float)):
                out[str(key)] = str(value)
            else:
                self.fail(join(path, key), "a string", value)
        return out

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool = False) -> bool:
        value = data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(join(path, key), "true or false", value)
            return default
        return value

    def integer(
        self, data: Mapping[str, Any], key: str, path: str, minimum: int = 0, maximum: int = 2**31 - 1
    ) -> int | None:
        """``data[key]`` as a whole number in ``minimum..maximum``; ``None`` when absent."""
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.fail(join(path, key), f"a whole number {minimum}-{maximum}", value)
            return None
        return value

    def port(self, value: Any, path: str) -> int | None:
        """A port number 0-65535 (0: any free port); digits in a string are accepted."""
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            self.fail(path, "a port number 0-65535", value)
            return None
        return value

    def choice(self, data: Mapping[str, Any], key: str, path: str, choices: tuple[T, ...], default: T) -> T:
        """``data[key]`` as one of ``choices``; ``default`` when absent, empty or wrong."""
        found = self.optional_choice(data, key, path, choices)
        return default if found is None else found

    def optional_choice(
        self, data: Mapping[str, Any], key: str, path: str, choices: tuple[T, ...]
    ) -> T | None:
        """``data[key]`` as one of ``choices``; ``None`` when absent, empty or wrong."""
        value = data.get(key)
        if value is None or value == "":
            return None
        for option in choices:
            if value == option:
                return option
        self.fail(join(path, key), " or ".join(repr(c) for c in choices), value)
        return None

    def component_type(self, value: str, path: str, kinds: tuple[str, ...]) -> bool:
        """Check that a Dapr component type starts with one of ``kinds`` (``pubsub`` → ``pubsub.*``)."""
        if value and not value.startswith(tuple(f"{k}." for k in kinds)):
            self.fail(path, " or ".join(f"'{k}.*'" for k in kinds), value)
            return False
        return True
