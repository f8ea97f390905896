"""The Dapr AppCallback gRPC server: subscriptions, input bindings, bulk deliveries, health.

Served with the official AppCallback stubs from ``dapr[grpc]`` (``dapr.proto``). One server per worker
process; the workers share the port through SO_REUSEPORT. Imported only inside worker processes, so
that no gRPC state exists before they fork.
"""

from __future__ import annotations

import hmac
import logging
from concurrent import futures
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from dapr.proto import appcallback_service_v1, appcallback_v1

from ..event import Event
from ..model import Component
from ..model.bulk import bulk_subscribe, subscription_metadata
from ..replies import Ack
from .delivery import Router, binding_event, pubsub_event, raw_event
from .fanout import MESSAGES, FanOut, RelayServer

log = logging.getLogger("functions_framework.dapr")

_STATUS: dict[Ack, Any] = {
    "SUCCESS": appcallback_v1.TopicEventResponse.SUCCESS,
    "RETRY": appcallback_v1.TopicEventResponse.RETRY,
    "DROP": appcallback_v1.TopicEventResponse.DROP,
}
_RESPONSES = {ack: appcallback_v1.TopicEventResponse(status=status) for ack, status in _STATUS.items()}

BULK_METADATA_OPTIONS = (("grpc.max_metadata_size", 1 << 20), ("grpc.absolute_max_metadata_size", 1 << 20))
"""gRPC server options the AppCallback server needs for bulks (``start_appcallback`` adds them):
daprd adds a ``traceparent`` and a ``grpc-trace-bin`` header per traced entry of a bulk (dapr/dapr
v1.15.4 and v1.18.3, ``diag.SpanContextToGRPCMetadata`` in the bulk publisher), about 170 bytes each,
so a bulk of 50 traced entries exceeds gRPC's default 8 KiB and is refused (RESOURCE_EXHAUSTED,
retried by daprd for ever). 1 MiB is room for about 6000 entries."""


def _extensions(struct: Any) -> dict[str, Any]:
    return {k: struct[k] for k in struct} if struct else {}


def _cloudevent(comp: Component, ce: Any, request: Any, headers: Any) -> Event:
    """An Event from a TopicEventRequest or a bulk entry's TopicEventCERequest (same CloudEvent fields)."""
    return pubsub_event(
        comp,
        id=ce.id,
        source=ce.source,
        type=ce.type,
        specversion=ce.spec_version,
        content_type=ce.data_content_type,
        body=ce.data,
        topic=request.topic,
        pubsub_name=request.pubsub_name,
        extensions=_extensions(ce.extensions),
        headers=headers,
    )


class AppCallback(
    appcallback_service_v1.AppCallbackServicer,  # type: ignore[misc]
    appcallback_service_v1.AppCallbackAlphaServicer,  # type: ignore[misc]
    appcallback_service_v1.AppCallbackHealthCheckServicer,  # type: ignore[misc]
):
    """Delivers topic and binding events to the router."""

    def __init__(self, router: Router) -> None:
        self.router = router
        subs = []
        for comp in router.topics.values():
            sub = appcallback_v1.TopicSubscription(
                pubsub_name=comp.component_name,
                topic=comp.topic,
                metadata=subscription_metadata(comp.metadata),
            )
            if comp.dead_letter_topic:
                sub.dead_letter_topic = comp.dead_letter_topic
            bulk = bulk_subscribe(comp.metadata)
            if bulk is not None:
                sub.bulk_subscribe.CopyFrom(
                    appcallback_v1.BulkSubscribeConfig(
                        enabled=True,
                        max_messages_count=bulk.max_messages,
                        max_await_duration_ms=bulk.max_await_ms,
                    )
                )
            subs.append(sub)
        self._subscriptions = appcallback_v1.ListTopicSubscriptionsResponse(subscriptions=subs)
        self._bindings = appcallback_v1.ListInputBindingsResponse(bindings=list(router.bindings))

    def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        return self._subscriptions

    def ListInputBindings(self, request: Any, context: Any) -> Any:
        return self._bindings

    def OnInvoke(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "service invocation is not served; use the HTTP trigger")

    def OnTopicEvent(self, request: Any, context: Any) -> Any:
        comp = self.router.topic_input(request.pubsub_name, request.topic)
        if comp is None:
            log.warning("no input subscribes to %s/%s; ack DROP", request.pubsub_name, request.topic)
            return _RESPONSES["DROP"]
        event = _cloudevent(comp, request, request, lambda: dict(context.invocation_metadata()))
        ack = self.router.deliver(
            event, lambda: f"event {request.id!r} on {request.pubsub_name}/{request.topic}"
        )
        return _RESPONSES[ack]

    def OnBulkTopicEvent(self, request: Any, context: Any) -> Any:
        comp = self.router.topic_input(request.pubsub_name, request.topic)
        if comp is None:
            log.warning("no input subscribes to %s/%s; ack DROP", request.pubsub_name, request.topic)
            acks: list[Ack] = ["DROP"] * len(request.entries)
        else:
            events = [self._bulk_entry(comp, request, entry) for entry in request.entries]
            acks = self.router.deliver_bulk(comp, events, f"on {request.pubsub_name}/{request.topic}")
        statuses = [
            appcallback_v1.TopicEventBulkResponseEntry(entry_id=entry.entry_id, status=_STATUS[ack])
            for entry, ack in zip(request.entries, acks, strict=True)
        ]
        return appcallback_v1.TopicEventBulkResponse(statuses=statuses)

    OnBulkTopicEventAlpha1 = OnBulkTopicEvent

    def _bulk_entry(self, comp: Component, request: Any, entry: Any) -> Event:
        if entry.HasField("cloud_event"):
            return _cloudevent(comp, entry.cloud_event, request, dict(entry.metadata))
        return raw_event(comp, entry.entry_id, entry.content_type, entry.bytes, dict(entry.metadata))

    def OnBindingEvent(self, request: Any, context: Any) -> Any:
        comp = self.router.bindings.get(request.name)
        if comp is None:
            return context.abort(grpc.StatusCode.NOT_FOUND, f"no input binding named {request.name!r}")
        event = binding_event(
            comp, request.data, request.metadata, lambda: dict(context.invocation_metadata())
        )
        ack = self.router.deliver(event, lambda: f"binding event from {request.name!r}")
        if ack == "RETRY":
            context.abort(grpc.StatusCode.UNAVAILABLE, "the function asked for a retry")
        return appcallback_v1.BindingEventResponse()

    def OnJobEventAlpha1(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "jobs are not served")

    def HealthCheck(self, request: Any, context: Any) -> Any:
        if not self.router.lifecycle.health_probe():  # only daprd calls it (see runtime/drain.py)
            context.abort(grpc.StatusCode.UNAVAILABLE, "NOT_SERVING: draining")
        return appcallback_v1.HealthCheckResponse()


