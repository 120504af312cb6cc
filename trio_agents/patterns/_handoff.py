"""Handoff: an agent hands the conversation to another one with ``transfer_to_agent``."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from typing import Annotated, ClassVar

import attrs
import trio

from .._agent import current_agent
from .._errors import InvalidArgumentError, ToolError, UsageError
from .._events import Event, EventSink
from .._journal import refuse_unjournaled
from .._messages import (
    AgentResult,
    AssistantMessage,
    Message,
    StopReason,
    TextBlock,
    TransferSignal,
    UserMessage,
)
from .._orchestrator import AgentFactory
from .._tools import Tool, ToolContext, tool

__all__ = [
    "DEFAULT_MAX_HANDOFF_DEPTH",
    "AgentTransferred",
    "Handoff",
    "HandoffResult",
    "transfer_to_agent",
]

DEFAULT_MAX_HANDOFF_DEPTH = 5
"""Transfers a :class:`Handoff` allows in one chain unless told otherwise."""


@attrs.frozen
class _Chain:
    names: tuple[str, ...]
    allowed: tuple[str, ...]
    max_depth: int


_CHAIN: contextvars.ContextVar[_Chain | None] = contextvars.ContextVar(
    "trio_agents_handoff_chain", default=None
)


def _arrow(names: Sequence[str]) -> str:
    return " -> ".join(names)


def _check_transfer(chain: _Chain, target: str) -> None:
    """Raise ToolError (read by the model) when ``chain`` may not go on to ``target``."""
    if target not in chain.allowed:
        raise ToolError(
            f"cannot transfer to {target!r}: not an allowed target "
            f"(allowed: {', '.join(repr(n) for n in chain.allowed) or 'none'})"
        )
    if target == chain.names[-1]:
        raise ToolError(f"cannot transfer to {target!r}: that is you; answer the user yourself")
    if target in chain.names:
        raise ToolError(
            f"cannot transfer to {target!r}: the conversation already went "
            f"{_arrow(chain.names)}, so it would go round in a cycle"
        )
    if len(chain.names) - 1 >= chain.max_depth:
        raise ToolError(
            f"cannot transfer to {target!r}: the conversation already went "
            f"{_arrow(chain.names)}, the most transfers allowed ({chain.max_depth}); "
            "answer the user yourself"
        )


@tool(name="transfer_to_agent")
async def _transfer_to_agent(
    ctx: ToolContext,
    target: Annotated[str, "Name of the agent to hand the conversation to."],
    reason: Annotated[str, "Why that agent should take over."],
    summary: Annotated[str, "What the next agent needs to know (optional)."] = "",
) -> str:
    """Hand the conversation to another agent, which answers the user from here on."""
    agent = current_agent()
    if agent is None:
        raise ToolError("transfer_to_agent works only inside an agent's run")
    chain = _CHAIN.get()
    if chain is None:  # outside a Handoff: any other agent, within the default depth
        chain = _Chain((agent.name,), (target,), DEFAULT_MAX_HANDOFF_DEPTH)
    _check_transfer(chain, target)
    signal = TransferSignal(target=target, message=summary, reason=reason)
    agent.request_transfer(signal, call_id=ctx.call.id)
    return (
        f"transferring to {target!r} (when one turn asks for several transfers, "
        "the first in the turn counts)"
    )


transfer_to_agent: Tool = _transfer_to_agent
"""The ``transfer_to_agent`` tool (arguments ``target``, ``reason``, optional ``summary``).

