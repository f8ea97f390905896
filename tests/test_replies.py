"""replies: every row of the tables in replies.py's docstring, for HTTP and for Dapr acks."""

from __future__ import annotations

import json

import flask
import pytest
import werkzeug.exceptions

import functions_framework as ff
from functions_framework.errors import BodyTooLarge, HandlerTimeout
from functions_framework.invocation import Outcome, Status
from functions_framework.replies import (
    AckPolicy,
    HttpReply,
    ack,
    binding_http_status,
    encode_body,
    error_reply,
    http_reply,
    to_http,
)
from functions_framework.settings import Settings

EXECUTION_ID = "exec-42"


def headers(reply: HttpReply) -> dict[str, str]:
    return dict(reply.headers)


def error_of(reply: HttpReply) -> dict:
    assert headers(reply)["Content-Type"] == "application/json"
    body = json.loads(reply.body)  # type: ignore[arg-type]
    assert list(body) == ["error"]
    return body["error"]


def failed(error: BaseException, status: Status = Status.ERROR) -> Outcome:
    return Outcome(status, error=error)


def raised(error: BaseException) -> BaseException:
    """The exception with a traceback, as the invoker catches it."""
    try:
        raise error
    except BaseException as exc:
        return exc


# ---------------------------------------------------------------- HTTP: success


@pytest.mark.parametrize(
    ("result", "status", "content_type", "body"),
    [
        ("héllo", 200, "text/plain; charset=utf-8", "héllo".encode()),
        (b"\x00\x01", 200, "application/octet-stream", b"\x00\x01"),
        (bytearray(b"ab"), 200, "application/octet-stream", b"ab"),
        ({"a": 1, "b": [1, 2]}, 200, "application/json", b'{"a":1,"b":[1,2]}'),
        ([1, "x"], 200, "application/json", b'[1,"x"]'),
        (3, 200, "application/json", b"3"),
        (None, 204, None, b""),
        (({"created": True}, 201), 201, "application/json", b'{"created":true}'),
        (("teapot", 418, {"x-tea": "earl grey"}), 418, "text/plain; charset=utf-8", b"teapot"),
        (("moved", {"Location": "/x"}), 200, "text/plain; charset=utf-8", b"moved"),
        ((None, 202), 202, None, b""),  # None with a status other than 200 keeps that status
        (ff.Response(b"<a/>", status=202, content_type="application/xml"), 202, "application/xml", b"<a/>"),
        (ff.Response({"a": 1}, headers={"x-h": "1"}), 200, "application/json", b'{"a":1}'),
        (ff.Response("t", headers={"Content-Type": "text/csv"}), 200, "text/csv", b"t"),
    ],
)
def test_success_return_values(result, status, content_type, body):
    reply = http_reply(Outcome(Status.SUCCESS, result), EXECUTION_ID)
    assert reply.status == status
    assert headers(reply).get("Content-Type") == content_type
    assert reply.body == body


def test_tuple_and_response_headers_are_sent():
    assert headers(to_http(("x", 200, {"x-a": "1"})))["x-a"] == "1"
    assert headers(to_http(("x", {"x-b": 2})))["x-b"] == "2"
    assert headers(to_http(ff.Response(b"", headers={"x-c": "3"})))["x-c"] == "3"
    assert headers(to_http(({"a": 1}, 200, {"content-type": "application/vnd+json"}))) == {
        "content-type": "application/vnd+json"
    }


def test_a_flask_response_is_sent_as_it_is():
    app = flask.Flask("t")
    with app.test_request_context():
        response = flask.make_response(("made", 207, {"x-flask": "1"}))
    reply = http_reply(Outcome(Status.SUCCESS, response), EXECUTION_ID)
    assert (reply.status, headers(reply)["x-flask"], reply.body) == (207, "1", b"made")


