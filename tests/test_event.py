"""Event: data decoding by content type, EventDataError, and the inbound trace carrier."""

from __future__ import annotations

import re
from typing import Any

import pytest
from dapr.proto import appcallback_v1
from google.protobuf import struct_pb2

from functions_framework import EventDataError, FunctionContext
from functions_framework.errors import RequestError
from functions_framework.event import Event, decode_body, traceparent_of_binary
from functions_framework.invocation import Invoker
from functions_framework.model import Component
from functions_framework.runtime.dapr import AppCallback
from functions_framework.runtime.delivery import Router
from functions_framework.runtime.lifecycle import Lifecycle
from functions_framework.runtime_context import RuntimeContext
from functions_framework.settings import Settings
from functions_framework.signatures import FuncdAdapter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
OTHER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
OTHER_TRACEPARENT = f"00-{OTHER_TRACE_ID}-b7ad6b7169203331-01"


# ---------------------------------------------------------------- data, by content type


@pytest.mark.parametrize(
    ("body", "content_type", "data"),
    [
        (b'{"a": [1, 2]}', "application/json", {"a": [1, 2]}),
        (b'{"a": 1}', "application/json; charset=utf-8", {"a": 1}),
        (b'{"a": 1}', "Application/JSON", {"a": 1}),
        (b'{"id": "x"}', "application/cloudevents+json", {"id": "x"}),
        (b"[1]", "application/vnd.api+json", [1]),
        (b'"just a string"', "application/json", "just a string"),
        ("héllo".encode(), "text/plain", "héllo"),
        ("héllo".encode("latin-1"), "text/plain; charset=latin-1", "héllo"),
        ("héllo".encode("latin-1"), 'text/plain; charset="ISO-8859-1"', "héllo"),
        (b"<a/>", "application/xml", "<a/>"),
        (b"a=1&b=2", "application/x-www-form-urlencoded", "a=1&b=2"),
        (b"\x00\x01\xff", "application/octet-stream", b"\x00\x01\xff"),
        (b'{"a": 1}', "", b'{"a": 1}'),  # no content type: the bytes, undecoded
        (b"", "application/json", None),
        (b"", "text/plain", None),
        (b"", "", None),
    ],
)
def test_data_is_decoded_by_content_type(body, content_type, data):
    event = Event(body=body, content_type=content_type)
    assert event.data == data
    assert type(event.data) is type(data)


@pytest.mark.parametrize(
    ("body", "content_type", "mentions"),
    [
        (b"{not json", "application/json", "malformed JSON body (application/json)"),
        (b"[1,", "application/cloudevents+json", "malformed JSON body"),
        (b"\xff\xfe", "text/plain", "does not decode as text/plain"),
        (b"abc", "text/plain; charset=no-such-charset", "does not decode"),
    ],
)
def test_undecodable_data_is_an_event_data_error(body, content_type, mentions):
    event = Event(body=body, content_type=content_type)  # decoding is lazy: building it does not fail
    with pytest.raises(EventDataError, match=re.escape(mentions)) as info:
        _ = event.data
    assert isinstance(info.value, RequestError) and isinstance(info.value, ValueError)


def test_data_is_decoded_once_and_given_data_is_kept():
    event = Event(body=b'{"a": 1}', content_type="application/json")
    assert event.data is event.data
    given = Event(body=b"{not json", content_type="application/json", data={"given": True})
    assert given.data == {"given": True}


def test_json_and_text_ignore_the_content_type():
    event = Event(body=b'{"a": 1}', content_type="application/octet-stream")
    assert event.json() == {"a": 1}
    assert event.text() == '{"a": 1}'
    assert Event(body=b"").json() is None
    with pytest.raises(EventDataError, match="malformed JSON body"):
        Event(body=b"{", content_type="text/plain").json()
    with pytest.raises(EventDataError, match="not text in utf-8"):
        Event(body=b"\xff").text()
    assert Event(body="é".encode("latin-1"), content_type="text/plain; charset=latin-1").text() == "é"


def test_decode_body_is_the_same_rule():
    assert decode_body(b"[1]", "application/json") == [1]
    assert decode_body(b"x", "image/png") == b"x"


def test_headers_are_built_lazily_and_query_is_parsed():
    calls = []

    def factory():
        calls.append(1)
        return {"x-a": "1"}

    event = Event(headers_factory=factory, query_string="a=1&a=2&b=")
    assert calls == []
    assert event.headers == {"x-a": "1"} and event.headers == {"x-a": "1"}
    assert calls == [1]
    assert event.query == {"a": ["1", "2"], "b": [""]}


# ---------------------------------------------------------------- the trace carrier


