"""Agent as tool: a fresh agent per call, behind a tool with a ``prompt`` (or typed) parameter."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Annotated, Any

from .._agent import AgentSpec
from .._delegation import ModelRunner
from .._errors import AgentError, InvalidArgumentError, ToolError
from .._infra import SharedInfra
from .._journal import run_nested
from .._messages import AgentResult, StopReason
from .._orchestrator import AgentFactory
from .._serde import dump
from .._tools import Tool, tool
from ._common import _build, _check_infra

__all__ = ["agent_tool"]


def _answer(result: AgentResult) -> Any:
    # A structured answer (the agent has an output_type) goes back as its value, which the
    # tool result carries as JSON; a text answer as its text.
    output = result.output
    return result.final_text if output is None or isinstance(output, str) else output


def agent_tool(
    factory: AgentFactory | None = None,
    *,
    spec: AgentSpec | None = None,
    runner: ModelRunner | None = None,
    infra: SharedInfra | None = None,
    name: str | None = None,
    description: str | None = None,
    output: Callable[[AgentResult], Any] | None = None,
    input_type: Any = None,
    output_type: Any = None,
) -> Tool:
    """A tool that runs a fresh agent on each call's argument.

    The agent comes from ``factory``, or from ``spec`` built by ``runner`` (as a delegation's
    specialist is, with ``output_type`` as its :class:`~trio_agents.Agent` output type).
    Every call builds its own agent, so concurrent calls never share an instance (nor a
    conversation). With ``infra``, each agent joins the tree (budget, rate limits, policy,
    log: see :func:`run_sequential`).

    The tool's parameter is ``prompt`` (text), or with ``input_type`` a parameter ``input`` of
    that type (the types of :func:`~trio_agents.tool`): the tool's schema describes it, bad
    arguments are tool errors the calling model reads, and the agent gets the value as JSON
    text. The tool result is ``output(result)``; by default the agent's structured
    :attr:`~trio_agents.AgentResult.output` when it has an output type (``output_type`` with
    a spec, the factory's own agent's otherwise), sent to the model as JSON, else its final
    text. An agent that fails becomes a tool error naming the agent and the
    error, and one stopped by its own limits (aborted) a tool error saying so: the calling
    model reads either and carries on. Cancelling the caller cancels the agent, and that
    cancellation propagates untouched.

    Inside a journaled run (:class:`~trio_agents.RunJournal`) the agent's run is journaled
    under the call (``"<run id>/<call id>"``), as a delegation's specialist is; the tool is
    declared idempotent, so a call a crash cut off runs again and resumes that run, which
    repeats nothing journaled.

    :param factory: zero-argument callable returning a new :class:`~trio_agents.Agent`.
    :param spec: instead of ``factory``: the :class:`~trio_agents.AgentSpec` to build.
    :param runner: the :class:`~trio_agents.ModelRunner` that builds ``spec`` (required with it).
    :param infra: the tree's :class:`~trio_agents.SharedInfra`, or ``None``.
    :param name: the tool's name. Required with ``factory``; defaults to ``spec.name``.
    :param description: what the tool does, for the model. Required with ``factory``;
        defaults to the spec's instructions (``"Ask the <name> agent."`` when they are empty).
    :param output: maps the agent's result to the tool's result.
    :param input_type: the type of the tool's ``input`` parameter (default: a text ``prompt``).
    :param output_type: the agent's output type (only with ``spec``).
    :raises InvalidArgumentError: not exactly one of ``factory`` and ``spec``, ``spec``
        without a ``runner``, ``output_type`` with ``factory``, a missing or empty ``name`` or
        ``description``, ``output`` not callable, or an ``input_type`` the tool schema
        cannot describe.
    """
    if (factory is None) == (spec is None):
        raise InvalidArgumentError("agent_tool needs exactly one of a factory or spec=")
    infra = _check_infra(infra)
    if spec is not None:
        if not isinstance(spec, AgentSpec):
            raise InvalidArgumentError(f"spec must be an AgentSpec, got {type(spec).__name__}")
        if not isinstance(runner, ModelRunner):
            raise InvalidArgumentError(
                f"agent_tool(spec=...) needs runner= a ModelRunner, got {runner!r}"
            )
        name = spec.name if name is None else name
        if description is None:
            description = spec.instructions.strip() or f"Ask the {spec.name} agent."
        build: AgentFactory = functools.partial(
            runner.build, spec, output_type=str if output_type is None else output_type
        )
    else:
        if not callable(factory):
            raise InvalidArgumentError(f"agent_tool needs a callable factory, got {factory!r}")
        if output_type is not None:
            raise InvalidArgumentError(
                "output_type= goes with spec=; give the factory's Agent an output_type instead"
            )
        if description is None:
            raise InvalidArgumentError("agent_tool(factory) needs description= (what it does)")
        build = factory
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"agent_tool name must be a non-empty str, got {name!r}")
    if not isinstance(description, str) or not description:
        raise InvalidArgumentError(
            f"agent_tool description must be a non-empty str, got {description!r}"
        )
    if output is not None and not callable(output):
        raise InvalidArgumentError(f"output must be a callable or None, got {output!r}")
    to_result = output if output is not None else _answer

    async def ask(prompt: str) -> Any:
        agent = _build(build, infra)
        try:
            result = await run_nested(agent, prompt)  # journaled under a journaled call
        except AgentError as exc:
            raise ToolError(f"agent {agent.name!r} failed: {type(exc).__name__}: {exc}") from exc
        if result.stop_reason is StopReason.ABORTED:
            raise ToolError(f"agent {agent.name!r} was stopped before it answered")
        return to_result(result)

    if input_type is None:

        async def call(prompt: Annotated[str, "What to ask the agent."]) -> Any:
            return await ask(prompt)

        return tool(call, name=name, description=description, idempotent=True)

    async def typed(input: Any) -> Any:
        return await ask(json.dumps(dump(input)))

    typed.__annotations__ = {
        "input": Annotated[input_type, "What to ask the agent."],
        "return": Any,
    }
    try:
        return tool(typed, name=name, description=description, idempotent=True)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"agent_tool input_type {input_type!r}: {exc}") from None