def test_a_streamed_flask_response_stays_streamed():
    response = flask.Response((chunk for chunk in ("a", "b", "c")), mimetype="text/plain")
    reply = to_http(response)
    assert not isinstance(reply.body, bytes)
    assert b"".join(reply.body) == b"abc"


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        (object(), "the handler returned object, which cannot be sent"),
        ({"a": {1, 2}}, "set is not JSON serializable"),
        (("a", 200, {}, "extra"), "expected (body, status[, headers]), got 4 items"),
        (("a", 99), "expected an HTTP status 100-599, got 99"),
        (("a", "200"), "expected an HTTP status 100-599, got '200'"),
        (("a", True), "expected an HTTP status 100-599, got True"),
        (ff.Response(b"", status=600), "got 600"),
    ],
)
def test_what_cannot_be_sent_is_a_500_with_details_only_in_debug(result, problem):
    with pytest.raises(TypeError) as info:
        to_http(result)
    assert problem in str(info.value)
    outcome = Outcome(Status.SUCCESS, result)
    quiet = http_reply(outcome, EXECUTION_ID)
    assert quiet.status == 500
    assert error_of(quiet) == {
        "code": 500,
        "message": "the function returned a value that cannot be sent",
        "execution_id": EXECUTION_ID,
    }
    assert outcome.status is Status.ERROR and isinstance(outcome.error, TypeError)
    loud = http_reply(Outcome(Status.SUCCESS, result), EXECUTION_ID, debug=True)
    assert problem in error_of(loud)["detail"]


def test_encode_body():
    assert encode_body(None) == (b"", "")
    assert encode_body("a") == (b"a", "text/plain; charset=utf-8")
    assert encode_body(memoryview(b"m")) == (b"m", "application/octet-stream")
    assert encode_body({"k": "é"}) == (b'{"k":"\\u00e9"}', "application/json")


# ---------------------------------------------------------------- HTTP: failures


@pytest.mark.parametrize(
    ("outcome", "status", "message"),
    [
        (failed(ff.Retry(), Status.RETRY), 503, "the function asked for a retry"),
        (failed(ff.Retry("later"), Status.RETRY), 503, "the function asked for a retry: later"),
        (failed(ff.Drop(), Status.DROP), 422, "the function dropped the request"),
        (failed(ff.Drop("poison"), Status.DROP), 422, "the function dropped the request: poison"),
        (failed(ff.HTTPError(409, "version conflict")), 409, "version conflict"),
        (failed(ff.HTTPError(502, "upstream down")), 502, "upstream down"),
        (failed(werkzeug.exceptions.NotFound()), 404, werkzeug.exceptions.NotFound.description),
        (failed(werkzeug.exceptions.BadRequest("no name")), 400, "no name"),
        (failed(werkzeug.exceptions.ServiceUnavailable("busy")), 503, "busy"),
        (
            failed(BodyTooLarge(2048, 1024), Status.INVALID),
            413,
            "body of 2048 bytes exceeds the limit of 1024",
        ),
        (failed(ff.BadCloudEvent("ce-source missing"), Status.INVALID), 400, "ce-source missing"),
        (failed(ff.EventDataError("malformed JSON body"), Status.INVALID), 400, "malformed JSON body"),
        (failed(HandlerTimeout("did not finish within 2s"), Status.TIMEOUT), 504, "did not finish within 2s"),
        (failed(HandlerTimeout(), Status.TIMEOUT), 504, "the function did not finish in time"),
        (failed(ff.OutputError("sidecar down", temporary=True)), 503, "a Dapr output is unavailable"),
        (
            failed(ff.OutputError("send(output='x'): expected one of sink")),
            500,
            "the function raised an exception; see the logs for this execution id",
        ),
        (
            failed(RuntimeError("secret internals")),
            500,
            "the function raised an exception; see the logs for this execution id",
        ),
        (failed(TimeoutError("a socket's own")), 500, "the function raised an exception"),
    ],
)
def test_failures(outcome, status, message):
    reply = http_reply(outcome, EXECUTION_ID)
    assert reply.status == status
    error = error_of(reply)
    assert error["code"] == status and error["execution_id"] == EXECUTION_ID
    assert message in error["message"]
    assert "detail" not in error


