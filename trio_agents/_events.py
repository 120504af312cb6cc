"""Typed events emitted by every layer.

Events are frozen values. Producers hand them to an :data:`EventSink` (a plain synchronous
callable, so emitting never blocks and never yields to the scheduler). The event log of
:mod:`trio_agents._infra` is one such sink.

Every event has ``time`` (seconds on trio's clock) and ``agent`` (the agent's path in the
tree, e.g. ``"lead/researcher"``; ``""`` for events of the system itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeAlias

import attrs

from ._messages import AgentResult, AssistantMessage, ErrorInfo, ToolCallBlock, ToolResultBlock
from ._models import TextDelta, ThinkingDelta, ToolCallDelta


@attrs.frozen(kw_only=True)
class Event:
    """Base class of all events."""

    kind: ClassVar[str] = "event"
    time: float
    """When it happened, in seconds on trio's clock."""
    agent: str
    """Path of the agent it concerns (``""`` for the system)."""


# --------------------------------------------------------------------------- agent loop


@attrs.frozen(kw_only=True)
class RunStarted(Event):
    """An agent run began."""

    kind: ClassVar[str] = "run_started"
    run: int
    """Sequence number of the run on this agent instance (1 for the first)."""


@attrs.frozen(kw_only=True)
class RunFinished(Event):
    """An agent run ended (normally, with an error, or aborted)."""

    kind: ClassVar[str] = "run_finished"
    run: int
    """Sequence number of the run."""
    result: AgentResult
    """The run's result (partial when it failed or was aborted)."""


@attrs.frozen(kw_only=True)
class TurnStarted(Event):
    """A turn (one model call plus its tool calls) began."""

    kind: ClassVar[str] = "turn_started"
    turn: int
    """1-based turn number within the run."""


@attrs.frozen(kw_only=True)
class TurnFinished(Event):
    """A turn ended."""

    kind: ClassVar[str] = "turn_finished"
    turn: int
    """1-based turn number within the run."""


@attrs.frozen(kw_only=True)
class ModelRequested(Event):
    """A request was sent to the model."""

    kind: ClassVar[str] = "model_requested"
    model: str
    """The model's id."""
    attempt: int
    """1 for the first attempt, 2 for the first retry, …"""


@attrs.frozen(kw_only=True)
class ModelResponded(Event):
    """The model answered."""

    kind: ClassVar[str] = "model_responded"
    message: AssistantMessage
    """The model's response."""


@attrs.frozen(kw_only=True)
class ModelDelta(Event):
    """A piece of a streamed model response (only when the agent streams)."""

    kind: ClassVar[str] = "model_delta"
    delta: TextDelta | ThinkingDelta | ToolCallDelta
    """The piece."""


@attrs.frozen(kw_only=True)
class RetryScheduled(Event):
    """A retryable model error will be retried after ``delay`` seconds."""

    kind: ClassVar[str] = "retry_scheduled"
    attempt: int
    """The attempt that failed."""
    delay: float
    """Seconds until the next attempt."""
    error: ErrorInfo
    """The error that is being retried."""


@attrs.frozen(kw_only=True)
class ToolStarted(Event):
    """A tool call began."""

    kind: ClassVar[str] = "tool_started"
    call: ToolCallBlock
    """The call."""


@attrs.frozen(kw_only=True)
class ToolFinished(Event):
    """A tool call ended (successfully or with an error result)."""

    kind: ClassVar[str] = "tool_finished"
    result: ToolResultBlock
    """The result sent back to the model."""
    duration: float
    """Seconds the call took."""


@attrs.frozen(kw_only=True)
class ToolProgress(Event):
    """A running tool reported progress (e.g. an MCP server's ``notifications/progress``)."""

    kind: ClassVar[str] = "tool_progress"
    call_id: str
    """The :attr:`~trio_agents.ToolCallBlock.id` of the call."""
    tool_name: str
    """Name of the tool."""
    progress: float
    """Progress so far (grows with each report)."""
    total: float | None = None
    """The total ``progress`` will reach, if known."""
    message: str | None = None
    """A human-readable note, if any."""


# --------------------------------------------------------------------------- patterns


@attrs.frozen(kw_only=True)
class PatternStarted(Event):
    """A coordination pattern began (``agent`` is the pattern's name, e.g. ``"vote"``)."""

    kind: ClassVar[str] = "pattern_started"
    pattern: str
    """Which pattern: ``"map_reduce"``, ``"vote"``, ``"review_loop"``, ``"swarm.parallel"``,
    ``"swarm.sequential"`` or ``"swarm.debate"``."""
    agents: int
    """How many agents it starts with (items, voters, workers, members)."""


@attrs.frozen(kw_only=True)
class PatternFinished(Event):
    """A coordination pattern ended: with its result, a failure, or cancelled."""

    kind: ClassVar[str] = "pattern_finished"
    pattern: str
    """Which pattern (as in :class:`PatternStarted`)."""
    ok: bool
    """Whether it returned a result."""
    detail: str = ""
    """What it decided (the winner, the approved worker, ...), or why it did not finish
    (``"cancelled"``, or the error's type and message)."""


# --------------------------------------------------------------------------- mailbox


@attrs.frozen(kw_only=True)
class MailboxSent(Event):
    """A message was put in a mailbox (``agent`` is the mailbox's name)."""

    kind: ClassVar[str] = "mailbox_sent"
    queued: int
    """Messages waiting in the mailbox just after (0 when a receiver took it at once)."""


@attrs.frozen(kw_only=True)
class MailboxReceived(Event):
    """A message was taken from a mailbox (``agent`` is the mailbox's name)."""

    kind: ClassVar[str] = "mailbox_received"
    queued: int
    """Messages still waiting in the mailbox."""


@attrs.frozen(kw_only=True)
class MailboxOverflow(Event):
    """A send found its mailbox full (``agent`` is the mailbox's name)."""

    kind: ClassVar[str] = "mailbox_overflow"
    capacity: int
    """The mailbox's capacity."""
    waited: bool
    """``True``: the sender waits for room (``send``, ``broadcast``); ``False``: it was refused
    with :class:`trio.WouldBlock` (``send_nowait``)."""


@attrs.frozen(kw_only=True)
class MailboxClosed(Event):
    """A mailbox was closed (``agent`` is the mailbox's name)."""

    kind: ClassVar[str] = "mailbox_closed"
    queued: int
    """Messages still waiting in it, which receivers can drain."""


EventSink: TypeAlias = Callable[[Event], None]
"""Where events go: a synchronous callable that must not block."""


def all_event_types() -> list[type[Event]]:
    """Every concrete event class defined so far (used by the converter)."""
    found: list[type[Event]] = []
    stack: list[type[Event]] = [Event]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            found.append(sub)
            stack.append(sub)
    return found
