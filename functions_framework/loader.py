"""Import the user's source, resolve the target, find ``init_context``."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .decorators import SIGNATURE_ATTR, SIGNATURES
from .errors import FunctionLoadError

CONTEXT_FILES = ("function.yaml", "function.yml", "function.json")


@dataclass(frozen=True)
class FunctionSource:
    """Where a function lives: its Python file and, optionally, its context file."""

    main: Path
    """The Python file to import."""
    context_file: Path | None
    """``function.yaml`` beside it, if any."""


@dataclass(frozen=True)
class LoadedFunction:
    """A user's function, ready to be served."""

    handler: Callable[..., Any]
    """The target callable."""
    signature: str
    """``event`` (handler(context, event)), ``http`` (Flask request) or ``cloudevent``."""
    init_context: Callable[..., Any] | None
    """The module's ``init_context(context)``, if any."""
    source: Path
    target: str


def find_source(path: str | Path) -> FunctionSource:
    """A file, or a folder holding ``main.py`` and optionally ``function.yaml``."""
    p = Path(path)
    if p.is_dir():
        main = p / "main.py"
        if not main.is_file():
            raise FunctionLoadError(f"{p}: expected a folder holding main.py, found no main.py")
        ctx = next((p / name for name in CONTEXT_FILES if (p / name).is_file()), None)
        return FunctionSource(main.resolve(), ctx.resolve() if ctx else None)
    if p.is_file():
        if p.suffix != ".py":
            raise FunctionLoadError(
                f"{p}: expected a Python file (.py) or a folder, got a {p.suffix or 'file'}"
            )
        ctx = next((p.parent / name for name in CONTEXT_FILES if (p.parent / name).is_file()), None)
        return FunctionSource(p.resolve(), ctx.resolve() if ctx else None)
    raise FunctionLoadError(f"{p}: expected a Python file or a folder with main.py, found nothing there")


def _import(source: Path) -> Any:
    folder = str(source.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = source.stem if source.stem not in sys.modules else f"funcd_user_{source.stem}"
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise FunctionLoadError(f"{source}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise FunctionLoadError(f"{source}: importing it raised {type(exc).__name__}: {exc}") from exc
    return module


def _guess_signature(func: Callable[..., Any]) -> str:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return "event"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return "http" if len(positional) == 1 else "event"


def load_function(
    source: str | Path, target: str = "handler", signature: str | None = None
) -> LoadedFunction:
    """Import ``source`` and return its ``target``. Raises ``FunctionLoadError`` saying what is there."""
    path = Path(source).resolve()
    module = _import(path)
    func = getattr(module, target, None)
    if func is None or not callable(func):
        callables = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        )
        found = "nothing callable" if func is None else f"a {type(func).__name__}, not a function"
        raise FunctionLoadError(
            f"{path}: expected a function named {target!r}, found {found}; "
            f"callables defined there: {', '.join(callables) or 'none'} (choose one with --target)"
        )
    kind = signature or getattr(func, SIGNATURE_ATTR, None) or _guess_signature(func)
    if kind not in SIGNATURES:
        raise FunctionLoadError(f"signature type: expected one of {', '.join(SIGNATURES)}, got {kind!r}")
    init = getattr(module, "init_context", None)
    if init is not None and not callable(init):
        raise FunctionLoadError(f"{path}: init_context: expected a function, got {type(init).__name__}")
    return LoadedFunction(handler=func, signature=kind, init_context=init, source=path, target=target)
