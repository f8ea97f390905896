"""Functions written for Google's functions-framework run unchanged on a real funcd server.

The functions live in tests/functions/gcf_*, written as Google's README and tests write them; each
expectation is what Google's framework does, except where funcd deliberately does better, and the
test says so there: a typed function's bad input is a 400 (Google: a 500 "crash"), a typed result is
sent as application/json (Google: text/html), a generated execution id is also returned as a response
header (Google: not returned), and a binary CloudEvent's standard attributes fill a background
function's context (Google reads ce-eventId/ce-timestamp/ce-eventType/ce-resource, so: None).
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.compat_support import (
    FUNCTIONS,
    SUCCESS,
    dapr_stub,
    read_jsonl,
    topic_event,
    wait_exit,
    wait_until,
)

# ---------------------------------------------------------------- @typed


@pytest.fixture
def typed(funcd, tmp_path):
    def start(target: str):
        return funcd(str(FUNCTIONS / "gcf_typed"), "--target", target, cwd=tmp_path)

    return start


@pytest.mark.parametrize("target", ["price_explicit", "price_inferred"])
def test_typed_turns_the_body_into_the_input_type_and_the_result_into_json(typed, target):
    """``@typed(Order)`` and ``@typed`` with ``order: Order``: ``Order.from_dict(body)`` in,
    ``Receipt.to_dict()`` out as JSON."""
    server = typed(target)
    r = requests.post(server.url, json={"item": "tea", "quantity": 3})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"item": "tea", "quantity": 3, "total": 9}


def test_typed_sends_a_builtin_return_value_as_it_is(typed):
    server = typed("describe")
    r = requests.post(server.url, json={"item": "cake", "quantity": 2})
    assert (r.status_code, r.text) == (200, "2 x cake")


def test_typed_returning_none_is_an_empty_200(typed):
    server = typed("accept")
    r = requests.post(server.url, json={"item": "cake", "quantity": 2})
    assert (r.status_code, r.content) == (200, b"")


@pytest.mark.parametrize(
    ("body", "content_type", "mentions"),
    [
        (json.dumps({"item": "tea"}), "application/json", "Order"),  # from_dict raises KeyError
        (json.dumps({"item": "soup", "quantity": 1}), "application/json", "unknown item 'soup'"),
        ("{not json", "application/json", "JSON"),
    ],
    ids=["missing-field", "rejected-by-from_dict", "malformed-json"],
)
def test_typed_bad_input_is_a_400_that_says_why(typed, body, content_type, mentions):
    """Google answers 500 ("crash") here; funcd answers 400 and names the problem. The function's
    own later failures stay 500s (next test)."""
    server = typed("price_explicit")
    r = requests.post(server.url, data=body, headers={"Content-Type": content_type})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert mentions.lower() in message.lower(), message
    assert "Traceback" not in r.text


def test_typed_function_failure_is_still_a_500(typed):
    server = typed("accept")
    r = requests.post(server.url, json={"item": "tea", "quantity": 101})
    assert r.status_code == 500
    assert "too many" not in r.text  # details stay in the logs unless --debug


# ---------------------------------------------------------------- @errorhandler


def test_errorhandler_for_an_exception_type_gives_the_registered_response(funcd, tmp_path):
    server = funcd(str(FUNCTIONS / "gcf_errorhandler"), "--target", "withdraw", cwd=tmp_path)
    ok = requests.get(server.url, params={"account": "alice", "amount": "4"})
    assert (ok.status_code, ok.text) == (200, "withdrew 4")
    r = requests.get(server.url, params={"account": "alice", "amount": "25"})
    assert (r.status_code, r.text) == (402, "overdrawn by 15")


def test_errorhandler_for_a_status_code_gives_the_registered_response(funcd, tmp_path):
    server = funcd(str(FUNCTIONS / "gcf_errorhandler"), "--target", "withdraw", cwd=tmp_path)
    r = requests.get(server.url, params={"account": "bob", "amount": "1"})
    assert r.status_code == 404
    assert r.json() == {"error": "no such account"}


# ---------------------------------------------------------------- Flask integration


def test_template_is_rendered_from_templates_beside_main_py(funcd, tmp_path):
    """The server runs from another folder, so only the source's own templates/ can be found."""
    server = funcd(str(FUNCTIONS / "gcf_template"), "--target", "greet", cwd=tmp_path)
    r = requests.get(server.url, params={"name": "Ada"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.text.strip() == "<p>Hello Ada!</p>"


def test_current_app_is_usable_at_import_time_and_is_the_app_that_serves(funcd, tmp_path):
    server = funcd(str(FUNCTIONS / "gcf_current_app"), "--target", "greet", cwd=tmp_path)
    r = requests.get(server.url)
    assert r.status_code == 200, r.text
    assert r.json() == {"greeting": "Bonjour", "same_app": True}


# ---------------------------------------------------------------- execution id


@pytest.fixture
def whoami(funcd, tmp_path):
    return funcd(str(FUNCTIONS / "gcf_execution_id"), "--target", "whoami", cwd=tmp_path)


def test_execution_id_given_by_the_client_is_the_one_the_function_sees(whoami):
    r = requests.get(whoami.url, headers={"Function-Execution-Id": "exec-given-1"})
    assert r.status_code == 200
    assert r.json() == {"execution_id": "exec-given-1"}
    assert r.headers["Function-Execution-Id"] == "exec-given-1"


def test_execution_id_is_generated_seen_by_the_function_and_returned(whoami):
    first = requests.get(whoami.url)
    second = requests.get(whoami.url)
    seen = [first.json()["execution_id"], second.json()["execution_id"]]
    assert all(isinstance(eid, str) and eid for eid in seen), seen
    assert seen[0] != seen[1]
    assert [first.headers["Function-Execution-Id"], second.headers["Function-Execution-Id"]] == seen


# ---------------------------------------------------------------- legacy background functions

CONTEXT = {
    "eventId": "1215011316659232",
    "timestamp": "2020-05-18T12:13:19.209Z",
    "eventType": "google.pubsub.topic.publish",
    "resource": "projects/demo/topics/orders",
}
EXPECTED_CONTEXT = {
    "event_id": CONTEXT["eventId"],
    "timestamp": CONTEXT["timestamp"],
    "event_type": CONTEXT["eventType"],
    "resource": CONTEXT["resource"],
}


@pytest.fixture
def background(funcd, tmp_path):
    seen = tmp_path / "seen.jsonl"

    def start(*args: str, env: dict[str, str] | None = None):
        server = funcd(
            str(FUNCTIONS / "gcf_background"),
            "--target",
            "on_event",
            *args,
            env={"SEEN_FILE": str(seen), **(env or {})},
            cwd=tmp_path,
        )
        return server, seen

    return start


def test_background_function_gets_data_and_context_from_the_wrapped_body(background):
    server, seen = background("--signature-type", "event")
    r = requests.post(server.url, json={"data": {"order": 42}, "context": CONTEXT})
    assert (r.status_code, r.text) == (200, "OK")
    assert read_jsonl(seen) == [{"data_type": "dict", "data": {"order": 42}, "context": EXPECTED_CONTEXT}]


def test_background_function_gets_data_and_context_from_the_flat_legacy_body(background):
    """The older flat body, and the signature chosen through FUNCTION_SIGNATURE_TYPE."""
    server, seen = background(env={"FUNCTION_SIGNATURE_TYPE": "event"})
    r = requests.post(server.url, json={**CONTEXT, "data": {"order": 7}})
    assert (r.status_code, r.text) == (200, "OK")
    assert read_jsonl(seen) == [{"data_type": "dict", "data": {"order": 7}, "context": EXPECTED_CONTEXT}]


def test_background_function_gets_a_binary_cloudevent(background):
    """As in Google's framework, ``data`` is the raw body. Google fills the context from the non-standard
    ce-eventId/ce-timestamp/ce-eventType/ce-resource headers (so a standard CloudEvent gives None);
    funcd maps the standard attributes: id, time, type, source."""
    server, seen = background("--signature-type", "event")
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "ce-1",
        "ce-type": "com.example.order.created",
        "ce-source": "//orders/eu",
        "ce-time": "2024-05-01T12:00:00Z",
        "Content-Type": "application/json",
    }
    r = requests.post(server.url, data=b'{"order": 9}', headers=headers)
    assert (r.status_code, r.text) == (200, "OK")
    assert read_jsonl(seen) == [
        {
            "data_type": "bytes",
            "data": '{"order": 9}',
            "context": {
                "event_id": "ce-1",
                "timestamp": "2024-05-01T12:00:00Z",
                "event_type": "com.example.order.created",
                "resource": "//orders/eu",
            },
        }
    ]


def test_native_signature_is_named_funcd(funcd, tmp_path):
    """``event`` now means Google's background functions; funcd's ``handler(context, event)`` is ``funcd``."""
    server = funcd(str(FUNCTIONS / "funcd_native"), "--signature-type", "funcd", cwd=tmp_path)
    r = requests.get(server.url + "/x")
    assert r.status_code == 200
    assert r.json() == {"kind": "http", "path": "/x"}


# ---------------------------------------------------------------- flask.abort


def test_abort_400_is_an_ordinary_client_error_logged_without_a_traceback(funcd, tmp_path):
    server = funcd(str(FUNCTIONS / "gcf_abort"), "--target", "greet", cwd=tmp_path)
    r = requests.get(server.url)
    assert r.status_code == 400
    assert "missing name" in r.text
    assert requests.get(server.url, params={"name": "Ada"}).text == "Hello Ada!"
    # A later record from the same worker: everything logged for the abort has been read by then.
    assert requests.get(server.url + "/ping", params={"n": "after-abort"}).text == "pong"
    wait_until(
        lambda: any(rec.get("message") == "ping after-abort" for rec in server.json_logs()),
        "the log record of the request after the abort",
    )
    assert "Traceback" not in server.output
    loud = [
        rec for rec in server.json_logs() if "exception" in rec or rec.get("level") in ("error", "critical")
    ]
    assert loud == [], loud


# ---------------------------------------------------------------- signatures checked at start-up

SIGNATURE_NAMES = (r"\bhttp\b", r"\bcloud_?event\b", r"\btyped\b", r"\bevent\b", r"\bfuncd\b")


@pytest.mark.parametrize(
    ("folder", "target", "args", "declared"),
    [
        ("bad_arity_native", "handler", (), ("context", "event", "extra")),
        ("bad_arity_http", "hello", (), ("request", "name")),
        ("bad_arity_event", "on_event", ("--signature-type", "event"), ("data",)),
    ],
    ids=["native-three-params", "http-two-params", "event-one-param"],
)
def test_wrong_arity_is_a_start_up_error_naming_function_declaration_and_signatures(
    funcd, tmp_path, folder, target, args, declared
):
    server = funcd(str(FUNCTIONS / folder), "--target", target, *args, cwd=tmp_path, ready=False)
    assert wait_exit(server) == 1, server.output
    assert "Traceback" not in server.output, server.output
    lines = [line for line in server.lines if re.search(rf"\b{target}\b", line)]
    assert len(lines) == 1, server.output
    [line] = lines
    declared_text = re.search(r"\(([^()]*)\)", line[line.index(target) :])
    assert declared_text and [p.strip() for p in declared_text.group(1).split(",")] == list(declared), line
    missing = [name for name in SIGNATURE_NAMES if not re.search(name, line)]
    assert not missing, f"the accepted signatures are not all named ({missing}): {line}"


# ---------------------------------------------------------------- @ff.cloud_event


def test_cloud_event_function_accepts_binary_and_structured_http_cloudevents(funcd, tmp_path):
    seen = tmp_path / "seen.jsonl"
    server = funcd(
        str(FUNCTIONS / "gcf_cloud_event"), "--target", "on_order", env={"SEEN_FILE": str(seen)}, cwd=tmp_path
    )
    binary = requests.post(
        server.url,
        data=b'{"n": 1}',
        headers={
            "ce-specversion": "1.0",
            "ce-id": "b-1",
            "ce-type": "com.example.order",
            "ce-source": "/shop",
            "Content-Type": "application/json",
        },
    )
    assert (binary.status_code, binary.text) == (200, "OK")
    structured = requests.post(
        server.url,
        data=json.dumps(
            {"specversion": "1.0", "id": "s-1", "type": "com.example.order", "source": "/shop", "data": "hi"}
        ),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert (structured.status_code, structured.text) == (200, "OK")
    assert read_jsonl(seen) == [
        {"id": "b-1", "type": "com.example.order", "source": "/shop", "data": {"n": 1}},
        {"id": "s-1", "type": "com.example.order", "source": "/shop", "data": "hi"},
    ]


def test_cloud_event_function_subscribed_to_a_dapr_topic_gets_the_event(funcd, tmp_path, dapr_api):
    """Today this raises TypeError on every delivery and is retried forever."""
    seen = tmp_path / "seen.jsonl"
    folder = FUNCTIONS / "gcf_cloud_event"
    server = funcd(
        str(folder),
        "--target",
        "on_order",
        "--context",
        str(folder / "topic.yaml"),
        "--dapr-port",
        "0",
        "--dapr-address",
        dapr_api.address,
        env={**dapr_api.env(), "SEEN_FILE": str(seen)},
        cwd=tmp_path,
    )
    channel, stub = dapr_stub(server)
    try:
        ack = stub.OnTopicEvent(topic_event(b'{"n": 7}', event_id="t-7"))
    finally:
        channel.close()
    assert ack.status == SUCCESS, server.output
    assert read_jsonl(seen) == [
        {"id": "t-7", "type": "com.example.order", "source": "tests", "data": {"n": 7}}
    ]
