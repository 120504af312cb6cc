"""Content blocks, messages, usage, cost and results.

Every class here is an immutable value (``attrs.frozen``) and round-trips exactly
through :data:`trio_agents.converter` (see :mod:`trio_agents._serde`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeAlias

import attrs
from typing_extensions import TypeVar  # a default (PEP 696) before Python 3.13

JSONValue: TypeAlias = Any
"""Any value :func:`json.dumps` accepts (str-keyed dicts, lists, str, numbers, bool, None)."""


def _user_content(value: Iterable[UserContent]) -> tuple[UserContent, ...]:
    return tuple(value)


def _assistant_content(value: Iterable[AssistantContent]) -> tuple[AssistantContent, ...]:
    return tuple(value)


def _tool_results(value: Iterable[ToolResultBlock]) -> tuple[ToolResultBlock, ...]:
    return tuple(value)


def _messages(value: Iterable[Message]) -> tuple[Message, ...]:
    return tuple(value)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _freeze_mapping(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value) if value is not None else {}


# --------------------------------------------------------------------------- blocks


@attrs.frozen
class TextBlock:
    """Plain text from a user or a model."""

    text: str
    """The text."""


@attrs.frozen
class ImageBlock:
    """An image, either inline (base64 ``data``) or by ``url``."""

    media_type: str
    """MIME type, e.g. ``"image/png"``."""
    data: str | None = None
    """Base64-encoded bytes, or ``None`` when the image is given by :attr:`url`."""
    url: str | None = None
    """Where the image can be fetched, or ``None`` when it is inline."""


@attrs.frozen
class ThinkingBlock:
    """A model's visible reasoning (Anthropic "thinking", OpenAI "reasoning")."""

    thinking: str
    """The reasoning text."""
    signature: str | None = None
    """Provider signature that must be sent back unchanged, if any."""


@attrs.frozen(kw_only=True)
class ToolCallBlock:
    """The model asks for a tool to be run."""

    id: str
    """Identifier that the matching :class:`ToolResultBlock` refers to."""
    name: str
    """Name of the tool."""
    arguments: dict[str, JSONValue] = attrs.field(factory=dict, converter=_freeze_mapping)
    """Arguments, already decoded from JSON into a JSON object."""
    raw_arguments: str | None = None
    """The undecodable argument text when the model produced invalid JSON (then
    :attr:`arguments` is empty); ``None`` when the arguments decoded cleanly."""


@attrs.frozen(kw_only=True)
class ToolResultBlock:
    """The outcome of one tool call, sent back to the model."""

    tool_call_id: str
    """The :attr:`ToolCallBlock.id` this answers."""
    content: str
    """What the tool returned (JSON-encoded when it returned structured data), or the error text."""
    is_error: bool = False
    """Whether the tool call failed (unknown tool, bad arguments, timeout, denial, exception)."""
    tool_name: str = ""
    """Name of the tool that ran, for readability of transcripts."""


ContentBlock: TypeAlias = TextBlock | ImageBlock | ThinkingBlock | ToolCallBlock | ToolResultBlock
UserContent: TypeAlias = TextBlock | ImageBlock
AssistantContent: TypeAlias = TextBlock | ThinkingBlock | ToolCallBlock


# --------------------------------------------------------------------------- usage and cost


@attrs.frozen(kw_only=True)
class Usage:
    """Token counts, addable with ``+`` and summable with :func:`sum`."""

    requests: int = 0
    """Number of model requests."""
    input_tokens: int = 0
    """Input (prompt) tokens, not counting cache reads and writes."""
    output_tokens: int = 0
    """Output (completion) tokens."""
    cache_read_tokens: int = 0
    """Input tokens served from the provider's prompt cache."""
    cache_write_tokens: int = 0
    """Input tokens written to the provider's prompt cache."""
    total_tokens: int = attrs.field(
        default=attrs.Factory(
            lambda self: (
                self.input_tokens
                + self.output_tokens
                + self.cache_read_tokens
                + self.cache_write_tokens
            ),
            takes_self=True,
        )
    )
    """All tokens; defaults to the sum of the four counts above."""

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            requests=self.requests + other.requests,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )

    def __radd__(self, other: object) -> Usage:
        # Lets ``sum(usages)`` start from 0.
        if other == 0:
            return self
        return NotImplemented