def test_trace_carrier_from_http_headers():
    event = Event(
        headers={
            "traceparent": TRACEPARENT,
            "tracestate": "congo=t61rcWkgMzE",
            "baggage": "user=ada",
            "x-other": "not part of it",
        }
    )
    assert event.trace_carrier == {
        "traceparent": TRACEPARENT,
        "tracestate": "congo=t61rcWkgMzE",
        "baggage": "user=ada",
    }
    assert event.trace_id == TRACE_ID


def test_trace_carrier_from_cloudevent_extensions():
    event = Event(
        specversion="1.0",
        extensions={"traceparent": TRACEPARENT, "tracestate": "a=b", "partitionkey": "k"},
    )
    assert event.trace_carrier == {"traceparent": TRACEPARENT, "tracestate": "a=b"}
    assert event.trace_id == TRACE_ID


def test_transport_headers_take_precedence_over_extensions_key_by_key():
    event = Event(
        headers={"traceparent": OTHER_TRACEPARENT},
        extensions={"traceparent": TRACEPARENT, "tracestate": "from=envelope"},
    )
    assert event.trace_carrier == {"traceparent": OTHER_TRACEPARENT, "tracestate": "from=envelope"}
    assert event.trace_id == OTHER_TRACE_ID


def test_no_carrier():
    assert Event().trace_carrier == {}
    assert Event(headers={"traceparent": ""}).trace_carrier == {}
    assert Event().trace_id == ""


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id: invalid
        f"00-{TRACE_ID}-0000000000000000-01",  # all-zero parent id: invalid
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",  # 31 digits
        f"00-{TRACE_ID}0-00f067aa0ba902b7-01",  # 33 digits
        f"00-{'g' * 32}-00f067aa0ba902b7-01",  # not hex
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",  # upper case is not allowed by W3C
        f"00-{TRACE_ID}-00f067aa0ba902b7",  # no flags
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra",  # version 00 has exactly four parts
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # version ff is invalid
        TRACE_ID,
        "garbage",
        "",
    ],
)
def test_invalid_traceparent_gives_no_trace_id(traceparent):
    assert Event(headers={"traceparent": traceparent}).trace_id == ""


def test_a_future_version_may_carry_more_fields():
    event = Event(headers={"traceparent": f"01-{TRACE_ID}-00f067aa0ba902b7-01-more"})
    assert event.trace_id == TRACE_ID


# ---------------------------------------------------------------- carriers of Dapr deliveries


