"""The ``Function`` resource (``funcd.dev/v1alpha1``) as frozen dataclasses: the whole spec.

The shape is OpenFunction's ``core.openfunction.io/v1beta2`` Function (``FunctionSpec`` and
``ServingImpl``), so ported specs read unchanged; funcd adds ``spec.serving.dapr.mode`` and, on Dapr
triggers, ``deadLetterTopic`` and ``metadata``. Field docstrings name the YAML key. Parts that belong to
other APIs (the pod template, KEDA's advanced options, the build) are kept as the mappings they were
written as. Reading lives in ``resource.py``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .context import Metrics, Tracing

API_VERSION = "funcd.dev/v1alpha1"
OPENFUNCTION_API_VERSION = "core.openfunction.io/v1beta2"
API_VERSIONS = (API_VERSION, OPENFUNCTION_API_VERSION)

WorkloadType = Literal["Deployment", "StatefulSet", "Job"]
HttpEngine = Literal["knative", "keda"]
HookPolicy = Literal["Append", "Override"]
DaprMode = Literal["annotations", "container"]
RestartPolicy = Literal["Always", "OnFailure", "Never"]
MetricType = Literal["AverageValue", "Value", "Utilization"]

WORKLOAD_TYPES: tuple[WorkloadType, ...] = ("Deployment", "StatefulSet", "Job")
HTTP_ENGINES: tuple[HttpEngine, ...] = ("knative", "keda")
HOOK_POLICIES: tuple[HookPolicy, ...] = ("Append", "Override")
DAPR_MODES: tuple[DaprMode, ...] = ("annotations", "container")
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("Always", "OnFailure", "Never")
METRIC_TYPES: tuple[MetricType, ...] = ("AverageValue", "Value", "Utilization")


# ---------------------------------------------------------------- Dapr components


@dataclass(frozen=True)
class SecretKeyRef:
    """A value read from a secret (``secretKeyRef``)."""

    name: str
    """``name``: the secret's name."""
    key: str = ""
    """``key``: the key inside the secret."""


@dataclass(frozen=True)
class MetadataItem:
    """One ``metadata`` entry of a Dapr component."""

    name: str
    """``name``."""
    value: Any = None
    """``value``: any JSON value (Dapr's DynamicValue), usually a string; ``None`` when absent."""
    secret_key_ref: SecretKeyRef | None = None
    """``secretKeyRef``: take the value from a secret instead."""
    env_ref: str = ""
    """``envRef``: take the value from this environment variable of daprd instead."""


@dataclass(frozen=True)
class ComponentSpec:
    """A Dapr component's spec (``bindings.<name>``, ``pubsub.<name>``, ``states.<name>.spec``)."""

    type: str
    """``type``, e.g. ``pubsub.redis``."""
    version: str = ""
    """``version``, e.g. ``v1``."""
    metadata: tuple[MetadataItem, ...] = ()
    """``metadata``: the component's settings."""
    ignore_errors: bool = False
    """``ignoreErrors``: daprd starts even when the component fails to initialise."""
    init_timeout: str = ""
    """``initTimeout``, e.g. ``5s``."""


@dataclass(frozen=True)
class State:
    """A state store (``spec.serving.states.<name>``)."""

    spec: ComponentSpec | None = None
    """``spec``: the store to create; ``None`` refers to an existing component of that name."""


# ---------------------------------------------------------------- triggers, inputs, outputs


@dataclass(frozen=True)
class GatewayRef:
    """The Gateway an HTTP route attaches to (``gatewayRef``)."""

    name: str
    """``name``."""
    namespace: str = ""
    """``namespace``; empty: the function's namespace."""


@dataclass(frozen=True)
class Route:
    """How HTTP requests reach the function (``triggers.http.route``)."""

    gateway_ref: GatewayRef | None = None
    """``gatewayRef``."""
    hostnames: tuple[str, ...] = ()
    """``hostnames`` to match."""
    rules: tuple[Mapping[str, Any], ...] = ()
    """``rules``: Gateway API HTTPRouteRules, kept as written."""


@dataclass(frozen=True)
class HttpTrigger:
    """``triggers.http``: the function answers HTTP requests."""

    port: int | None = None
    """``port``; ``None``: 8080. 0 stays 0 (any free port)."""
    route: Route | None = None
    """``route``."""
    engine: HttpEngine | None = None
    """``engine``: ``knative`` or ``keda`` (OpenFunction's HTTP engines)."""


