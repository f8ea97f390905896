"""RuntimeContext: the ``context`` a handler receives."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol

from .errors import OutputError

if TYPE_CHECKING:
    from .context import FunctionContext
    from .dapr_client import SidecarAddress


class Outputs(Protocol):
    """Where ``context.send`` and ``context.state`` go (Dapr, or a recorder in tests)."""

    def send(self, data: Any, output: str | None, metadata: dict[str, str] | None) -> list[Any]: ...

    def state(self, name: str) -> Any: ...

    def close(self) -> None: ...


class RuntimeContext:
    """What a handler sees of the function it runs in. One per worker process."""

    def __init__(
        self,
        function: FunctionContext,
        outputs: Outputs | None = None,
        dapr_address: SidecarAddress | str | None = None,
    ) -> None:
        self.function = function
        """The parsed FunctionContext."""
        self.user_data = SimpleNamespace()
        """Free space for ``init_context`` to keep clients, caches and settings."""
        self.logger = logging.getLogger(f"function.{function.name}")
        """A logger whose records carry the function name, execution id and trace id."""
        self._outputs = outputs
        self._dapr_address = dapr_address

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

            self._outputs = DaprOutputs(self.function, self._dapr_address)
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
