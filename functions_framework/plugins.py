"""Plugins: hooks that run before and after every call.

A plugin is published under the entry-point group ``functions_framework.plugins``. The entry point
names a factory (usually the plugin class) called once with the FunctionContext. Per-call state
belongs on the invocation (``invocation.state[plugin.name]``), never on the plugin: calls run
concurrently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import PluginLoadError

if TYPE_CHECKING:
    from .invocation import Invocation, Outcome
    from .model import FunctionContext

ENTRY_POINT_GROUP = "functions_framework.plugins"
log = logging.getLogger("functions_framework.plugins")


@runtime_checkable
class Plugin(Protocol):
    name: str

    def pre_hook(self, invocation: Invocation) -> None: ...

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None: ...


@dataclass(frozen=True)
class Hooks:
    """The plugins to run before and after each call, in order."""

    pre: tuple[Plugin, ...] = ()
    post: tuple[Plugin, ...] = ()

    def run_pre(self, invocation: Invocation) -> None:
        for plugin in self.pre:
            try:
                plugin.pre_hook(invocation)
            except Exception:
                log.exception("pre_hook of plugin %r raised; the call goes on", plugin.name)

    def run_post(self, invocation: Invocation, outcome: Outcome) -> None:
        for plugin in self.post:
            try:
                plugin.post_hook(invocation, outcome)
            except Exception:
                log.exception("post_hook of plugin %r raised; the call goes on", plugin.name)


def installed_plugins() -> dict[str, Any]:
    """Entry points of every installed plugin, by name."""
    from importlib.metadata import entry_points  # slow to import; only needed when hooks are named

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugins(context: FunctionContext, extra: dict[str, Any] | None = None) -> Hooks:
    """Build each plugin named in the context's pre/post hooks once, by name.

    ``extra`` maps names to factories that take precedence over entry points (tests, embedding).
    Raises ``PluginLoadError`` naming what is missing and listing what is installed.
    """
    names = list(dict.fromkeys(context.pre_hooks + context.post_hooks))
    if not names:
        return Hooks()
    available: dict[str, Any] = installed_plugins()
    factories = {
        **{n: ep.load for n, ep in available.items()},
        **{n: (lambda f=f: f) for n, f in (extra or {}).items()},
    }
    missing = [n for n in names if n not in factories]
    if missing:
        known = ", ".join(sorted(factories)) or "none"
        raise PluginLoadError(
            f"hooks name plugin(s) {', '.join(repr(m) for m in missing)}, which are not installed "
            f"(entry-point group {ENTRY_POINT_GROUP!r}); installed: {known}"
        )
    built: dict[str, Plugin] = {}
    for name in names:
        try:
            plugin = factories[name]()(context)
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
        pre=tuple(built[n] for n in context.pre_hooks),
        post=tuple(built[n] for n in context.post_hooks),
    )


def check_plugins(context: FunctionContext) -> None:
    """Fail at start-up, before any worker starts, when a hook names a plugin that is not installed."""
    names = list(dict.fromkeys(context.pre_hooks + context.post_hooks))
    if not names:
        return
    available = installed_plugins()
    missing = [n for n in names if n not in available]
    if missing:
        raise PluginLoadError(
            f"hooks name plugin(s) {', '.join(repr(m) for m in missing)}, which are not installed "
            f"(entry-point group {ENTRY_POINT_GROUP!r}); installed: {', '.join(sorted(available)) or 'none'}"
        )
