"""The Dapr HTTP app protocol, served by the same WSGI app as the HTTP trigger.

``GET /dapr/subscribe`` lists subscriptions; daprd POSTs each topic's events to
``/dapr/topics/<input>`` and answers ``{"status": "SUCCESS" | "RETRY" | "DROP"}``. Input bindings
are served on ``/<binding name>`` and ``/dapr/bindings/<binding name>`` (``OPTIONS`` for discovery).

A bulk subscription (``bulkSubscribe`` in the input's metadata, ``model/bulk.py``) is listed with
``"bulkSubscribe": {"enabled", "maxMessagesCount", "maxAwaitDurationMs"}``; daprd then POSTs
``{"id", "type": "com.dapr.event.sent.bulk", "topic", "pubsubname", "metadata", "entries": [{"entryId",
"event", "contentType", "metadata"}]}`` to the same route, ``event`` being the CloudEvent object, or
the payload in base64 for raw payloads, and reads ``{"statuses": [{"entryId", "status"}]}`` (an
entry without a status is retried). Facts read in dapr/dapr v1.15.4 and v1.18.3
(``pkg/runtime/pubsub/bulksubscribe_events.go``, ``subscriptions.go``) and components-contrib
``pubsub/responses.go``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from ..errors import BodyTooLarge
from ..event import Event
from ..model.bulk import bulk_subscribe, subscription_metadata
from ..replies import HttpReply, binding_http_status
from .delivery import BulkEntry, Router, binding_event, pubsub_event, raw_event

TOPIC_PREFIX = "/dapr/topics/"
BINDING_PREFIX = "/dapr/bindings/"

_JSON = [("Content-Type", "application/json")]
BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"
_ENVELOPE = 64 * 1024


def _describe(body: bytes) -> str:
    """'event <id>' when the envelope's id can be read, else 'event'."""
    try:
        ce = json.loads(body)
    except ValueError:
        return "event"
    return f"event {ce.get('id')!r}" if isinstance(ce, dict) and ce.get("id") else "event"


def _reply(status: int, body: Any) -> HttpReply:
    return HttpReply(status, list(_JSON), json.dumps(body).encode())