Give it to an agent to let it hand the conversation over: the agent's run ends, after the
tools of that turn, with :attr:`~trio_agents.StopReason.TRANSFER` and a
:class:`~trio_agents.TransferSignal` carrying the conversation. Inside :meth:`Handoff.run` the
target must be one of the handoff's agents, not the calling agent nor any agent already in the
chain, and the chain may not be longer than its ``max_depth``; a refused transfer is a tool
error the model reads (naming the allowed targets or the chain), and the run goes on. When one
turn asks for several transfers, the first in the model's response counts.
"""


@attrs.frozen(kw_only=True)
class AgentTransferred(Event):
    """An agent handed the conversation over (``agent`` is the source's name)."""

    kind: ClassVar[str] = "agent_transferred"
    target: str
    """The agent that takes over."""
    reason: str
    """Why, as the source gave it."""
    depth: int
    """1 for the first transfer of the chain, 2 for the next, ..."""


@attrs.frozen(kw_only=True)
class HandoffResult:
    """What :meth:`Handoff.run` produced."""

    chain: tuple[str, ...]
    """The agents that held the conversation, in order (the first is the starting agent)."""
    results: tuple[AgentResult, ...]
    """One result per agent of :attr:`chain`; all but the last ended with a transfer."""

    @property
    def final(self) -> AgentResult:
        """The last agent's result."""
        return self.results[-1]

    @property
    def output(self) -> str:
        """The last agent's final text."""
        return self.results[-1].final_text


def _handoff_messages(signal: TransferSignal) -> list[Message]:
    """What the next agent sees: the conversation's text, then a note about the transfer."""
    kept: list[Message] = []
    for message in signal.messages:
        if isinstance(message, UserMessage):
            kept.append(message)
        elif isinstance(message, AssistantMessage) and message.text:
            kept.append(AssistantMessage(content=(TextBlock(message.text),)))
    note = f"[transferred from {signal.source}: {signal.reason}]"
    if signal.message:
        note += f" {signal.message}"
    kept.append(UserMessage.text(note))
    return kept


class Handoff:
    """Runs a conversation across agents that hand it to each other with ``transfer_to_agent``.

    Each agent is built fresh from its factory when the conversation reaches it and runs in
    the calling task. The agents must have the :data:`transfer_to_agent` tool to hand over.
    The next agent gets the conversation's user messages and text answers (tool calls left
    out) and a note naming the source, the reason and the summary.

    :param agents: factory per agent name; these names are the allowed targets.
    :param max_depth: transfers allowed in one chain (``>= 0``).
    :param event_sink: receives an :class:`AgentTransferred` per transfer.

    :attr:`results` keeps every finished run, and the interrupted run's partial result when
    :meth:`run` fails or is cancelled (outside cancellation leaves as the bare
    :class:`trio.Cancelled`).
    """

    def __init__(
        self,
        agents: Mapping[str, AgentFactory],
        *,
        max_depth: int = DEFAULT_MAX_HANDOFF_DEPTH,
        event_sink: EventSink | None = None,
    ) -> None:
        if not isinstance(agents, Mapping) or not agents:
            raise InvalidArgumentError(
                f"Handoff needs a non-empty mapping of agent name -> factory, got {agents!r}"
            )
        for name, factory in agents.items():
            if not isinstance(name, str) or not name or not callable(factory):
                raise InvalidArgumentError(
                    f"Handoff agents must map a non-empty name to a zero-argument factory, "
                    f"got {name!r}: {factory!r}"
                )
        if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < 0:
            raise InvalidArgumentError(f"max_depth must be an int >= 0, got {max_depth!r}")
        self.agents = dict(agents)
        self.max_depth = max_depth
        self.event_sink = event_sink
        self.results: list[AgentResult] = []
        """Results of the latest :meth:`run` so far (partial ones included)."""

    async def run(self, start: str, input: str | Message | Sequence[Message]) -> HandoffResult:
        """Run ``start`` on ``input``, then whoever it transfers to, until one answers.

        :raises InvalidArgumentError: ``start`` is not one of the agents.
        :raises UsageError: an agent transferred (by calling
            :meth:`~trio_agents.Agent.request_transfer` itself) to a target the chain refuses.
        """
        if start not in self.agents:
            raise InvalidArgumentError(
                f"unknown start agent {start!r} (agents: {', '.join(sorted(self.agents))})"
            )
        refuse_unjournaled("a Handoff")
        self.results = []
        chain = [start]
        allowed = tuple(self.agents)
        messages: str | Message | Sequence[Message] = input
        while True:
            agent = self.agents[chain[-1]]()
            token = _CHAIN.set(_Chain(tuple(chain), allowed, self.max_depth))
            try:
                result = await agent.run(messages)
            except BaseException:
                if agent.last_result is not None:
                    self.results.append(agent.last_result)
                raise
            finally:
                _CHAIN.reset(token)
            self.results.append(result)
            signal = result.transfer
            if result.stop_reason is not StopReason.TRANSFER or signal is None:
                return HandoffResult(chain=tuple(chain), results=tuple(self.results))
            try:
                _check_transfer(_Chain(tuple(chain), allowed, self.max_depth), signal.target)
            except ToolError as exc:
                raise UsageError(
                    f"agent {chain[-1]!r} transferred against the rules: {exc}"
                ) from None
            if self.event_sink is not None:
                self.event_sink(
                    AgentTransferred(
                        time=trio.current_time(),
                        agent=chain[-1],
                        target=signal.target,
                        reason=signal.reason,
                        depth=len(chain),
                    )
                )
            chain.append(signal.target)
            messages = _handoff_messages(signal)
