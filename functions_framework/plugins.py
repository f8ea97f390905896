"""Plugins: hooks around every call, and around the worker's and supervisor's lives.

A plugin is published under the entry-point group ``functions_framework.plugins``; the entry point names
a factory (usually the plugin class) called once per worker with the FunctionContext. Plugins load by
name from the context's hook lists; ``tracing.enabled`` and ``metrics.enabled`` add ``tracing`` and
``metrics`` around them when not named there (``FunctionContext.plugin_pre_hooks`` and
``plugin_post_hooks``). Per-call state belongs on the invocation (``invocation.state[plugin.name]``),
never on the plugin: calls run concurrently.

Required: ``name``, ``pre_hook(invocation)``, ``post_hook(invocation, outcome)`` (``outcome.reply`` is the
HTTP status or the Dapr ack). Optional, detected by presence:

- ``rejected(request: Rejected)``: a request or delivery refused before the handler;
- ``worker_started(worker: WorkerInfo)`` / ``worker_stopping()``: per worker, after ``init_context`` and
  when it exits (flush exporters here);
- ``routes() -> Mapping[path, WSGI app]``: served on the HTTP port, also for async-only functions;
- ``outbound(call: OutboundCall)``: add Dapr metadata or gRPC headers to ``context.send``/state calls,
  and callbacks to ``call.on_done`` to learn how the call ended;
- on the factory (a classmethod or staticmethod), in the supervisor before workers start:
  ``check(context)`` (raise ``PluginLoadError`` for bad settings: a start-up error, not a worker crash),
  ``supervisor_setup(settings)``, and ``worker_exited(pid)`` after a worker process ended.

A hook that raises is logged with its plugin's name and never fails the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .errors import PluginLoadError

if TYPE_CHECKING:
    from .event import Trigger
    from .invocation import Invocation, Outcome
    from .model import FunctionContext
    from .settings import Settings

ENTRY_POINT_GROUP = "functions_framework.plugins"
log = logging.getLogger("functions_framework.plugins")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]
RejectReason = Literal["too_large", "bad_cloudevent", "invalid_delivery"]
"""Why a request or delivery was refused. Nothing is refused for draining: a drain serves what still
arrives (see ``runtime/drain.py``)."""


@runtime_checkable
class Plugin(Protocol):
    name: str

    def pre_hook(self, invocation: Invocation) -> None: ...

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None: ...


@dataclass(frozen=True)
class Rejected:
    """A request or delivery refused before the handler ran."""

    reason: RejectReason
    """Why it was refused."""
    trigger: Trigger
    """What delivered it (``http``, or the Dapr input)."""
    reply: int | str
    """What the caller got: the HTTP status, or the Dapr ack."""
    message: str
    """The problem, as logged."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Transport headers (lower-case), for the trace carrier."""
    execution_id: str = ""
    """The execution id, when one was assigned."""
    method: str = ""
    """The HTTP method of a refused request ('' for a delivery)."""
    path: str = ""
    """The path of a refused request ('' for a delivery)."""
    topic: str = ""
    """The topic of a refused pub/sub delivery ('' otherwise)."""


@dataclass(frozen=True)
class WorkerInfo:
    """The worker process a plugin runs in."""

    pid: int
    """The worker's process id."""
    context: FunctionContext
    """The function's context."""
    settings: Settings
    """The effective settings."""


@dataclass
class OutboundCall:
    """A call to the Dapr sidecar made by ``context.send`` or a state store. Plugins may add to it."""

    kind: Literal["publish", "binding", "state"]
    """What the call does."""
    name: str
    """The output or state store name, as the context declares it."""
    component: str
    """The Dapr component name."""
    target: str
    """The topic, the binding operation, or the state operation (``get``, ``save``, ...)."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Dapr request metadata (publish/binding metadata), sent with the call."""
    headers: dict[str, str] = field(default_factory=dict)
    """gRPC metadata sent to the sidecar (e.g. ``traceparent``), lower-case names."""
    invocation: Invocation | None = None
    """The call in flight that made it, if any."""
    on_done: list[Callable[[BaseException | None], None]] = field(default_factory=list)
    """Called once the sidecar call is over, with the ``OutputError`` it raised or ``None``; plugins
    append to it in ``outbound`` (a send's outcome, a span's end). A raising callback is logged."""

    def done(self, error: BaseException | None) -> None:
        """Run the ``on_done`` callbacks (``outputs.py`` calls this after the call)."""
        for callback in self.on_done:
            try:
                callback(error)
            except Exception:
                log.exception(
                    "an on_done callback of the %s call to %r raised; going on", self.kind, self.name
                )


def _safe(plugin: Any, hook: str, *args: Any) -> Any:
    try:
        return getattr(plugin, hook)(*args)
    except Exception:
        log.exception("%s of plugin %r raised; going on", hook, getattr(plugin, "name", plugin))
        return None