@attrs.frozen(kw_only=True)
class Cost:
    """Money spent, in US dollars, addable like :class:`Usage`."""

    input: float = 0.0
    """Cost of input tokens."""
    output: float = 0.0
    """Cost of output tokens."""
    cache_read: float = 0.0
    """Cost of cache reads."""
    cache_write: float = 0.0
    """Cost of cache writes."""
    total: float = attrs.field(
        default=attrs.Factory(
            lambda self: self.input + self.output + self.cache_read + self.cache_write,
            takes_self=True,
        )
    )
    """All of it; defaults to the sum of the four parts."""

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            input=self.input + other.input,
            output=self.output + other.output,
            cache_read=self.cache_read + other.cache_read,
            cache_write=self.cache_write + other.cache_write,
            total=self.total + other.total,
        )

    def __radd__(self, other: object) -> Cost:
        if other == 0:
            return self
        return NotImplemented


class StopReason(enum.Enum):
    """Why a model turn, or a whole run, ended."""

    STOP = "stop"
    """The model gave a final answer."""
    LENGTH = "length"
    """The model hit its output token limit."""
    TOOL_USE = "tool_use"
    """The model asked for tools."""
    ABORTED = "aborted"
    """The run was stopped by its owner (:meth:`Agent.abort`, a handle, a supervisor)."""
    ERROR = "error"
    """The run ended with an error (see :attr:`AgentResult.error`)."""
    TRANSFER = "transfer"
    """The agent handed the conversation to another agent (see :attr:`AgentResult.transfer`)."""
    APPROVAL_REQUIRED = "approval_required"
    """The run stopped because tool calls wait for a person's decision (see
    :attr:`AgentResult.pending_approvals` and :meth:`Agent.resume
    <trio_agents.Agent.resume>`)."""


# --------------------------------------------------------------------------- messages


@attrs.frozen
class SystemMessage:
    """Instructions for the model."""

    content: str
    """The instructions."""


@attrs.frozen
class UserMessage:
    """What the user (or a parent agent) says."""

    content: tuple[UserContent, ...] = attrs.field(converter=_user_content)
    """Text and images, in order."""

    @classmethod
    def text(cls, text: str) -> UserMessage:
        """A user message with a single text block."""
        return cls((TextBlock(text),))


@attrs.frozen(kw_only=True)
class AssistantMessage:
    """One response from a model."""

    content: tuple[AssistantContent, ...] = attrs.field(converter=_assistant_content)
    """Text, thinking and tool calls, in the order the model produced them."""
    usage: Usage = Usage()
    """Tokens this response used."""
    stop_reason: StopReason = StopReason.STOP
    """Why the model stopped."""
    model: str = ""
    """Identifier of the model that produced it."""

    @property
    def text(self) -> str:
        """All text blocks joined with newlines."""
        return "\n".join(b.text for b in self.content if isinstance(b, TextBlock))

    @property
    def tool_calls(self) -> tuple[ToolCallBlock, ...]:
        """The tool calls, in order."""
        return tuple(b for b in self.content if isinstance(b, ToolCallBlock))


@attrs.frozen
class ToolResultMessage:
    """The results of every tool call of one assistant turn, in the order of the calls."""

    results: tuple[ToolResultBlock, ...] = attrs.field(converter=_tool_results)
    """One result per tool call."""


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolResultMessage


# --------------------------------------------------------------------------- results


@attrs.frozen(kw_only=True)
class ErrorInfo:
    """A serialisable description of an :class:`~trio_agents.AgentError`."""

    type: str
    """The error's class name, e.g. ``"ModelThrottled"``."""
    message: str
    """The error's message."""
    retryable: bool = False
    """Whether retrying could succeed."""
    retry_after: float | None = None
    """Seconds the provider asked us to wait, if it said."""


@attrs.frozen(kw_only=True)
class TransferSignal:
    """A request to hand the conversation to another agent."""

    target: str
    """Name of the agent to transfer to."""
    message: str = ""
    """What to tell the target (the transferring agent's summary, if it gave one)."""
    reason: str = ""
    """Why the agent transferred."""
    source: str = ""
    """Name of the agent that transferred (set by the agent when its run ends)."""
    messages: tuple[Message, ...] = attrs.field(default=(), converter=_messages)
    """The transferring agent's whole conversation when its run ended (set by the agent)."""


