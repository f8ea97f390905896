"""The Function model, shared by the runtime and the controller. Pure: no I/O.

- ``context``: ``FunctionContext``, what a running function is wired to;
- ``openfunction``: OpenFunction's context layouts (``FUNC_CONTEXT``, ``FUNC_CONTEXT_V1BETA2``);
- ``spec`` and ``resource``: the ``Function`` resource, read with its real paths, and its FunctionContext;
- ``reader``: the problem-collecting reader behind them; every problem with its path, in one ``ContextError``.
"""

from ..errors import ContextError
from .context import (
    DEFAULT_DAPR_PORT,
    DEFAULT_HTTP_PORT,
    Component,
    Exporter,
    FunctionContext,
    StateStore,
    Tracing,
)
from .openfunction import detect_layout, dump_context, parse_context, parse_context_text
from .resource import function_context, parse_function
from .spec import (
    API_VERSION,
    ComponentSpec,
    DaprOutput,
    DaprRef,
    DaprSettings,
    DaprTrigger,
    Function,
    FunctionSpec,
    Hooks,
    HttpTrigger,
    Input,
    KedaScaleOptions,
    KedaTrigger,
    MetadataItem,
    ObjectMeta,
    Output,
    ScaleOptions,
    Serving,
    State,
    Triggers,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_DAPR_PORT",
    "DEFAULT_HTTP_PORT",
    "Component",
    "ComponentSpec",
    "ContextError",
    "DaprOutput",
    "DaprRef",
    "DaprSettings",
    "DaprTrigger",
    "Exporter",
    "Function",
    "FunctionContext",
    "FunctionSpec",
    "Hooks",
    "HttpTrigger",
    "Input",
    "KedaScaleOptions",
    "KedaTrigger",
    "MetadataItem",
    "ObjectMeta",
    "Output",
    "ScaleOptions",
    "Serving",
    "State",
    "StateStore",
    "Tracing",
    "Triggers",
    "detect_layout",
    "dump_context",
    "function_context",
    "parse_context",
    "parse_context_text",
    "parse_function",
]