class _GrpcContext:
    """The part of a grpc.ServicerContext AppCallback reads: the call's metadata."""

    def __init__(self, metadata: dict[str, str]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return list(self.metadata.items())

    def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


@pytest.fixture
def appcallback():
    """A real AppCallback servicer and router whose handler records each event's carrier."""
    seen: list[tuple[str, dict[str, str], str]] = []

    def handler(context, event):
        seen.append((event.id, event.trace_carrier, event.trace_id))

    ctx = FunctionContext(
        name="carrier",
        http_port=None,
        inputs={
            "msg": Component("msg", "pubsub", "pubsub.redis", topic="orders"),
            "cron": Component("cron", "cron", "bindings.cron"),
        },
    )
    settings = Settings(workers=1)
    invoker = Invoker(FuncdAdapter(handler), RuntimeContext(ctx))
    return AppCallback(Router(ctx, invoker, settings, Lifecycle())), seen


def _extensions(values: dict[str, str]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def test_trace_carrier_from_grpc_metadata_and_envelope(appcallback):
    servicer, seen = appcallback
    request = appcallback_v1.TopicEventRequest(
        id="e1",
        source="s",
        type="t",
        spec_version="1.0",
        data=b"{}",
        data_content_type="application/json",
        topic="orders",
        pubsub_name="pubsub",
        extensions=_extensions({"traceparent": TRACEPARENT, "tracestate": "env=1"}),
    )
    servicer.OnTopicEvent(request, _GrpcContext({"traceparent": OTHER_TRACEPARENT}))
    servicer.OnTopicEvent(request, _GrpcContext({}))
    assert seen == [
        ("e1", {"traceparent": OTHER_TRACEPARENT, "tracestate": "env=1"}, OTHER_TRACE_ID),
        ("e1", {"traceparent": TRACEPARENT, "tracestate": "env=1"}, TRACE_ID),
    ]


def _grpc_trace_bin(trace_id: str, span_id: str, flags: int) -> bytes:
    """daprd's binary trace context (``diagUtils.BinaryFromSpanContext`` in Dapr 1.15 and 1.18)."""
    return b"\x00\x00" + bytes.fromhex(trace_id) + b"\x01" + bytes.fromhex(span_id) + b"\x02" + bytes([flags])


def test_grpc_trace_bin_of_a_delivery_comes_before_the_envelope(appcallback):
    """Over gRPC, daprd sends its delivery span as grpc-trace-bin; the envelope's traceparent is the
    publish's span, one hop earlier."""
    servicer, seen = appcallback
    request = appcallback_v1.TopicEventRequest(
        id="e1",
        spec_version="1.0",
        data=b"{}",
        data_content_type="application/json",
        topic="orders",
        pubsub_name="pubsub",
        extensions=_extensions({"traceparent": TRACEPARENT, "tracestate": "env=1"}),
    )
    binary = _grpc_trace_bin(TRACE_ID, "b7ad6b7169203331", 1)
    servicer.OnTopicEvent(request, _GrpcContext({"grpc-trace-bin": binary}))  # type: ignore[dict-item]
    # An explicit traceparent header still wins.
    servicer.OnTopicEvent(request, _GrpcContext({"grpc-trace-bin": binary, "traceparent": OTHER_TRACEPARENT}))  # type: ignore[dict-item]
    assert seen == [
        ("e1", {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01", "tracestate": "env=1"}, TRACE_ID),
        ("e1", {"traceparent": OTHER_TRACEPARENT, "tracestate": "env=1"}, OTHER_TRACE_ID),
    ]


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x01" + _grpc_trace_bin(TRACE_ID, "b7ad6b7169203331", 1)[1:],  # unknown version
        _grpc_trace_bin(TRACE_ID, "b7ad6b7169203331", 1)[:20],  # cut short
        _grpc_trace_bin("0" * 32, "b7ad6b7169203331", 1),  # all-zero trace id
        _grpc_trace_bin(TRACE_ID, "0" * 16, 1),  # all-zero span id
    ],
)
def test_a_bad_grpc_trace_bin_is_ignored(value):
    assert traceparent_of_binary(value) == ""
    event = Event(headers={"grpc-trace-bin": value}, extensions={"traceparent": TRACEPARENT})  # type: ignore[dict-item]
    assert event.trace_carrier == {"traceparent": TRACEPARENT}


def test_grpc_trace_bin_without_flags_is_not_sampled():
    value = _grpc_trace_bin(TRACE_ID, "b7ad6b7169203331", 1)[:27]
    assert traceparent_of_binary(value) == f"00-{TRACE_ID}-b7ad6b7169203331-00"


def test_trace_carrier_of_bulk_entries_comes_from_each_entry(appcallback):
    servicer, seen = appcallback
    entries = [
        appcallback_v1.TopicEventBulkRequestEntry(  # raw bytes entry: its metadata is the carrier
            entry_id="raw",
            bytes=b"{}",
            content_type="application/json",
            metadata={"traceparent": TRACEPARENT, "baggage": "k=v"},
        ),
        appcallback_v1.TopicEventBulkRequestEntry(  # CloudEvent entry, metadata over the envelope
            entry_id="ce",
            cloud_event=appcallback_v1.TopicEventCERequest(
                id="ce-1",
                source="s",
                type="t",
                spec_version="1.0",
                data=b"{}",
                data_content_type="application/json",
                extensions=_extensions({"traceparent": TRACEPARENT, "tracestate": "env=1"}),
            ),
            content_type="application/cloudevents+json",
            metadata={"traceparent": OTHER_TRACEPARENT},
        ),
        appcallback_v1.TopicEventBulkRequestEntry(  # CloudEvent entry with the envelope's only
            entry_id="ce-env",
            cloud_event=appcallback_v1.TopicEventCERequest(
                id="ce-2",
                source="s",
                type="t",
                spec_version="1.0",
                extensions=_extensions({"traceparent": TRACEPARENT}),
            ),
        ),
    ]
    request = appcallback_v1.TopicEventBulkRequest(
        id="bulk", entries=entries, topic="orders", pubsub_name="pubsub"
    )
    # The bulk call's own gRPC metadata is not any one entry's carrier.
    response = servicer.OnBulkTopicEvent(request, _GrpcContext({"traceparent": "00-not-used"}))
    assert [s.status for s in response.statuses] == [appcallback_v1.TopicEventResponse.SUCCESS] * 3
    assert seen == [
        ("raw", {"traceparent": TRACEPARENT, "baggage": "k=v"}, TRACE_ID),
        ("ce-1", {"traceparent": OTHER_TRACEPARENT, "tracestate": "env=1"}, OTHER_TRACE_ID),
        ("ce-2", {"traceparent": TRACEPARENT}, TRACE_ID),
    ]


def test_trace_carrier_of_a_binding_event_from_grpc_metadata(appcallback):
    servicer, seen = appcallback
    request = appcallback_v1.BindingEventRequest(name="cron", data=b"", metadata={"id": "b1"})
    servicer.OnBindingEvent(request, _GrpcContext({"traceparent": TRACEPARENT, "tracestate": "x=1"}))
    assert seen == [("b1", {"traceparent": TRACEPARENT, "tracestate": "x=1"}, TRACE_ID)]
