"""Invoker: one call through hooks and the adapter, its result or exception mapped to an Outcome."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import flask
import pytest
import werkzeug.exceptions

import functions_framework as ff
from functions_framework.errors import HandlerTimeout
from functions_framework.event import Event
from functions_framework.invocation import Invocation, Invoker, Outcome, Status, current_invocation
from functions_framework.model import FunctionContext
from functions_framework.plugins import Hooks
from functions_framework.runtime_context import RuntimeContext
from functions_framework.signatures import FuncdAdapter

CONTEXT = RuntimeContext(FunctionContext(name="invocation-test"))
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def reply_status(invocation: Invocation, outcome: Outcome) -> str:
    """A transport's reply callable: answers with the status name, as the Dapr router answers an ack."""
    outcome.reply = outcome.status.name
    return outcome.status.name


def invoke(
    handler: Callable[..., Any],
    event: Event | None = None,
    hooks: Hooks | None = None,
    timeout: float | None = None,
) -> tuple[Invocation, Outcome, str]:
    invoker = Invoker(FuncdAdapter(handler), CONTEXT, hooks, timeout)
    return invoker.invoke(event or Event(), "exec-1", reply_status)


# ---------------------------------------------------------------- results and exceptions


def test_success_carries_the_result_and_a_duration():
    def handler(context, event):
        assert context is CONTEXT
        return {"ok": event.data}

    invocation, outcome, answer = invoke(handler, Event(body=b"[1]", content_type="application/json"))
    assert (outcome.status, outcome.result, outcome.error, answer) == (
        Status.SUCCESS,
        {"ok": [1]},
        None,
        "SUCCESS",
    )
    assert outcome.ok and outcome.reply == "SUCCESS"
    assert outcome.duration > 0
    assert invocation.execution_id == "exec-1"


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ff.Retry("later"), Status.RETRY),
        (ff.Drop("poison"), Status.DROP),
        (ff.HTTPError(409, "conflict"), Status.ERROR),
        (werkzeug.exceptions.NotFound(), Status.ERROR),
        (ff.EventDataError("bad data"), Status.INVALID),
        (ff.BadCloudEvent("bad envelope"), Status.INVALID),
        (ff.OutputError("sidecar down", temporary=True), Status.ERROR),
        (RuntimeError("boom"), Status.ERROR),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_exceptions_map_to_statuses(exc, status):
    def handler(context, event):
        raise exc

    _, outcome, answer = invoke(handler)
    assert outcome.status is status
    assert outcome.error is exc
    assert answer == status.name


def test_flask_abort_inside_a_handler_is_an_ordinary_client_error(caplog):
    def handler(context, event):
        flask.abort(404)

    with caplog.at_level(logging.INFO, logger="functions_framework"):
        _, outcome, _ = invoke(handler)
    assert outcome.status is Status.ERROR
    assert isinstance(outcome.error, werkzeug.exceptions.NotFound)
    [record] = [r for r in caplog.records if r.name == "functions_framework"]
    assert record.levelno == logging.INFO and record.exc_info is None, record


def test_a_5xx_http_error_is_a_warning_and_an_exception_an_error_with_traceback(caplog):
    def http_error(context, event):
        raise ff.HTTPError(502, "upstream")

    def boom(context, event):
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO, logger="functions_framework"):
        invoke(http_error)
        invoke(boom)
    records = [r for r in caplog.records if r.name == "functions_framework"]
    assert [(r.levelno, bool(r.exc_info)) for r in records] == [
        (logging.WARNING, False),
        (logging.ERROR, True),
    ]


def test_malformed_json_the_handler_reads_is_invalid():
    def handler(context, event):
        return event.data

    _, outcome, _ = invoke(handler, Event(body=b"{", content_type="application/json"))
    assert outcome.status is Status.INVALID
    assert isinstance(outcome.error, ff.EventDataError)


def test_current_invocation_is_set_during_the_call_only():
    seen = []

    def handler(context, event):
        invocation = current_invocation.get()
        seen.append((invocation.execution_id, invocation.trace_id))

    invoke(handler, Event(headers={"traceparent": TRACEPARENT}))
    assert seen == [("exec-1", "4bf92f3577b34da6a3ce929d0e0e4736")]
    assert current_invocation.get() is None


def test_async_handler_runs_on_the_loop_and_sees_the_invocation():
    async def handler(context, event):
        await asyncio.sleep(0)
        return current_invocation.get().execution_id

    _, outcome, _ = invoke(handler)
    assert (outcome.status, outcome.result) == (Status.SUCCESS, "exec-1")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_async_and_sync_exceptions_map_alike(kind):
    if kind == "async":

        async def handler(context, event):
            raise ff.Drop()
    else:

        def handler(context, event):
            raise ff.Drop()

    assert invoke(handler)[1].status is Status.DROP


# ---------------------------------------------------------------- funcd's timeout


def test_timeout_of_a_sync_handler():
    release = threading.Event()

    def handler(context, event):
        release.wait(30)  # blocks until the test lets it go
        return "late"

    try:
        started = time.monotonic()
        _, outcome, answer = invoke(handler, timeout=0.2)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert outcome.status is Status.TIMEOUT and answer == "TIMEOUT"
    assert isinstance(outcome.error, HandlerTimeout)
    assert "did not finish within 0.2s" in str(outcome.error)
    assert 0.2 <= elapsed < 5


