"""The tracing plugin's settings, from the FunctionContext and the standard ``OTEL_*`` variables.

``from_sources(context, environ)`` is the ONE place where the plugin reads the environment: the
plugin (its factory, and its start-up ``check``) calls it with ``os.environ``
(``plugin._environment``). This departs, on purpose and only here, from the house rule that only
``functions_framework/cli.py`` reads ``os.environ``: the OpenTelemetry variables are a standard
interface operators set on pods, and they belong to the tracing plugin, not to the runtime.
The environment overrides the context.

Read from the environment:

- ``OTEL_SDK_DISABLED`` (``true`` turns tracing off), ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (else the context's ``samplingRate``: a
  parent-based trace-id ratio below 1);
- ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is), ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``/v1/traces`` is
  appended for ``http/protobuf``), and ``_PROTOCOL``, ``_HEADERS``, ``_COMPRESSION``, ``_TIMEOUT`` (each
  in its ``OTEL_EXPORTER_OTLP_TRACES_*`` and ``OTEL_EXPORTER_OTLP_*`` form; the TRACES one wins);
- ``OTEL_BSP_SCHEDULE_DELAY`` (ms, default 1000), ``OTEL_BSP_MAX_QUEUE_SIZE`` (2048) and
  ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (512): the batch span processor;
- ``POD_NAME``, ``POD_NAMESPACE``: the pod's name and namespace (the controller sets them through the
  downward API) for ``k8s.pod.name``, ``k8s.namespace.name`` and ``faas.instance``;
- SkyWalking: ``SW_AGENT_COLLECTOR_BACKEND_SERVICES`` (the OAP address, as OpenFunction sets it) and
  ``SW_AGENT_NAME`` (overrides the service name).

Timeouts: the context's ``exporter.timeout`` is a duration (``500ms``, ``10s``, ``1m``);
``OTEL_EXPORTER_OTLP_TIMEOUT`` is milliseconds, as the OpenTelemetry specification says. Every bad value
raises ``PluginLoadError`` naming the key, what was expected and what was found.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from functions_framework.errors import PluginLoadError
from functions_framework.model import FunctionContext

Provider = Literal["opentelemetry", "skywalking"]
Protocol = Literal["grpc", "http/protobuf"]
Compression = Literal["gzip", ""]
PROTOCOLS: tuple[Protocol, ...] = ("grpc", "http/protobuf")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_TIMEOUT = 5.0
"""Seconds one export may take (the collector is never waited for by a call)."""
OAP_OTLP_PORT = 11800
"""The SkyWalking OAP's gRPC port, which also receives OTLP."""
POD_NAME_ENV = "POD_NAME"
POD_NAMESPACE_ENV = "POD_NAMESPACE"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


@dataclass(frozen=True)
class TracingConfig:
    """What the plugin does, resolved from the context and the environment."""

    enabled: bool
    """False when ``OTEL_SDK_DISABLED=true`` (the plugin then does nothing)."""
    provider: Provider
    """``opentelemetry`` or ``skywalking`` (adds the ``sw8`` propagator)."""
    endpoint: str
    """Where spans are exported, with a scheme (``http://host:4317``, ``http://host:4318/v1/traces``);
    '' when no collector is named (nothing is recorded or exported; the trace context still flows)."""
    protocol: Protocol
    """OTLP over ``grpc`` or ``http/protobuf``."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Headers (gRPC metadata) sent with every export."""
    compression: Compression = ""
    """``gzip`` or no compression."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds one export may take."""
    sampler: str = "parentbased_always_on"
    """One of ``SAMPLERS``."""
    sampler_arg: float = 1.0
    """The ratio of ``traceidratio`` samplers."""
    resource: Mapping[str, str] = field(default_factory=dict)
    """Resource attributes: service, FaaS and Kubernetes attributes."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Attributes added to every span."""
    baggage: Mapping[str, str] = field(default_factory=dict)
    """Baggage added to what every call propagates."""
    schedule_delay_ms: int = 1000
    """Milliseconds between two exports of the batch span processor."""
    max_queue: int = 2048
    """Spans held while the collector is slow; more are dropped."""
    max_batch: int = 512
    """Spans per export."""

    @property
    def service_name(self) -> str:
        return self.resource.get("service.name", "")


