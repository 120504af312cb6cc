"""Agent as tool: a fresh agent per call, behind a tool whose parameter is the agent's input."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Annotated, Any

from .._agent import AgentSpec
from .._delegation import ModelRunner, _summary
from .._errors import AgentError, InvalidArgumentError, ToolError
from .._infra import SharedInfra
from .._messages import AgentResult, StopReason
from .._models import OutputMode
from .._orchestrator import AgentFactory
from .._output import output_spec
from .._serde import dump
from .._tools import Tool, tool

__all__ = ["agent_tool"]


def _answer(result: AgentResult) -> Any:
    # A structured answer goes back as its value (the tool result is its JSON); text as text.
    return result.output if result.output is not None else result.final_text


def agent_tool(
    agent: AgentFactory | AgentSpec,
    *,
    name: str | None = None,
    description: str | None = None,
    runner: ModelRunner | None = None,
    infra: SharedInfra | None = None,
    input_type: Any = str,
    output_type: Any = str,
    output: Callable[[AgentResult], Any] | None = None,
) -> Tool:
    """A tool that runs a fresh agent on each call and answers with the agent's answer.

    Every call builds its own agent, so concurrent calls never share an instance (nor a
    conversation). An agent that fails becomes a tool error naming the agent and the error,
    and one stopped by its own limits (aborted) a tool error saying so: the calling model
    reads either and carries on. Cancelling the caller cancels the agent, and that
    cancellation propagates untouched.

    **Input.** With ``input_type=str`` (the default) the tool has one parameter, ``prompt``,
    the text the agent is asked. With another ``input_type`` (an attrs class, dataclass,
    TypedDict, … — any type an ``output_type`` may be) the parameter is ``input``, its JSON
    schema is the type's, the model's argument is validated against it (a mismatch is a tool
    error the model reads, and the agent is not built), and the agent is asked the value as
    JSON text.

    **Output.** The tool answers the agent's structured :attr:`~trio_agents.AgentResult.output`
    (as JSON) when its agent has an ``output_type``, else its final text; ``output=`` maps the
    result to anything else a tool may return.

    :param agent: a zero-argument factory returning a new :class:`~trio_agents.Agent`, or an
        :class:`~trio_agents.AgentSpec` that ``runner`` builds (as a delegation would).
    :param name: the tool's name; default the spec's name (required with a factory).
    :param description: what the tool does, for the model; default the spec's
        ``metadata["description"]`` or the first line of its instructions (required with a
        factory, or when the spec has neither).
    :param runner: builds the agents of a spec (required with a spec, refused with a factory).
    :param infra: with a spec, the tree's :class:`~trio_agents.SharedInfra`: the agents draw
        from its budget, go through its rate limiter and policies, and log to its event log.
    :param input_type: the type of the tool's argument (default ``str``: a ``prompt``).
    :param output_type: with a spec, the type the agent answers (its ``output_type``); a
        factory's agents have their own.
    :param output: maps the agent's result to the tool's result.
    :raises InvalidArgumentError: naming what is wrong: ``agent`` is neither, a name or
        description is missing or empty, ``runner``/``infra``/``output_type`` do not fit the
        kind of ``agent``, ``output`` is not callable, or a type is not supported.
    """
    if isinstance(agent, AgentSpec):
        if not isinstance(runner, ModelRunner):
            raise InvalidArgumentError(
                f"agent_tool of AgentSpec {agent.name!r} needs runner=ModelRunner(...) to build "
                f"its agents, got {type(runner).__name__}"
            )
        if infra is not None and not isinstance(infra, SharedInfra):
            raise InvalidArgumentError(
                f"infra must be a SharedInfra or None, got {type(infra).__name__}"
            )
        output_spec(output_type, OutputMode.TOOL)  # an unsupported type is refused now
        name = agent.name if name is None else name
        if description is None:
            description = _summary(agent) or None
            if description is None:
                raise InvalidArgumentError(
                    f"agent_tool of AgentSpec {agent.name!r} needs description=: the spec has "
                    "no metadata['description'] and no instructions to take it from"
                )
        factory: AgentFactory = functools.partial(
            runner.build, agent, infra=infra, output_type=output_type
        )
    elif callable(agent):
        for given, what in ((runner, "runner"), (infra, "infra")):
            if given is not None:
                raise InvalidArgumentError(
                    f"{what}= is for an AgentSpec; a factory builds its agents itself"
                )
        if output_type is not str:
            raise InvalidArgumentError(
                "output_type= is for an AgentSpec; a factory's agents have their own "
                "(Agent(..., output_type=...)), which the tool answers with"
            )
        if name is None or description is None:
            raise InvalidArgumentError(
                "agent_tool of a factory needs name= and description= (the model chooses "
                "tools by them); an AgentSpec provides defaults"
            )
        factory = agent
    else:
        raise InvalidArgumentError(
            f"agent_tool needs an agent factory or an AgentSpec, got {agent!r}"
        )
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"agent_tool name must be a non-empty str, got {name!r}")
    if not isinstance(description, str) or not description:
        raise InvalidArgumentError(
            f"agent_tool description must be a non-empty str, got {description!r}"
        )
    if output is not None and not callable(output):
        raise InvalidArgumentError(f"output must be a callable or None, got {output!r}")
    answer = output if output is not None else _answer

    async def ask(question: str) -> Any:
        built = factory()
        try:
            result = await built.run(question)
        except AgentError as exc:
            raise ToolError(f"agent {built.name!r} failed: {type(exc).__name__}: {exc}") from exc
        if result.stop_reason is StopReason.ABORTED:
            raise ToolError(f"agent {built.name!r} was stopped before it answered")
        return answer(result)

    if input_type is str:

        async def call(prompt: Annotated[str, "What to ask the agent."]) -> Any:
            return await ask(prompt)

        return tool(call, name=name, description=description)

    output_spec(input_type, OutputMode.TOOL)  # the same types as an output; refused by name

    async def call_typed(input: Any) -> Any:
        # The tool machinery has validated and structured ``input`` against its annotation.
        return await ask(json.dumps(dump(input), ensure_ascii=False))

    call_typed.__annotations__ = {
        "input": Annotated[input_type, "The value to hand the agent."],
        "return": Any,
    }
    return tool(call_typed, name=name, description=description)