def test_timeout_of_an_async_handler_cancels_it():
    cancelled = threading.Event()

    async def handler(context, event):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    _, outcome, _ = invoke(handler, timeout=0.2)
    assert outcome.status is Status.TIMEOUT
    assert isinstance(outcome.error, HandlerTimeout)
    assert time.monotonic() - started < 5
    assert cancelled.wait(5), "the timed-out coroutine was not cancelled"


def test_a_handler_that_finishes_in_time_is_not_timed_out():
    def handler(context, event):
        return "quick"

    async def async_handler(context, event):
        return "quick"

    for h in (handler, async_handler):
        _, outcome, _ = invoke(h, timeout=5)
        assert (outcome.status, outcome.result) == (Status.SUCCESS, "quick")


def _socket_timeout() -> None:
    """Raise the TimeoutError a socket raises when its own timeout runs out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=0.01)
    try:
        client.recv(1)  # the server never sends
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-funcd-timeout", "funcd-timeout"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_handlers_own_timeout_error_is_an_ordinary_error(kind, timeout):
    if kind == "async":

        async def handler(context, event):
            _socket_timeout()
    else:

        def handler(context, event):
            _socket_timeout()

    _, outcome, answer = invoke(handler, timeout=timeout)
    assert outcome.status is Status.ERROR, outcome
    assert isinstance(outcome.error, TimeoutError) and not isinstance(outcome.error, HandlerTimeout)
    assert answer == "ERROR"


def test_an_async_handlers_asyncio_timeout_is_an_ordinary_error():
    async def handler(context, event):
        await asyncio.wait_for(asyncio.sleep(30), 0.01)

    for timeout in (None, 5.0):
        _, outcome, _ = invoke(handler, timeout=timeout)
        assert outcome.status is Status.ERROR, outcome
        assert not isinstance(outcome.error, HandlerTimeout)


# ---------------------------------------------------------------- hooks


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def pre_hook(self, invocation: Invocation) -> None:
        self.log.append(f"pre:{self.name}")
        invocation.state.setdefault("order", []).append(self.name)

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        self.log.append(f"post:{self.name}:{outcome.status.value}:{outcome.reply}")


class Exploding:
    name = "exploding"

    def pre_hook(self, invocation: Invocation) -> None:
        raise RuntimeError("pre went wrong")

    def post_hook(self, invocation: Invocation, outcome: Outcome) -> None:
        raise RuntimeError("post went wrong")


def test_hooks_run_in_order_around_the_call_and_post_hooks_see_the_reply():
    log: list[str] = []
    a, b = Recorder("a", log), Recorder("b", log)

    def handler(context, event):
        log.append(f"handler:{current_invocation.get().state['order']}")
        return "ok"

    def reply(invocation: Invocation, outcome: Outcome) -> int:
        log.append("reply")
        outcome.reply = 201
        return 201

    invoker = Invoker(FuncdAdapter(handler), CONTEXT, Hooks(pre=(a, b), post=(b, a), plugins=(a, b)))
    _, outcome, answer = invoker.invoke(Event(), "e", reply)
    assert log == [
        "pre:a",
        "pre:b",
        "handler:['a', 'b']",
        "reply",
        "post:b:success:201",
        "post:a:success:201",
    ]
    assert answer == 201 and outcome.reply == 201


@pytest.mark.parametrize(
    ("raised", "status"), [(ff.Retry(), "retry"), (RuntimeError("x"), "error"), (ff.Drop(), "drop")]
)
def test_post_hooks_see_failures_with_their_reply(raised, status):
    log: list[str] = []
    rec = Recorder("r", log)

    def handler(context, event):
        raise raised

    invoke(handler, hooks=Hooks(pre=(rec,), post=(rec,), plugins=(rec,)))
    assert log == ["pre:r", f"post:r:{status}:{status.upper()}"]


def test_a_raising_hook_never_fails_the_call(caplog):
    log: list[str] = []
    rec, boom = Recorder("r", log), Exploding()

    def handler(context, event):
        return "fine"

    hooks = Hooks(pre=(boom, rec), post=(boom, rec), plugins=(boom, rec))
    with caplog.at_level(logging.ERROR, logger="functions_framework.plugins"):
        _, outcome, answer = invoke(handler, hooks=hooks)
    assert (outcome.status, outcome.result, answer) == (Status.SUCCESS, "fine", "SUCCESS")
    assert log == ["pre:r", "post:r:success:SUCCESS"]
    messages = [r.getMessage() for r in caplog.records if r.name == "functions_framework.plugins"]
    assert messages == [
        "pre_hook of plugin 'exploding' raised; going on",
        "post_hook of plugin 'exploding' raised; going on",
    ]
    assert all(r.exc_info for r in caplog.records if r.name == "functions_framework.plugins")


def test_a_raising_hook_does_not_fail_an_async_call_either():
    async def handler(context, event):
        return "fine"

    boom = Exploding()
    _, outcome, _ = invoke(handler, hooks=Hooks(pre=(boom,), post=(boom,), plugins=(boom,)))
    assert (outcome.status, outcome.result) == (Status.SUCCESS, "fine")


def test_outcome_refused_and_repr():
    refused = Outcome.refused(413)
    assert (refused.status, refused.reply, refused.ok) == (Status.INVALID, 413, False)
    assert "invalid" in repr(refused) and "413" in repr(refused)
