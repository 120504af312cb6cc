"""The :class:`Model` protocol: one request in, one assistant message out.

Providers implement it one per module (``trio_agents.models.*``); test doubles live in
:mod:`trio_agents.testing`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs

from ._history import request_messages
from ._messages import AssistantMessage, JSONValue, Message


@attrs.frozen(kw_only=True)
class ToolDefinition:
    """What a model is told about a tool."""

    name: str
    """The tool's name, as the model must call it."""
    description: str = ""
    """What the tool does, for the model."""
    parameters: dict[str, JSONValue] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}
    )
    """JSON schema of the arguments object."""


def _tool_definitions(value: Iterable[ToolDefinition]) -> tuple[ToolDefinition, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class ModelSettings:
    """Per-request knobs; ``None`` means "the provider's default"."""

    max_tokens: int | None = None
    """Upper bound on output tokens."""
    temperature: float | None = None
    """Sampling temperature."""
    seed: int | None = None
    """Sampling seed, where the provider supports it."""
    extra: dict[str, JSONValue] = attrs.field(factory=dict)
    """Provider-specific settings passed through unchanged."""


class OutputMode(enum.Enum):
    """How a model is asked for a structured final answer (see :class:`OutputSchema`)."""

    NATIVE = "native"
    """The provider's own structured output: the final answer is a JSON text that matches
    :attr:`OutputSchema.schema` (OpenAI ``response_format`` with a ``json_schema``, which
    llama.cpp's server also honours)."""
    TOOL = "tool"
    """A final-result tool: the agent adds a tool named :attr:`OutputSchema.name` whose
    arguments are the answer, and the model ends the run by calling it."""


@attrs.frozen(kw_only=True)
class OutputSchema:
    """The structured answer an agent wants from a model (:attr:`ModelRequest.output`).

    A model that has a native structured-output mode uses it when :attr:`mode` is
    :attr:`OutputMode.NATIVE`; with :attr:`OutputMode.TOOL` the final-result tool is already
    among :attr:`ModelRequest.tools`, and a provider may force the model to call a tool.
    """

    name: str
    """Name of the schema, and of the final-result tool in :attr:`OutputMode.TOOL`."""
    schema: dict[str, JSONValue]
    """JSON schema of the answer; always an object (other types are wrapped in an object
    with one ``"response"`` property)."""
    description: str = ""
    """What the answer is, for the model."""
    mode: OutputMode = OutputMode.NATIVE
    """How the answer is asked for."""


@attrs.frozen(kw_only=True)
class ModelRequest:
    """Everything a model needs for one response."""

    system: str | None = None
    """The system prompt."""
    messages: Sequence[Message] = attrs.field(default=(), converter=request_messages)
    """The conversation so far, read-only. An agent shares its history with the request
    instead of copying it (a view that compares equal to the tuple of the same messages);
    any other sequence given is copied into a tuple."""
    tools: tuple[ToolDefinition, ...] = attrs.field(default=(), converter=_tool_definitions)
    """Tools the model may call."""
    settings: ModelSettings = ModelSettings()
    """Request settings."""
    output: OutputSchema | None = None
    """The structured final answer wanted, or ``None`` for a text answer. Models without
    native structured output may ignore it: the agent validates the answer either way."""


# --------------------------------------------------------------------------- streaming


@attrs.frozen
class TextDelta:
    """A piece of text from the model."""

    text: str
    """The new text."""


@attrs.frozen
class ThinkingDelta:
    """A piece of the model's reasoning."""

    thinking: str
    """The new reasoning text."""


@attrs.frozen(kw_only=True)
class ToolCallDelta:
    """A piece of a tool call: the first delta of a call carries ``id`` and ``name``."""

    index: int
    """Position of the tool call in the response."""
    id: str | None = None
    """The call id (first delta only)."""
    name: str | None = None
    """The tool name (first delta only)."""
    arguments: str = ""
    """A fragment of the JSON arguments text."""


@attrs.frozen
class StreamDone:
    """The last event of every stream: the complete message."""

    message: AssistantMessage
    """The whole response, as :meth:`Model.request` would have returned it."""


StreamEvent: TypeAlias = TextDelta | ThinkingDelta | ToolCallDelta | StreamDone


@runtime_checkable
class Model(Protocol):
    """A language model.

    Implementations must be cancellation-safe: cancelling the calling scope aborts the
    request at once. Errors are raised as :class:`~trio_agents.ModelError` subclasses so
    that the agent loop can decide whether to retry.

    Optionally, a model class may set ``native_output = True`` to say that it honours
    :attr:`ModelRequest.output` with :attr:`OutputMode.NATIVE`; an agent whose
    ``output_mode`` is ``"auto"`` then asks it natively, and through a final-result tool
    otherwise.
    """

    @property
    def model_id(self) -> str:
        """Identifier of the model, e.g. ``"openai:gpt-4o-mini"``."""
        ...

    async def request(self, request: ModelRequest) -> AssistantMessage:
        """Send one request and return the model's response."""
        ...

    def stream(
        self, request: ModelRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        """Send one request and stream the response.

        Use as ``async with model.stream(req) as events: async for event in events: ...``;
        the last event is always :class:`StreamDone` with the complete message.
        """
        ...


# Classes whose instances passed the protocol check: a runtime-checkable isinstance costs
# ~8 µs on Python 3.11, which every spawn, restart and delegation would pay.
_MODEL_CLASSES: set[type] = set()


def check_model(model: Any, *, argument: str = "model") -> Model:
    """Raise :class:`~trio_agents.InvalidArgumentError` unless ``model`` is a :class:`Model`.

    A class whose instance passed once is trusted after that (its methods are class
    attributes; ``model_id`` may be an instance attribute, which is checked every time).
    """
    cls = type(model)
    if cls in _MODEL_CLASSES and hasattr(model, "model_id"):
        return model  # type: ignore[no-any-return]
    if isinstance(model, Model):
        _MODEL_CLASSES.add(cls)
    else:
        # Imported here, on the error path only: an import statement costs ~0.3 µs per
        # call, and this check runs at every spawn, restart and delegation.
        from ._errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"{argument} must implement the trio_agents.Model protocol "
            f"(model_id, request(), stream()); got {type(model).__name__}"
        )
    return model


def native_output(model: Any) -> bool:
    """Whether ``model`` declares native structured output (``native_output = True``)."""
    return getattr(model, "native_output", False) is True
