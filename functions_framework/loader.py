"""Import the user's source, pick the signature, build ONE adapter, check arity and triggers.

How the signature is picked (the rules in docs/authoring.md), first match wins:

1. ``--signature-type`` / ``FUNCTION_SIGNATURE_TYPE``;
2. a decorator: ``@http``, ``@cloud_event``, ``@typed``, ``@batch``;
3. the first parameter annotated ``UserContext`` → ``openfunction``;
4. two parameters → ``funcd`` ``(context, event)``, or ``openfunction`` ``(context, data)`` when the
   second is named ``data``;
5. one parameter → ``http`` (Google's default: a Flask request), or ``openfunction`` when it is named
   ``context`` or ``ctx``.

The picked signature's arity is then checked, and so are the triggers the context declares.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .decorators import ERROR_HANDLERS, SIGNATURE_ATTR
from .errors import FunctionLoadError, SignatureError
from .signatures import (
    ADAPTERS,
    NEEDS_FLASK,
    SIGNATURE_TYPES,
    Adapter,
    SignatureType,
    accepted_signatures,
    describe,
    positional_parameters,
)

if TYPE_CHECKING:
    from .model import FunctionContext

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
    adapter: Adapter
    """How every transport calls it."""
    init_context: Callable[..., Any] | None
    """The module's ``init_context(context)``, if any."""
    source: Path
    """The Python file it was imported from."""
    target: str
    """The target's name."""

    @property
    def signature(self) -> SignatureType:
        return self.adapter.signature


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


_FLASK_IMPORT = re.compile(rb"^[ \t]*(?:import[ \t]+flask\b|from[ \t]+flask\b)", re.MULTILINE)


def imports_flask(source: Path) -> bool:
    """Whether the module imports flask: then it is imported inside its Flask app context."""
    return _FLASK_IMPORT.search(source.read_bytes()) is not None


def make_flask_app(target: str, folder: Path) -> Any:
    """The function's Flask app, as Google's framework makes it: templates from ``folder/templates``."""
    import flask

    return flask.Flask(target, root_path=str(folder), template_folder=str(folder / "templates"))


def _import(source: Path, flask_app: Any) -> Any:
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
        if flask_app is not None:
            with flask_app.app_context():  # flask.current_app works at import time, as in Google's
                spec.loader.exec_module(module)
        else:
            spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise FunctionLoadError(f"{source}: importing it raised {type(exc).__name__}: {exc}") from exc
    return module


def pick_signature(func: Callable[..., Any], requested: str | None = None) -> SignatureType:
    """The signature by the rules in this module's docstring. Raises ``SignatureError``."""
    if requested is not None:
        if requested not in SIGNATURE_TYPES:
            raise SignatureError(
                f"signature type: expected one of {', '.join(SIGNATURE_TYPES)}, got {requested!r}"
            )
        return requested  # type: ignore[return-value]
    marked = getattr(func, SIGNATURE_ATTR, None)
    if marked in SIGNATURE_TYPES:
        return marked  # type: ignore[no-any-return]
    params = positional_parameters(func)
    if params and _annotation_name(params[0]) == "UserContext":
        return "openfunction"
    if len(params) == 2:
        return "openfunction" if params[1].name == "data" else "funcd"
    if len(params) == 1:
        return "openfunction" if params[0].name in ("context", "ctx") else "http"
    raise SignatureError(
        f"{describe(func)}: takes {len(params)} positional parameter(s), which matches no signature; "
        f"funcd accepts: {accepted_signatures()} (see docs/authoring.md, 'Signatures')"
    )


def _annotation_name(param: inspect.Parameter) -> str:
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return ""
    if isinstance(ann, str):  # postponed: "UserContext", or "'UserContext'" when quoted as well
        return ann.strip("'\"").rsplit(".", 1)[-1]
    return getattr(ann, "__name__", "")


_ARITY: dict[SignatureType, tuple[int, ...]] = {
    "funcd": (2,),
    "batch": (2,),
    "http": (1,),
    "cloudevent": (1,),
    "typed": (1,),
    "event": (2,),
    "openfunction": (1, 2),
}


def check_arity(func: Callable[..., Any], signature: SignatureType) -> None:
    """Refuse a function that cannot be called with the signature's arguments."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to check
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    required_kw = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    counts = _ARITY[signature]
    if not required_kw and any(len(required) <= n <= len(positional) for n in counts):
        return
    wants = " or ".join(str(n) for n in counts)
    raise SignatureError(
        f"{describe(func)}: the {signature!r} signature takes {wants} positional parameter(s) "
        f"{ADAPTERS[signature].parameters}, but this one declares {len(positional)}"
        + (f" and required keyword-only {', '.join(p.name for p in required_kw)}" if required_kw else "")
        + f"; funcd accepts: {accepted_signatures()}"
    )


def check_triggers(function: LoadedFunction, context: FunctionContext) -> None:
    """Refuse at start-up a signature that cannot serve a trigger the context declares."""
    adapter = function.adapter
    wanted: list[tuple[str, str]] = []
    if context.has_http:
        wanted.append(("http", "the HTTP trigger"))
    for name, comp in context.inputs.items():
        kind = "pubsub" if comp.kind == "pubsub" else "binding"
        what = f"topic {comp.topic!r} of {comp.component_name!r}" if comp.topic else comp.component_name
        wanted.append((kind, f"the Dapr input {name!r} ({kind} {what})"))
    for kind, what in wanted:
        if kind not in adapter.triggers:
            serving = ", ".join(s for s, a in ADAPTERS.items() if kind in a.triggers)
            raise SignatureError(
                f"{describe(function.handler)} has the {adapter.signature!r} signature "
                f"{adapter.parameters}, which cannot serve {what}; signatures that can: {serving}"
            )


def load_function(
    source: str | Path,
    target: str = "handler",
    signature: str | None = None,
    context: FunctionContext | None = None,
) -> LoadedFunction:
    """Import ``source``, pick ``target``'s signature and build its adapter. Raises ``FunctionLoadError``."""
    path = Path(source).resolve()
    flask_app = make_flask_app(target, path.parent) if imports_flask(path) else None
    del ERROR_HANDLERS[:]
    module = _import(path, flask_app)
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
    kind = pick_signature(func, signature)
    check_arity(func, kind)
    if flask_app is None and (kind in NEEDS_FLASK or ERROR_HANDLERS):
        flask_app = make_flask_app(target, path.parent)
    if flask_app is not None:
        _register_flask(flask_app, func, kind)
    init = getattr(module, "init_context", None)
    if init is not None and not callable(init):
        raise FunctionLoadError(f"{path}: init_context: expected a function, got {type(init).__name__}")
    loaded = LoadedFunction(func, ADAPTERS[kind](func, flask_app), init, path, target)
    if context is not None:
        check_triggers(loaded, context)
    return loaded


def _register_flask(app: Any, func: Callable[..., Any], kind: SignatureType) -> None:
    for args, kwargs, handler in ERROR_HANDLERS:
        app.register_error_handler(*args, handler, **kwargs)
    if kind != "http":
        return
    import flask

    def view(path: str = "") -> Any:
        return flask.make_response(func(flask.request))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    app.add_url_rule("/", "run", view, methods=methods, defaults={"path": ""})
    app.add_url_rule("/<path:path>", "run_path", view, methods=methods)