def _call_ids(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


# The default (Any) keeps a bare ``AgentResult`` or ``Agent`` annotation valid: a loaded
# result holds its output as JSON data.
@attrs.frozen(kw_only=True)
class PendingApproval:
    """A tool call that waits for a person's decision."""

    call_id: str
    """The :attr:`ToolCallBlock.id` of the call; an :class:`ApprovalDecision` names it."""
    tool: str
    """The tool's name."""
    arguments: dict[str, JSONValue] = attrs.field(factory=dict, converter=_freeze_mapping)
    """The call's arguments, as the model gave them."""
    agent: str = ""
    """Path of the agent that asked (``"lead/researcher"`` for a specialist)."""
    via: tuple[str, ...] = attrs.field(default=(), converter=_call_ids)
    """The ``delegate`` tool call ids that lead from the agent holding this value down to
    :attr:`agent`, outermost first: ``()`` for the agent's own call, ``("d1", "d7")`` for a
    call of a specialist's specialist (the lead's call ``d1`` ran the specialist, whose call
    ``d7`` ran the one that asked)."""


@attrs.frozen(kw_only=True)
class ApprovalDecision:
    """A person's answer to a :class:`PendingApproval`."""

    call_id: str
    """The call this decides."""
    approved: bool
    """Whether the call may run."""
    reason: str = ""
    """Why (sent to the model when the call is denied)."""
    agent: str = ""
    """Path of the agent whose call this decides (:attr:`PendingApproval.agent`); ``""``
    matches whichever pending call has :attr:`call_id`, which must then be only one."""


def _pending(value: Iterable[PendingApproval]) -> tuple[PendingApproval, ...]:
    return tuple(value)


OutputT = TypeVar("OutputT", default=Any)
"""The type of an agent's final answer (:attr:`AgentResult.output`)."""


@attrs.frozen(kw_only=True)
class AgentResult(Generic[OutputT]):
    """What one :meth:`Agent.run <trio_agents.Agent.run>` produced.

    Generic in the agent's output type for type checkers: ``Agent[Person].run()`` returns an
    ``AgentResult[Person]``, whose :attr:`output` is a ``Person``.
    """

    messages: tuple[Message, ...] = attrs.field(default=(), converter=_messages)
    """The messages this run added to the conversation (input included), in order."""
    stop_reason: StopReason = StopReason.STOP
    """Why the run ended."""
    usage: Usage = Usage()
    """Tokens used by this run."""
    cost: Cost = Cost()
    """Money spent by this run."""
    error: ErrorInfo | None = None
    """The error that ended the run, if any."""
    transfer: TransferSignal | None = None
    """The transfer the agent asked for, if it ended with :attr:`StopReason.TRANSFER`."""
    duration: float = 0.0
    """Seconds from start to end on trio's clock."""
    unpriced_models: tuple[str, ...] = attrs.field(default=(), converter=_names)
    """Models whose price was unknown (or not looked up), so :attr:`cost` leaves them out."""
    pending_approvals: tuple[PendingApproval, ...] = attrs.field(default=(), converter=_pending)
    """The calls waiting for a decision when the run stopped with
    :attr:`StopReason.APPROVAL_REQUIRED` (empty otherwise)."""
    held_results: tuple[ToolResultBlock, ...] = attrs.field(default=(), converter=_tool_results)
    """Results of the calls of the same turn that did not need approval: they ran, and are
    sent to the model with the decided ones when the run is resumed."""
    output: OutputT | None = None
    """The final answer as a value of the agent's output type: the final text for a text
    agent, a structured value for an agent with an ``output_type``; ``None`` when the run
    ended without one (aborted, failed, transferred). The converter dumps it by its own
    class and loads it back as JSON data."""

    @property
    def final_text(self) -> str:
        """Text of the last assistant message ("" if there is none)."""
        for message in reversed(self.messages):
            if isinstance(message, AssistantMessage):
                return message.text
        return ""

    @property
    def turns(self) -> int:
        """Number of model responses in this run."""
        return sum(1 for m in self.messages if isinstance(m, AssistantMessage))

    @property
    def tool_call_count(self) -> int:
        """Number of tool calls the model made in this run."""
        return sum(len(m.tool_calls) for m in self.messages if isinstance(m, AssistantMessage))

    @property
    def ok(self) -> bool:
        """True when the run ended without an error."""
        return self.error is None
