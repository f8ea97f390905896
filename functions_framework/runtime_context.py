"""RuntimeContext: the ``context`` a handler receives."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol

from .errors import OutputError

if TYPE_CHECKING:
    from .model import FunctionContext
    from .plugins import Hooks
    from .settings import Settings


class Outputs(Protocol):
    """Where ``context.send`` and ``context.state`` go (Dapr, or a recorder in tests)."""

    def send(
        self,
        data: Any,
        output: str | None,
        metadata: dict[str, str] | None,
        content_type: str | None = None,
    ) -> list[Any]: ...

    def state(self, name: str) -> Any: ...

    def close(self) -> None: ...


class RuntimeContext:
    """What a handler sees of the function it runs in. One per worker process."""

    def __init__(
        self,
        function: FunctionContext,
        outputs: Outputs | None = None,
        settings: Settings | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.function = function
        """The parsed FunctionContext."""
        self.user_data = SimpleNamespace()
        """Free space for ``init_context`` to keep clients, caches and settings."""
        self.logger = logging.getLogger(f"function.{function.name}")
        """A logger whose records carry the function name, execution id and trace id."""
        self._outputs = outputs
        self._settings = settings
        self._hooks = hooks

    @property
    def function_name(self) -> str:
        return self.function.name

    @property
    def version(self) -> str:
        return self.function.version

    @property
    def outputs(self) -> Outputs:
        if self._outputs is None:
            if not (self.function.outputs or self.function.states):
                raise OutputError(
                    f"function {self.function.name!r} has no outputs or state stores; "
                    "declare them under 'outputs'/'states' in its context (function.yaml)"
                )
            from .outputs import DaprOutputs

            outbound = self._hooks.outbound if self._hooks is not None and self._hooks.has_outbound else None
            address = self._settings.dapr_address if self._settings is not None else None
            self._outputs = DaprOutputs(self.function, address, outbound)
        return self._outputs

    def send(self, data: Any, output: str | None = None, metadata: dict[str, str] | None = None) -> list[Any]:
        """Publish to a topic or invoke a binding named in ``outputs``; with no name, to every output.

        Returns the responses (binding data, or None for topics), one per output. Raises ``OutputError``.
        """
        return self.outputs.send(data, output, metadata)

    def state(self, name: str) -> Any:
        """The state store named ``name`` in the context's ``states``."""
        return self.outputs.state(name)

    def close(self) -> None:
        if self._outputs is not None:
            self._outputs.close()