def parse_duration(text: str, key: str) -> float:
    """``500ms`` / ``10s`` / ``1m`` / ``10`` (seconds) → seconds."""
    m = _DURATION.match(text)
    if not m:
        raise PluginLoadError(f"tracing: {key}: expected a duration such as '10s' or '500ms', found {text!r}")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value * 60 if m.group(2) == "m" else value


def parse_pairs(text: str, key: str, decode: bool = False) -> dict[str, str]:
    """``k=v,k2=v2`` → dict (values URL-decoded when ``decode``; the W3C baggage style)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise PluginLoadError(
                f"tracing: {key}: expected 'key=value' pairs separated by ',', found {item!r}"
            )
        out[name.strip()] = unquote(value.strip()) if decode else value.strip()
    return out


def _protocol(text: str, key: str) -> Protocol:
    value = text.strip().lower()
    if value == "grpc":
        return "grpc"
    if value == "http/protobuf":
        return "http/protobuf"
    raise PluginLoadError(f"tracing: {key}: expected one of {', '.join(PROTOCOLS)}, found {text!r}")


def _compression(text: str, key: str) -> Compression:
    value = text.strip().lower()
    if value in ("", "none"):
        return ""
    if value == "gzip":
        return "gzip"
    raise PluginLoadError(f"tracing: {key}: expected 'gzip' or 'none', found {text!r}")


def with_scheme(address: str, default_port: int | None = None) -> str:
    """``host:port`` → ``http://host:port``; a first address of a comma list; a port added if missing."""
    address = address.split(",")[0].strip()
    if "://" not in address:
        address = "http://" + address
    parts = urlsplit(address)
    if default_port is not None and parts.port is None:
        address = f"{parts.scheme}://{parts.hostname}:{default_port}{parts.path}"
    return address