def test_the_body_does_not_leak_what_the_exception_says_unless_debug():
    outcome = failed(raised(RuntimeError("secret internals")))
    quiet = error_of(http_reply(outcome, EXECUTION_ID))
    assert "secret" not in json.dumps(quiet)
    loud = error_of(http_reply(outcome, EXECUTION_ID, debug=True))
    assert loud["message"] == "the function raised RuntimeError: secret internals"
    assert loud["detail"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: secret internals" in loud["detail"]


def test_a_temporary_output_error_shows_its_cause_only_in_debug():
    outcome = failed(raised(ff.OutputError("publish to 'orders' failed: UNAVAILABLE", temporary=True)))
    assert error_of(http_reply(outcome, EXECUTION_ID))["message"] == "a Dapr output is unavailable"
    loud = error_of(http_reply(outcome, EXECUTION_ID, debug=True))
    assert loud["message"] == "a Dapr output is unavailable: publish to 'orders' failed: UNAVAILABLE"
    assert "Traceback" in loud["detail"]


def test_a_permanent_output_error_is_a_500_with_its_cause_only_in_debug():
    outcome = failed(raised(ff.OutputError("send(output='x'): expected one of sink")))
    assert "expected one of" not in json.dumps(error_of(http_reply(outcome, EXECUTION_ID)))
    loud = error_of(http_reply(outcome, EXECUTION_ID, debug=True))
    assert loud["message"] == "the function raised OutputError: send(output='x'): expected one of sink"


@pytest.mark.parametrize(
    "outcome",
    [
        failed(ff.HTTPError(409, "conflict")),
        failed(werkzeug.exceptions.NotFound()),
        failed(ff.Retry(), Status.RETRY),
        failed(ff.EventDataError("bad"), Status.INVALID),
    ],
)
def test_client_errors_and_signals_have_no_traceback_even_in_debug(outcome):
    assert "detail" not in error_of(http_reply(outcome, EXECUTION_ID, debug=True))


def test_error_reply_shape():
    reply = error_reply(418, "short and stout", "e1", "detail")
    assert reply.status == 418
    assert json.loads(reply.body) == {  # type: ignore[arg-type]
        "error": {"code": 418, "message": "short and stout", "execution_id": "e1", "detail": "detail"}
    }


# ---------------------------------------------------------------- Dapr acks


@pytest.mark.parametrize(
    ("outcome", "default", "strict"),
    [
        (Outcome(Status.SUCCESS, {"ok": True}), "SUCCESS", "SUCCESS"),
        (Outcome(Status.SUCCESS, object()), "SUCCESS", "SUCCESS"),  # an async reply is never encoded
        (failed(ff.Retry(), Status.RETRY), "RETRY", "RETRY"),
        (failed(ff.Drop(), Status.DROP), "DROP", "DROP"),
        (failed(HandlerTimeout(), Status.TIMEOUT), "RETRY", "RETRY"),
        (failed(ff.EventDataError("bad"), Status.INVALID), "DROP", "RETRY"),
        (failed(BodyTooLarge(10, 1), Status.INVALID), "DROP", "RETRY"),
        (Outcome.refused("DROP"), "DROP", "RETRY"),
        (failed(ff.OutputError("down", temporary=True)), "RETRY", "RETRY"),
        (failed(ff.OutputError("no such output")), "DROP", "DROP"),
        (failed(RuntimeError("boom")), "RETRY", "DROP"),
        (failed(TimeoutError("a socket's own")), "RETRY", "DROP"),
        (failed(ff.HTTPError(409, "x")), "RETRY", "DROP"),
    ],
)
def test_acks(outcome, default, strict):
    """``default``: the default policy; ``strict``: on_error=DROP and on_invalid=RETRY."""
    assert ack(outcome, AckPolicy()) == default
    assert ack(outcome, AckPolicy(on_error="DROP", on_invalid="RETRY")) == strict


def test_settings_give_the_ack_policy():
    assert Settings(workers=1).ack_policy == AckPolicy(on_error="RETRY", on_invalid="DROP")
    assert Settings(workers=1, on_error="drop", on_invalid="retry").ack_policy == AckPolicy("DROP", "RETRY")


def test_binding_http_status():
    assert [binding_http_status(a) for a in ("SUCCESS", "DROP", "RETRY")] == [200, 200, 503]