@dataclass(frozen=True)
class DaprTrigger:
    """``triggers.dapr[]``: a pub/sub topic or an input binding that calls the function."""

    name: str
    """``name``: the Dapr component, defined in ``bindings``/``pubsub`` or existing."""
    type: str = ""
    """``type``; empty: the type of the component defined under that name."""
    topic: str = ""
    """``topic`` (pub/sub only)."""
    input_name: str = ""
    """``inputName``: the input's name for the function; empty: ``name``."""
    dead_letter_topic: str = ""
    """``deadLetterTopic`` (funcd): where Dapr sends a message that is dropped or exhausts its retries."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """``metadata`` (funcd): subscription metadata, e.g. ``rawPayload``; bulk subscribe keys
    (``model/bulk.py``) on a pub/sub input."""


@dataclass(frozen=True)
class DaprRef:
    """``dapr``: a reference to a Dapr component (``triggers.inputs[].dapr``)."""

    name: str
    """``name``: the component, defined in ``bindings``/``pubsub``/``states`` or existing."""
    type: str = ""
    """``type``; empty: the type of the component defined under that name."""
    topic: str = ""
    """``topic`` (pub/sub only)."""


@dataclass(frozen=True)
class Input:
    """``triggers.inputs[]``."""

    dapr: DaprRef | None = None
    """``dapr``."""


@dataclass(frozen=True)
class DaprOutput:
    """``outputs[].dapr``: a topic or output binding the function sends to."""

    name: str
    """``name``: the Dapr component, defined in ``bindings``/``pubsub`` or existing."""
    type: str = ""
    """``type``; empty: the type of the component defined under that name."""
    topic: str = ""
    """``topic`` (pub/sub only)."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """``metadata`` sent with every call."""
    operation: str = ""
    """``operation`` (bindings), e.g. ``create``."""
    output_name: str = ""
    """``outputName``: the name for ``context.send``; empty: ``name``."""


@dataclass(frozen=True)
class Output:
    """``outputs[]``."""

    dapr: DaprOutput | None = None
    """``dapr``."""


@dataclass(frozen=True)
class Triggers:
    """``triggers``: what calls the function."""

    http: HttpTrigger | None = None
    """``http``."""
    dapr: tuple[DaprTrigger, ...] = ()
    """``dapr``."""
    inputs: tuple[Input, ...] = ()
    """``inputs``."""


# ---------------------------------------------------------------- scaling


@dataclass(frozen=True)
class HttpScaledObject:
    """``keda.httpScaledObject`` (KEDA HTTP add-on)."""

    target_pending_requests: int | None = None
    """``targetPendingRequests``."""
    cooldown_period: int | None = None
    """``cooldownPeriod``, seconds."""


@dataclass(frozen=True)
class KedaScaledObject:
    """``keda.scaledObject``: scale a Deployment or StatefulSet."""

    polling_interval: int | None = None
    """``pollingInterval``, seconds."""
    cooldown_period: int | None = None
    """``cooldownPeriod``, seconds."""
    advanced: Mapping[str, Any] | None = None
    """``advanced``: KEDA's AdvancedConfig, kept as written."""
    fallback: Mapping[str, Any] | None = None
    """``fallback``: KEDA's Fallback, kept as written."""


@dataclass(frozen=True)
class KedaScaledJob:
    """``keda.scaledJob``: run a Job per batch of events (``workloadType: Job``)."""

    restart_policy: RestartPolicy | None = None
    """``restartPolicy``."""
    polling_interval: int | None = None
    """``pollingInterval``, seconds."""
    successful_jobs_history_limit: int | None = None
    """``successfulJobsHistoryLimit``."""
    failed_jobs_history_limit: int | None = None
    """``failedJobsHistoryLimit``."""
    scaling_strategy: Mapping[str, Any] | None = None
    """``scalingStrategy``: KEDA's ScalingStrategy, kept as written."""


@dataclass(frozen=True)
class AuthenticationRef:
    """``authenticationRef`` of a KEDA trigger."""

    name: str
    """``name`` of the TriggerAuthentication."""
    kind: str = ""
    """``kind``: ``TriggerAuthentication`` (default) or ``ClusterTriggerAuthentication``."""


@dataclass(frozen=True)
class KedaTrigger:
    """``keda.triggers[]``: a KEDA scaler."""

    type: str
    """``type``, e.g. ``kafka``, ``redis``."""
    name: str = ""
    """``name``."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """``metadata``: the scaler's settings."""
    authentication_ref: AuthenticationRef | None = None
    """``authenticationRef``."""
    metric_type: MetricType | None = None
    """``metricType``."""
    use_cached_metrics: bool = False
    """``useCachedMetrics``."""