def _http_traces_path(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return endpoint if parts.path not in ("", "/") else endpoint.rstrip("/") + "/v1/traces"


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip() != "":
            return name, value
    return None


def resource_attributes(
    context: FunctionContext, environ: Mapping[str, str], provider: Provider
) -> dict[str, str]:
    """Service, FaaS and Kubernetes resource attributes for this worker process."""
    pid = os.getpid()
    pod, namespace = environ.get(POD_NAME_ENV, ""), environ.get(POD_NAMESPACE_ENV, "")
    host = socket.gethostname()
    attrs: dict[str, str] = {}
    env_attrs = environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    attrs.update(parse_pairs(env_attrs, "OTEL_RESOURCE_ATTRIBUTES", decode=True))
    name = context.name
    if environ.get("OTEL_SERVICE_NAME"):
        name = environ["OTEL_SERVICE_NAME"]
    if provider == "skywalking" and environ.get("SW_AGENT_NAME"):
        name = environ["SW_AGENT_NAME"]
    attrs["service.name"] = name
    attrs["faas.name"] = context.name
    if context.version:
        attrs.setdefault("service.version", context.version)
        attrs["faas.version"] = context.version
    attrs["faas.instance"] = pod or f"{host}-{pid}"
    attrs.setdefault("service.instance.id", f"{pod or host}-{pid}")
    if pod:
        attrs["k8s.pod.name"] = pod
    if namespace:
        attrs["k8s.namespace.name"] = namespace
    return attrs


def from_sources(context: FunctionContext, environ: Mapping[str, str]) -> TracingConfig:
    """The effective settings: the context's ``tracing`` section, overridden by the environment."""
    tracing = context.tracing
    exporter = tracing.exporter if tracing else None
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    provider_text = tracing.provider if tracing else "opentelemetry"
    if provider_text not in ("opentelemetry", "skywalking"):
        raise PluginLoadError(
            f"tracing.provider: expected 'opentelemetry' or 'skywalking', found {provider_text!r}"
        )
    provider: Provider = "skywalking" if provider_text == "skywalking" else "opentelemetry"

    found = _first(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if found:
        protocol = _protocol(found[1], found[0])
    elif exporter and exporter.protocol:
        protocol = _protocol(exporter.protocol, "tracing.provider.exporter.protocol")
    else:
        protocol = "grpc"

    if found := _first(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        endpoint = with_scheme(found[1])
    elif found := _first(environ, "OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = with_scheme(found[1])
        endpoint = _http_traces_path(endpoint) if protocol == "http/protobuf" else endpoint
    elif provider == "skywalking":
        oap = tracing.oap_server if tracing else ""
        oap = oap or environ.get("SW_AGENT_COLLECTOR_BACKEND_SERVICES", "")
        if not oap:
            raise PluginLoadError(
                "tracing.provider.oapServer: expected the SkyWalking OAP address (host:port) for provider "
                "'skywalking', found nothing (nor SW_AGENT_COLLECTOR_BACKEND_SERVICES)"
            )
        endpoint = with_scheme(oap, OAP_OTLP_PORT)
        if protocol == "http/protobuf":
            endpoint = _http_traces_path(endpoint)
    elif exporter and exporter.endpoint:
        endpoint = with_scheme(exporter.endpoint)
        endpoint = _http_traces_path(endpoint) if protocol == "http/protobuf" else endpoint
    else:
        endpoint = ""  # no collector named: the context still propagates, nothing is exported

    if found := _first(environ, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"):
        headers = parse_pairs(found[1], found[0], decode=True)
    else:
        headers = parse_pairs(exporter.headers if exporter else "", "tracing.provider.exporter.headers")
    headers = {k.lower(): v for k, v in headers.items()}

    if found := _first(environ, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"):
        compression = _compression(found[1], found[0])
    else:
        compression = _compression(
            exporter.compression if exporter else "", "tracing.provider.exporter.compression"
        )

    if found := _first(environ, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        if not found[1].strip().isdigit():
            raise PluginLoadError(
                f"tracing: {found[0]}: expected milliseconds (e.g. 10000), found {found[1]!r}"
            )
        timeout = int(found[1]) / 1000
    elif exporter and exporter.timeout:
        timeout = parse_duration(exporter.timeout, "tracing.provider.exporter.timeout")
    else:
        timeout = DEFAULT_TIMEOUT
    if timeout <= 0:
        raise PluginLoadError(f"tracing: export timeout: expected more than 0s, found {timeout:g}s")

    # The context's samplingRate (also the function's daprd's) unless the environment names a sampler.
    rate = tracing.sampling_rate if tracing else 1.0
    default_sampler = "parentbased_always_on" if rate >= 1.0 else "parentbased_traceidratio"
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or default_sampler
    if sampler not in SAMPLERS:
        raise PluginLoadError(
            f"tracing: OTEL_TRACES_SAMPLER: expected one of {', '.join(SAMPLERS)}, found {sampler!r}"
        )
    arg_text = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        sampler_arg = float(arg_text) if arg_text else rate
    except ValueError:
        sampler_arg = -1.0
    if not 0.0 <= sampler_arg <= 1.0:
        raise PluginLoadError(
            f"tracing: OTEL_TRACES_SAMPLER_ARG: expected a ratio from 0 to 1, found {arg_text!r}"
        )

    batch = {
        name: _positive_int(environ, name, default)
        for name, default in (
            ("OTEL_BSP_SCHEDULE_DELAY", 1000),
            ("OTEL_BSP_MAX_QUEUE_SIZE", 2048),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
        )
    }
    return TracingConfig(
        schedule_delay_ms=batch["OTEL_BSP_SCHEDULE_DELAY"],
        max_queue=batch["OTEL_BSP_MAX_QUEUE_SIZE"],
        max_batch=min(batch["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"], batch["OTEL_BSP_MAX_QUEUE_SIZE"]),
        enabled=not disabled,
        provider=provider,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        compression=compression,
        timeout=timeout,
        sampler=sampler,
        sampler_arg=sampler_arg,
        resource=resource_attributes(context, environ, provider),
        tags=dict(tracing.tags) if tracing else {},
        baggage=dict(tracing.baggage) if tracing else {},
    )


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) == 0:
        raise PluginLoadError(f"tracing: {name}: expected a whole number above 0, found {text!r}")
    return int(text)
