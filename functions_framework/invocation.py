"""One call: pre hooks → adapter → reply → post hooks, with the result or exception mapped to an Outcome."""

from __future__ import annotations

import contextvars
import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import Drop, EventDataError, HandlerTimeout, HTTPError, RequestError, Retry

if TYPE_CHECKING:
    from .event import Event
    from .plugins import Hooks
    from .runtime_context import RuntimeContext
    from .signatures import Adapter

log = logging.getLogger("functions_framework")

current_invocation: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "funcd_invocation", default=None
)

R = TypeVar("R")


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
    """The handler did not finish within funcd's timeout."""
    INVALID = "invalid"
    """The request or event was refused before the handler, or does not decode (``RequestError``)."""


class Outcome:
    """How a call ended. ``reply`` is what the caller got: the HTTP status, or the Dapr ack.

    A batch call (``@batch``) has ``entries``: one Outcome per event, each with its own ack in
    ``reply``; the batch's own ``reply`` is then the most severe of them (RETRY, DROP, SUCCESS).
    """

    __slots__ = ("duration", "entries", "error", "reply", "result", "status")

    def __init__(self, status: Status, result: Any = None, error: BaseException | None = None) -> None:
        self.status = status
        self.result = result
        self.error = error
        self.duration = 0.0
        self.reply: int | str | None = None
        self.entries: list[Outcome] | None = None

    @classmethod
    def refused(cls, reply: int | str) -> Outcome:
        """The outcome of a request or delivery refused before the handler ran."""
        outcome = cls(Status.INVALID)
        outcome.reply = reply
        return outcome

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCESS

    def __repr__(self) -> str:
        return (
            f"Outcome({self.status.value}, reply={self.reply!r}, error={self.error!r}, "
            f"duration={self.duration:.6f})"
        )


class Invocation:
    """One call in flight. Plugins keep per-call state in ``state`` and may add response headers.

    ``events`` is every event of the call: one, or a whole bulk for a ``@batch`` handler (then
    ``event`` is its first).
    """

    __slots__ = ("context", "event", "events", "execution_id", "response_headers", "started", "state")

    def __init__(
        self, context: RuntimeContext, event: Event, execution_id: str, events: Sequence[Event] = ()
    ) -> None:
        self.context = context
        self.event = event
        self.events: tuple[Event, ...] = tuple(events) or (event,)
        self.execution_id = execution_id
        self.state: dict[str, Any] = {}
        self.response_headers: dict[str, str] = {}
        self.started = time.perf_counter()

    @property
    def trace_id(self) -> str:
        """The W3C trace id of the incoming ``traceparent``, or ''."""
        return self.event.trace_id


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
    """Run a coroutine on the process's handler loop and wait for it (``HandlerTimeout`` on timeout)."""
    import asyncio

    future = asyncio.run_coroutine_threadsafe(coro, _Loop.get())
    return _result_within(future, timeout)


def _result_within(future: Future[Any], timeout: float | None) -> Any:
    """The future's result, or ``HandlerTimeout`` when it is not done within ``timeout`` seconds.

    Waiting and getting the result are separate steps, so that a ``TimeoutError`` the handler raised
    itself (a socket's, ``asyncio.wait_for``'s) stays the handler's exception and is not taken for ours.
    """
    done, _ = wait_futures((future,), timeout)
    if not done:
        future.cancel()
        raise HandlerTimeout(f"the handler did not finish within {timeout:g}s")
    return future.result()


def _in_loop(invocation: Invocation, call: Callable[[], Any]) -> Any:
    async def run() -> Any:
        current_invocation.set(invocation)
        return await call()

    return run()


def _is_http_exception(exc: BaseException) -> bool:
    """werkzeug's HTTPException (flask.abort), detected without importing werkzeug."""
    return isinstance(getattr(exc, "code", None), int) and hasattr(exc, "get_response")


class Invoker:
    """Calls one adapter with hooks, timeout and exception mapping. Thread-safe; one per worker."""

    def __init__(
        self,
        adapter: Adapter,
        context: RuntimeContext,
        hooks: Hooks | None = None,
        timeout: float | None = None,
    ) -> None:
        from .plugins import Hooks

        self.adapter = adapter
        self.context = context
        self.hooks = hooks or Hooks()
        self.timeout = timeout if timeout and timeout > 0 else None
        self.is_async = adapter.is_async
        self._executor: ThreadPoolExecutor | None = None
        self._has_hooks = bool(self.hooks.pre or self.hooks.post)

    def invoke(
        self,
        event: Event,
        execution_id: str,
        reply: Callable[[Invocation, Outcome], R],
        batch: Sequence[Event] = (),
    ) -> tuple[Invocation, Outcome, R]:
        """Run one call; ``reply`` turns the outcome into the transport's answer (before post hooks).

        ``batch``: every event of a bulk, for a ``@batch`` handler (``event`` is then its first).
        """
        invocation = Invocation(self.context, event, execution_id, batch)
        token = current_invocation.set(invocation)
        try:
            if self._has_hooks:
                self.hooks.run_pre(invocation)
            outcome = self._call(invocation)
            outcome.duration = time.perf_counter() - invocation.started
            answer = reply(invocation, outcome)
            if self._has_hooks:
                self.hooks.run_post(invocation, outcome)
            return invocation, outcome, answer
        finally:
            current_invocation.reset(token)

    def _call(self, invocation: Invocation) -> Outcome:
        adapter, ctx, event = self.adapter, self.context, invocation.event

        if adapter.takes_batch:
            events = list(invocation.events)

            def call() -> Any:
                return adapter.call_batch(ctx, events)

        else:

            def call() -> Any:
                return adapter(ctx, event)

        try:
            if self.is_async:
                result = run_coroutine(_in_loop(invocation, call), self.timeout)
            elif self.timeout is None:
                result = call()
            else:
                result = self._call_with_timeout(call)
            return Outcome(Status.SUCCESS, result)
        except HandlerTimeout as exc:
            log.warning("%s", exc)
            return Outcome(Status.TIMEOUT, error=exc)
        except Retry as exc:
            log.info("the handler asked for a retry%s", f": {exc}" if str(exc) else "")
            return Outcome(Status.RETRY, error=exc)
        except Drop as exc:
            log.info("the handler dropped the event%s", f": {exc}" if str(exc) else "")
            return Outcome(Status.DROP, error=exc)
        except (EventDataError, RequestError) as exc:
            log.info("invalid input: %s", exc)
            return Outcome(Status.INVALID, error=exc)
        except HTTPError as exc:
            log.log(logging.WARNING if exc.status >= 500 else logging.INFO, "the handler answered %s", exc)
            return Outcome(Status.ERROR, error=exc)
        except Exception as exc:
            if _is_http_exception(exc) and getattr(exc, "code", 500) < 500:
                log.info("the handler answered %s", exc)
            else:
                log.error("the handler raised %s: %s", type(exc).__name__, exc, exc_info=exc)
            return Outcome(Status.ERROR, error=exc)

    def _call_with_timeout(self, call: Callable[[], Any]) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(thread_name_prefix="funcd-handler")
        future = self._executor.submit(contextvars.copy_context().run, call)
        return _result_within(future, self.timeout)
