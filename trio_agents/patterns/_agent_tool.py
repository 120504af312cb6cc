"""Agent as tool: a fresh agent per call, behind a tool with a ``prompt`` parameter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from .._errors import AgentError, InvalidArgumentError, ToolError
from .._messages import AgentResult, StopReason
from .._orchestrator import AgentFactory
from .._tools import Tool, tool

__all__ = ["agent_tool"]


def _final_text(result: AgentResult) -> str:
    return result.final_text


def agent_tool(
    factory: AgentFactory,
    *,
    name: str,
    description: str,
    output: Callable[[AgentResult], str] | None = None,
) -> Tool:
    """A tool that runs a fresh agent from ``factory`` on its ``prompt`` argument.

    Every call builds its own agent, so concurrent calls never share an instance (nor a
    conversation). The tool result is ``output(result)`` (default: the final text). An agent
    that fails becomes a tool error naming the agent and the error, and one stopped by its own
    limits (aborted) a tool error saying so: the calling model reads either and carries on.
    Cancelling the caller cancels the agent, and that cancellation propagates untouched.

    :param factory: zero-argument callable returning a new :class:`~trio_agents.Agent`.
    :param name: the tool's name (required: there is no default, the calling model picks
        tools by name).
    :param description: what the tool does, for the model (required, like ``name``).
    :param output: maps the agent's result to the tool's text result.
    :raises InvalidArgumentError: ``factory`` or ``output`` is not callable, or ``name`` is empty.
    """
    if not callable(factory):
        raise InvalidArgumentError(f"agent_tool needs a callable factory, got {factory!r}")
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"agent_tool name must be a non-empty str, got {name!r}")
    if output is not None and not callable(output):
        raise InvalidArgumentError(f"output must be a callable or None, got {output!r}")
    to_text = output if output is not None else _final_text

    async def call(prompt: Annotated[str, "What to ask the agent."]) -> str:
        agent = factory()
        try:
            result = await agent.run(prompt)
        except AgentError as exc:
            raise ToolError(f"agent {agent.name!r} failed: {type(exc).__name__}: {exc}") from exc
        if result.stop_reason is StopReason.ABORTED:
            raise ToolError(f"agent {agent.name!r} was stopped before it answered")
        return to_text(result)

    return tool(call, name=name, description=description)