class DaprHttpRoutes:
    """Answers daprd's calls on the app port."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.by_route = {f"{TOPIC_PREFIX}{c.name}": c for c in router.topics.values()}
        self.binding_routes = {}
        for name, comp in router.bindings.items():
            self.binding_routes[f"/{name}"] = comp
            self.binding_routes[f"{BINDING_PREFIX}{name}"] = comp
        self.bulk_routes: dict[str, int] = {}
        """Bulk routes and their most messages per bulk."""
        subs = []
        for route, comp in self.by_route.items():
            sub: dict[str, Any] = {"pubsubname": comp.component_name, "topic": comp.topic, "route": route}
            if comp.dead_letter_topic:
                sub["deadLetterTopic"] = comp.dead_letter_topic
            metadata = subscription_metadata(comp.metadata)
            if metadata:
                sub["metadata"] = metadata
            bulk = bulk_subscribe(comp.metadata)
            if bulk is not None:
                self.bulk_routes[route] = bulk.max_messages
                sub["bulkSubscribe"] = {
                    "enabled": True,
                    "maxMessagesCount": bulk.max_messages,
                    "maxAwaitDurationMs": bulk.max_await_ms,
                }
            subs.append(sub)
        self._subscribe = json.dumps(subs).encode()

    def owns(self, path: str) -> bool:
        return path.startswith("/dapr/") or path in self.binding_routes

    def handle(self, environ: dict[str, Any], body: bytes, headers: dict[str, str]) -> HttpReply:
        token = self.router.settings.app_token
        if token and not hmac.compare_digest(headers.get("dapr-api-token", "").encode(), token.encode()):
            return _reply(401, {"error": "missing or wrong dapr-api-token"})
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/dapr/subscribe" and method == "GET":
            return HttpReply(200, list(_JSON), self._subscribe)
        if path == "/dapr/config" and method == "GET":
            return _reply(200, {})
        if path in self.by_route and method == "POST":
            return self._topic(self.by_route[path], environ, body, headers)
        if path in self.binding_routes:
            if method == "OPTIONS":
                return HttpReply(200, [], b"")
            comp = self.binding_routes[path]
            event = binding_event(comp, body, headers, headers)
            ack = self.router.deliver(event, lambda: f"binding event from {comp.component_name!r}")
            status = binding_http_status(ack)
            if status == 200:
                return HttpReply(200, [], b"")
            return _reply(status, {"error": "the function asked for a retry"})
        return _reply(404, {"error": f"no Dapr route {method} {path}"})

    def body_limit(self, environ: dict[str, Any]) -> int:
        """The most bytes read from daprd for this request: the payload may come in base64 (4/3
        larger) inside an envelope, a bulk holds up to its most messages (the router checks each
        decoded payload against ``--max-body``)."""
        one = self.router.settings.max_body * 4 // 3 + _ENVELOPE
        return one * self.bulk_routes.get(environ.get("PATH_INFO") or "/", 1)

    def too_large(self, environ: dict[str, Any], exc: BodyTooLarge) -> HttpReply:
        """An event whose body exceeds the limit: logged and acked like any invalid event."""
        path = environ.get("PATH_INFO") or "/"
        comp = self.by_route.get(path)
        if comp is None:
            return _reply(413, {"error": str(exc)})
        where = f"event on {comp.component_name}/{comp.topic}"
        if path in self.bulk_routes:
            # The entry ids are in the unread body: daprd drops a whole bulk on 404, retries it on 5xx.
            ack = self.router.reject(comp, f"bulk {where}: {exc}", reason="too_large")
            return _reply(404 if ack == "DROP" else 503, {"error": str(exc)})
        ack = self.router.reject(comp, f"{where}: {exc}", reason="too_large")
        return _reply(200, {"status": ack})

    def _topic(self, comp: Any, environ: dict[str, Any], body: bytes, headers: dict[str, str]) -> HttpReply:
        content_type = environ.get("CONTENT_TYPE", "")
        if environ.get("PATH_INFO") in self.bulk_routes and content_type.startswith("application/json"):
            envelope = _bulk_envelope(body)
            if envelope is not None:
                return self._bulk(comp, envelope, headers)
        event = self._parse(comp, content_type, body, headers)
        if isinstance(event, str):
            where = f"{_describe(body)} on {comp.component_name}/{comp.topic}"
            ack = self.router.reject(comp, f"{where}: {event}", headers)
        else:
            ack = self.router.deliver(
                event, lambda: f"event {event.id!r} on {comp.component_name}/{comp.topic}"
            )
        return _reply(200, {"status": ack})

    def _bulk(self, comp: Any, envelope: dict[str, Any], headers: dict[str, str]) -> HttpReply:
        where = f"on {comp.component_name}/{comp.topic}"
        ids: list[Any] = []
        entries: list[BulkEntry] = []
        for i, item in enumerate(envelope["entries"]):
            entry = item if isinstance(item, dict) else {}
            ids.append(entry.get("entryId"))
            event = self._bulk_entry(comp, entry, headers)
            if isinstance(event, str):
                event = f"bulk entry {i} ({entry.get('entryId')!r}) {where}: {event}"
            entries.append(event)
        acks = self.router.deliver_bulk(comp, entries, where)
        statuses = [
            {"entryId": entry_id, "status": ack}
            for entry_id, ack in zip(ids, acks, strict=True)
            if isinstance(entry_id, str)
        ]
        return _reply(200, {"statuses": statuses})

    def _bulk_entry(self, comp: Any, entry: dict[str, Any], headers: dict[str, str]) -> Event | str:
        entry_id = entry.get("entryId")
        if not isinstance(entry_id, str) or not entry_id:
            return f"expected an entryId string, got {entry_id!r}"
        metadata = entry.get("metadata")
        entry_headers = {**headers, **(metadata if isinstance(metadata, dict) else {})}
        event = entry.get("event")
        if isinstance(event, dict):
            return self._from_cloudevent(comp, event, entry_headers)
        if isinstance(event, str):  # a raw payload, in base64
            try:
                body = base64.b64decode(event, validate=True)
            except (binascii.Error, ValueError) as exc:
                return f"malformed raw payload (expected base64): {exc}"
            content_type = str(entry.get("contentType") or "application/octet-stream")
            return raw_event(comp, entry_id, content_type, body, entry_headers)
        return f"expected a CloudEvent object or a base64 payload as event, got {type(event).__name__}"

    def _parse(self, comp: Any, content_type: str, body: bytes, headers: dict[str, str]) -> Event | str:
        if not content_type.startswith("application/cloudevents+json"):
            return raw_event(comp, headers.get("ce-id", ""), content_type, body, headers)
        try:
            ce = json.loads(body)
        except ValueError as exc:
            return f"malformed CloudEvent JSON: {exc}"
        if not isinstance(ce, dict):
            return f"malformed CloudEvent: expected a JSON object, got {type(ce).__name__}"
        return self._from_cloudevent(comp, ce, headers)

    def _from_cloudevent(self, comp: Any, ce: dict[str, Any], headers: dict[str, str]) -> Event | str:
        has_data = False
        data: Any = None
        raw = b""
        data_type = str(ce.get("datacontenttype") or "")
        if "data_base64" in ce:
            try:
                raw = base64.b64decode(ce["data_base64"], validate=True)
            except (binascii.Error, TypeError) as exc:
                return f"malformed CloudEvent data_base64: {exc}"
        elif "data" in ce:
            data, has_data = ce["data"], True
            if isinstance(data, str) and not data_type.endswith("json"):
                raw = data.encode()
            else:
                raw = json.dumps(data).encode()
        known = {"id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"}
        return pubsub_event(
            comp,
            id=str(ce.get("id", "")),
            source=str(ce.get("source", "")),
            type=str(ce.get("type", "")),
            specversion=str(ce.get("specversion", "")),
            content_type=data_type,
            body=raw,
            topic=str(ce.get("topic") or comp.topic),
            pubsub_name=str(ce.get("pubsubname") or comp.component_name),
            extensions={k: v for k, v in ce.items() if k not in known},
            headers=headers,
            data=data,
            has_data=has_data,
        )


def _bulk_envelope(body: bytes) -> dict[str, Any] | None:
    """daprd's bulk envelope, or None when the body is not one."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    if (
        isinstance(envelope, dict)
        and envelope.get("type") == BULK_EVENT_TYPE
        and isinstance(envelope.get("entries"), list)
    ):
        return envelope
    return None
