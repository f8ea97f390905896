"""One call: pre hooks → handler → post hooks, with the result or exception mapped to an Outcome."""

from __future__ import annotations

import contextvars
import enum
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from .errors import Drop, EventDataError, HTTPError, Retry
from .plugins import Hooks

if TYPE_CHECKING:
    from .event import Event
    from .runtime_context import RuntimeContext

log = logging.getLogger("functions_framework")

current_invocation: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "funcd_invocation", default=None
)


class Status(enum.Enum):
    SUCCESS = "success"
    """The handler returned."""
    RETRY = "retry"
    """The handler raised ``Retry``."""
    DROP = "drop"
    """The handler raised ``Drop``."""
    ERROR = "error"
    """The handler raised any other exception."""
    TIMEOUT = "timeout"
    """The handler did not finish in time."""
    INVALID = "invalid"
    """The event could not be decoded as the handler asked (``EventDataError``)."""


class Outcome:
    """How a call ended."""

    __slots__ = ("duration", "error", "result", "status")

    def __init__(self, status: Status, result: Any = None, error: BaseException | None = None) -> None:
        self.status = status
        self.result = result
        self.error = error
        self.duration = 0.0

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCESS

    def __repr__(self) -> str:
        return f"Outcome({self.status.value}, error={self.error!r}, duration={self.duration:.6f})"


class Invocation:
    """One call in flight. Plugins keep per-call state in ``state`` and may add response headers."""

    __slots__ = ("context", "event", "execution_id", "response_headers", "started", "state")

    def __init__(self, context: RuntimeContext, event: Event, execution_id: str) -> None:
        self.context = context
        self.event = event
        self.execution_id = execution_id
        self.state: dict[str, Any] = {}
        self.response_headers: dict[str, str] = {}
        self.started = time.perf_counter()

    @property
    def trace_id(self) -> str:
        """The W3C trace id of the incoming ``traceparent``, or ''."""
        tp = self.event.headers.get("traceparent") or self.event.extensions.get("traceparent") or ""
        parts = str(tp).split("-")
        valid = len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32
        return parts[1] if valid else ""


def new_execution_id() -> str:
    return os.urandom(8).hex()


class _Loop:
    """A per-process event loop thread for ``async def`` handlers, started on first use."""

    _lock = threading.Lock()
    _loop: Any = None
    _pid = 0

    @classmethod
    def get(cls) -> Any:
        import asyncio  # only functions with async handlers pay for it

        if cls._loop is None or cls._pid != os.getpid():
            with cls._lock:
                if cls._loop is None or cls._pid != os.getpid():
                    loop = asyncio.new_event_loop()
                    threading.Thread(target=loop.run_forever, name="funcd-async", daemon=True).start()
                    cls._loop, cls._pid = loop, os.getpid()
        return cls._loop


def run_coroutine(coro: Any, timeout: float | None = None) -> Any:
    """Run a coroutine on the process's handler loop and wait for it (``TimeoutError`` on timeout)."""
    import asyncio

    future = asyncio.run_coroutine_threadsafe(coro, _Loop.get())
    try:
        return future.result(timeout)
    except FutureTimeout:
        future.cancel()
        raise TimeoutError from None


def _with_invocation(invocation: Invocation, call: Callable[[], Any]) -> Any:
    async def run() -> Any:
        current_invocation.set(invocation)
        return await call()

    return run()


class Invoker:
    """Calls one handler with hooks, timeout and exception mapping. Thread-safe; one per worker."""

    def __init__(
        self,
        handler: Callable[..., Any],
        context: RuntimeContext,
        hooks: Hooks | None = None,
        timeout: float | None = None,
    ) -> None:
        self.handler = handler
        self.context = context
        self.hooks = hooks or Hooks()
        self.timeout = timeout if timeout and timeout > 0 else None
        self.is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self._executor: ThreadPoolExecutor | None = None
        self._has_hooks = bool(self.hooks.pre or self.hooks.post)

    def invoke(
        self, event: Event, execution_id: str, call: Callable[[], Any] | None = None
    ) -> tuple[Invocation, Outcome]:
        """Run one call. ``call`` overrides how the handler is called (e.g. with a Flask request)."""
        invocation = Invocation(self.context, event, execution_id)
        token = current_invocation.set(invocation)
        try:
            if self._has_hooks:
                self.hooks.run_pre(invocation)
            outcome = self._call(invocation, call)
            outcome.duration = time.perf_counter() - invocation.started
            if self._has_hooks:
                self.hooks.run_post(invocation, outcome)
            return invocation, outcome
        finally:
            current_invocation.reset(token)

    def _call(self, invocation: Invocation, call: Callable[[], Any] | None) -> Outcome:
        if call is None:
            handler, ctx, event = self.handler, self.context, invocation.event

            def call() -> Any:
                return handler(ctx, event)

        try:
            if self.is_async:
                result = run_coroutine(_with_invocation(invocation, call), self.timeout)
            elif self.timeout is None:
                result = call()
            else:
                result = self._call_with_timeout(call)
            return Outcome(Status.SUCCESS, result)
        except TimeoutError as exc:
            return Outcome(Status.TIMEOUT, error=exc)
        except Retry as exc:
            return Outcome(Status.RETRY, error=exc)
        except Drop as exc:
            return Outcome(Status.DROP, error=exc)
        except EventDataError as exc:
            return Outcome(Status.INVALID, error=exc)
        except HTTPError as exc:
            return Outcome(Status.ERROR, error=exc)
        except Exception as exc:
            log.error("the handler raised %s: %s", type(exc).__name__, exc, exc_info=exc)
            return Outcome(Status.ERROR, error=exc)

    def _call_with_timeout(self, call: Callable[[], Any]) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(thread_name_prefix="funcd-handler")
        future = self._executor.submit(contextvars.copy_context().run, call)
        try:
            return future.result(self.timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"the handler did not finish within {self.timeout:g}s") from None