@dataclass(frozen=True)
class KedaScaleOptions:
    """``scaleOptions.keda``."""

    http_scaled_object: HttpScaledObject | None = None
    """``httpScaledObject``."""
    scaled_object: KedaScaledObject | None = None
    """``scaledObject``."""
    scaled_job: KedaScaledJob | None = None
    """``scaledJob``."""
    triggers: tuple[KedaTrigger, ...] = ()
    """``triggers``: without them no scaler is created."""


@dataclass(frozen=True)
class ScaleOptions:
    """``scaleOptions``."""

    min_replicas: int | None = None
    """``minReplicas``."""
    max_replicas: int | None = None
    """``maxReplicas``."""
    keda: KedaScaleOptions | None = None
    """``keda``."""
    knative: Mapping[str, str] | None = None
    """``knative``: Knative autoscaling annotations (OpenFunction), kept as written."""


# ---------------------------------------------------------------- serving and the resource


@dataclass(frozen=True)
class Hooks:
    """``hooks``: plugins run around every call."""

    pre: tuple[str, ...] = ()
    """``pre``: run before the call, in order."""
    post: tuple[str, ...] = ()
    """``post``: run after the call, in order."""
    policy: HookPolicy = "Append"
    """``policy``: ``Append`` to or ``Override`` the cluster-wide hooks."""


@dataclass(frozen=True)
class DaprSettings:
    """``dapr`` (funcd): how the Dapr sidecar joins the pod."""

    mode: DaprMode = "annotations"
    """``mode``: ``annotations`` (Dapr's injector adds it) or ``container`` (funcd renders it)."""


@dataclass(frozen=True)
class Serving:
    """``spec.serving``: how the function runs."""

    triggers: Triggers = field(default_factory=Triggers)
    """``triggers``."""
    outputs: tuple[Output, ...] = ()
    """``outputs``."""
    bindings: Mapping[str, ComponentSpec] = field(default_factory=dict)
    """``bindings``: Dapr binding components to create, by name."""
    pubsub: Mapping[str, ComponentSpec] = field(default_factory=dict)
    """``pubsub``: Dapr pub/sub components to create, by name."""
    states: Mapping[str, State] = field(default_factory=dict)
    """``states``: Dapr state stores, by name."""
    scale_options: ScaleOptions | None = None
    """``scaleOptions``."""
    hooks: Hooks | None = None
    """``hooks``."""
    tracing: Tracing | None = None
    """``tracing``."""
    metrics: Metrics | None = None
    """``metrics`` (funcd's): serve Prometheus metrics."""
    params: Mapping[str, str] = field(default_factory=dict)
    """``params``: environment variables of the function's container."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """``labels`` of the workload."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """``annotations`` of the workload (``dapr.io/*`` ones configure the sidecar)."""
    template: Mapping[str, Any] | None = None
    """``template``: a pod spec, kept as written; its container ``function`` runs the image."""
    timeout: str = ""
    """``timeout``: how long the workload may take to become ready (a duration, e.g. ``5m``)."""
    workload_type: WorkloadType = "Deployment"
    """``workloadType``: ``Deployment``, ``StatefulSet`` or ``Job``."""
    dapr: DaprSettings = field(default_factory=DaprSettings)
    """``dapr`` (funcd)."""


@dataclass(frozen=True)
class FunctionSpec:
    """``spec``."""

    image: str = ""
    """``image``: the function's image; empty until built."""
    version: str = ""
    """``version``, e.g. ``v1.0.0``."""
    image_credentials: str = ""
    """``imageCredentials.name``: the Secret to pull the image with."""
    build: Mapping[str, Any] | None = None
    """``build``: how to build the image (OpenFunction's builder settings), kept as written."""
    serving: Serving | None = None
    """``serving``."""
    workload_runtime: str = ""
    """``workloadRuntime``: ``OCIContainer`` (default) or ``WasmEdge`` (OpenFunction)."""


@dataclass(frozen=True)
class ObjectMeta:
    """``metadata``: the parts of Kubernetes' ObjectMeta funcd uses."""

    name: str
    """``name``."""
    namespace: str = ""
    """``namespace``."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """``labels``."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """``annotations``."""
    uid: str = ""
    """``uid`` (set by the API server)."""
    generation: int | None = None
    """``generation`` (set by the API server)."""
    resource_version: str = ""
    """``resourceVersion`` (set by the API server)."""


@dataclass(frozen=True)
class Function:
    """A ``Function`` resource."""

    metadata: ObjectMeta
    """``metadata``."""
    spec: FunctionSpec = field(default_factory=FunctionSpec)
    """``spec``."""
    api_version: str = API_VERSION
    """``apiVersion``: ``funcd.dev/v1alpha1`` (OpenFunction's ``core.openfunction.io/v1beta2`` reads too)."""
    kind: Literal["Function"] = "Function"
    """``kind``."""