class FannedOut(AppCallback):
    """The AppCallback servicer of a worker among several: deliveries run in the least busy worker
    (see ``runtime/fanout.py``); the rest is served here."""

    def __init__(self, router: Router, fanout: FanOut) -> None:
        super().__init__(router)
        self.fanout = fanout

    def OnTopicEvent(self, request: Any, context: Any) -> Any:
        return self.fanout.dispatch("OnTopicEvent", request, context, super().OnTopicEvent)

    def OnBulkTopicEvent(self, request: Any, context: Any) -> Any:
        return self.fanout.dispatch("OnBulkTopicEvent", request, context, super().OnBulkTopicEvent)

    OnBulkTopicEventAlpha1 = OnBulkTopicEvent

    def OnBindingEvent(self, request: Any, context: Any) -> Any:
        return self.fanout.dispatch("OnBindingEvent", request, context, super().OnBindingEvent)


def local_handlers(servicer: AppCallback) -> dict[str, Any]:
    """The delivery methods as this worker runs them itself (for deliveries relayed to it)."""
    return {name: partial(getattr(AppCallback, name), servicer) for name in MESSAGES}


class TokenCheck(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuses calls whose ``dapr-api-token`` does not match APP_API_TOKEN."""

    def __init__(self, token: str) -> None:
        self.token = token.encode()

        def deny(request: Any, context: Any) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong dapr-api-token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        for key, value in details.invocation_metadata:
            if key == "dapr-api-token" and hmac.compare_digest(value.encode(), self.token):
                return continuation(details)
        return self._deny


def start_appcallback(
    router: Router, host: str, port: int, threads: int, relay: Path | None = None, workers: int = 1
) -> tuple[grpc.Server, RelayServer | None]:
    """Start the AppCallback server on ``host:port`` (shared by workers) and return it. With a
    ``relay`` directory (several workers), deliveries fan out over the ``workers`` workers: this one
    also serves the deliveries the others relay to it."""
    limit = router.settings.max_body + 1024 * 1024
    token = router.settings.app_token
    interceptors = [TokenCheck(token)] if token else []
    server = grpc.server(
        # A receiving worker holds a thread for every delivery in flight anywhere.
        futures.ThreadPoolExecutor(max_workers=threads * workers, thread_name_prefix="funcd-dapr"),
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            *BULK_METADATA_OPTIONS,
        ],
    )
    servicer = AppCallback(router) if relay is None else FannedOut(router, FanOut(relay, threads))
    relay_server = None if relay is None else RelayServer(relay, local_handlers(servicer))
    appcallback_service_v1.add_AppCallbackServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    appcallback_service_v1.add_AppCallbackAlphaServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    appcallback_service_v1.add_AppCallbackHealthCheckServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for Dapr on {host}:{port}")
    server.start()
    return server, relay_server
