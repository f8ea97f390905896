"""``UserContext``: the context of functions written for OpenFunction's Python framework.

``def f(context: UserContext)`` serves HTTP and Dapr triggers alike: ``get_http_request()`` (the Flask
request), ``get_binding_request()`` or ``get_topic_event()`` give what arrived, and
``send(output_name, data)`` (name first, as in OpenFunction) reaches an output: topics get
``json.dumps(data)`` as application/json, bindings get ``data`` as it is. As in OpenFunction, a failed
send returns ``"An error occurred: ..."`` instead of raising; funcd also logs it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..event import Event
    from ..runtime_context import RuntimeContext

log = logging.getLogger("functions_framework.openfunction")


@dataclass
class FunctionOut:
    """What a function may set for its caller (kept for OpenFunction compatibility)."""

    code: int = 0
    error: Any = None
    data: Any = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def get_code(self) -> int:
        return self.code

    def set_code(self, code: int) -> None:
        self.code = code

    def get_error(self) -> Any:
        return self.error

    def set_error(self, error: Any) -> None:
        self.error = error

    def get_data(self) -> Any:
        return self.data

    def set_data(self, data: Any) -> None:
        self.data = data

    def get_metadata(self) -> dict[str, str]:
        return self.metadata

    def set_metadata(self, metadata: dict[str, str]) -> None:
        self.metadata = metadata


class BindingRequest:
    """An input binding event: ``data`` (bytes), ``text()``, ``binding_metadata`` and ``metadata``."""

    def __init__(self, event: Event) -> None:
        self.data: bytes = event.body
        self.binding_metadata: dict[str, str] = dict(event.metadata)
        self.metadata: dict[str, str] = dict(event.headers)

    def text(self) -> str:
        return self.data.decode("utf-8")


class TopicEvent:
    """A pub/sub event with the accessors OpenFunction's functions call."""

    def __init__(self, event: Event) -> None:
        self._event = event
        self.data: bytes = event.body
        self.extensions: dict[str, Any] = dict(event.extensions)

    def EventID(self) -> str:
        return self._event.id

    def EventType(self) -> str:
        return self._event.type

    def Source(self) -> str:
        return self._event.source

    def Subject(self) -> str:
        return self._event.topic

    def ContentType(self) -> str:
        return self._event.content_type


class UserContext:
    """What an OpenFunction-style function receives."""

    def __init__(self, runtime_context: RuntimeContext, event: Event) -> None:
        self.runtime_context = runtime_context
        """funcd's context of the function (outputs, state, ``user_data``)."""
        self.logger = runtime_context.logger
        self.out = FunctionOut()
        self._event = event

    @property
    def dapr_client(self) -> Any:
        """The shared Dapr SDK client of this worker."""
        return self.runtime_context.outputs.client()  # type: ignore[attr-defined]

    def get_http_request(self) -> Any:
        """The Flask request (HTTP trigger), else None."""
        if self._event.trigger.kind != "http":
            return None
        import flask

        return flask.request._get_current_object() if flask.has_request_context() else None  # type: ignore[attr-defined]

    def get_binding_request(self) -> BindingRequest | None:
        """The input binding event, else None."""
        return BindingRequest(self._event) if self._event.trigger.kind == "binding" else None

    def get_topic_event(self) -> TopicEvent | None:
        """The pub/sub event, else None."""
        return TopicEvent(self._event) if self._event.trigger.kind == "pubsub" else None

    def send(self, output_name: str, data: Any) -> Any:
        """Send ``data`` to the output ``output_name``; returns the sidecar's answer, or the error text."""
        try:
            outputs = self.runtime_context.function.outputs
            comp = outputs.get(output_name)
            if comp is not None and comp.kind == "pubsub":
                body = json.dumps(data).encode()
                return self.runtime_context.outputs.send(
                    body, output_name, None, content_type="application/json"
                )[0]
            return self.runtime_context.send(data, output_name)[0]
        except Exception as exc:
            log.warning("send(%r) failed: %s", output_name, exc)
            return f"An error occurred: {exc}"