@dataclass(frozen=True)
class Hooks:
    """The plugins of one worker: pre/post hooks in order, and every plugin for the optional hooks."""

    pre: tuple[Plugin, ...] = ()
    post: tuple[Plugin, ...] = ()
    plugins: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        # Bound once: the hot path neither looks the methods up nor wraps each call in a function.
        object.__setattr__(self, "_pre_calls", tuple((p, p.pre_hook) for p in self.pre))
        object.__setattr__(self, "_post_calls", tuple((p, p.post_hook) for p in self.post))

    def run_pre(self, invocation: Invocation) -> None:
        for plugin, hook in self._pre_calls:  # type: ignore[attr-defined]
            try:
                hook(invocation)
            except Exception:
                log.exception("pre_hook of plugin %r raised; going on", getattr(plugin, "name", plugin))

    def run_post(self, invocation: Invocation, outcome: Outcome) -> None:
        for plugin, hook in self._post_calls:  # type: ignore[attr-defined]
            try:
                hook(invocation, outcome)
            except Exception:
                log.exception("post_hook of plugin %r raised; going on", getattr(plugin, "name", plugin))

    def _with(self, hook: str) -> list[Any]:
        return [p for p in self.plugins if callable(getattr(p, hook, None))]

    def rejected(self, request: Rejected) -> None:
        for plugin in self._with("rejected"):
            _safe(plugin, "rejected", request)

    def worker_started(self, worker: WorkerInfo) -> None:
        for plugin in self._with("worker_started"):
            _safe(plugin, "worker_started", worker)

    def worker_stopping(self) -> None:
        for plugin in self._with("worker_stopping"):
            _safe(plugin, "worker_stopping")

    def outbound(self, call: OutboundCall) -> None:
        for plugin in self._with("outbound"):
            _safe(plugin, "outbound", call)

    @property
    def has_outbound(self) -> bool:
        return bool(self._with("outbound"))

    def routes(self) -> dict[str, WsgiApp]:
        out: dict[str, WsgiApp] = {}
        for plugin in self._with("routes"):
            for path, app in (_safe(plugin, "routes") or {}).items():
                if path in out:
                    log.warning("plugin %r: route %s is already served by another plugin", plugin.name, path)
                    continue
                out[str(path)] = app
        return out


def installed_plugins() -> dict[str, Any]:
    """Entry points of every installed plugin, by name."""
    from importlib.metadata import entry_points  # slow to import; only needed when hooks are named

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def hook_names(context: FunctionContext) -> list[str]:
    return list(dict.fromkeys(context.plugin_pre_hooks + context.plugin_post_hooks))


def load_factories(context: FunctionContext, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The factory of every plugin the context names. Raises ``PluginLoadError`` listing what is installed.

    ``extra`` maps names to factories that take precedence over entry points (tests, embedding).
    """
    names = hook_names(context)
    if not names:
        return {}
    available = installed_plugins() if any(n not in (extra or {}) for n in names) else {}
    missing = [n for n in names if n not in available and n not in (extra or {})]
    if missing:
        known = ", ".join(sorted({*available, *(extra or {})})) or "none"
        raise PluginLoadError(
            f"hooks name plugin(s) {', '.join(repr(m) for m in missing)}, which are not installed "
            f"(entry-point group {ENTRY_POINT_GROUP!r}); installed: {known}"
        )
    out: dict[str, Any] = {}
    for name in names:
        if extra and name in extra:
            out[name] = extra[name]
            continue
        try:
            out[name] = available[name].load()
        except Exception as exc:
            raise PluginLoadError(f"plugin {name!r} cannot be imported: {type(exc).__name__}: {exc}") from exc
    for name, factory in out.items():
        if callable(getattr(factory, "check", None)):
            try:
                factory.check(context)
            except PluginLoadError as exc:
                raise PluginLoadError(f"plugin {name!r}: {exc}") from None
            except Exception as exc:
                raise PluginLoadError(f"plugin {name!r}: check failed: {type(exc).__name__}: {exc}") from exc
    return out


def load_plugins(context: FunctionContext, extra: Mapping[str, Any] | None = None) -> Hooks:
    """Build each plugin named in the context's pre/post hooks once, by name (in a worker)."""
    factories = load_factories(context, extra)
    built: dict[str, Any] = {}
    for name, factory in factories.items():
        try:
            plugin = factory(context)
        except Exception as exc:
            raise PluginLoadError(f"plugin {name!r} failed to start: {type(exc).__name__}: {exc}") from exc
        for method in ("pre_hook", "post_hook"):
            if not callable(getattr(plugin, method, None)):
                raise PluginLoadError(
                    f"plugin {name!r}: expected a {method}() method, got {type(plugin).__name__}"
                )
        if not getattr(plugin, "name", None):
            plugin.name = name
        built[name] = plugin
    return Hooks(
        pre=tuple(built[n] for n in context.plugin_pre_hooks),
        post=tuple(built[n] for n in context.plugin_post_hooks),
        plugins=tuple(built.values()),
    )


class SupervisorHooks:
    """The plugin factories' supervisor hooks: set-up before workers start, and worker exits."""

    def __init__(self, factories: Mapping[str, Any]) -> None:
        self.factories = dict(factories)

    def setup(self, settings: Settings) -> None:
        for factory in self.factories.values():
            if callable(getattr(factory, "supervisor_setup", None)):
                _safe(factory, "supervisor_setup", settings)

    def worker_exited(self, pid: int) -> None:
        for factory in self.factories.values():
            if callable(getattr(factory, "worker_exited", None)):
                _safe(factory, "worker_exited", pid)
