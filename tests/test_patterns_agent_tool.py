"""agent_tool from a spec, with typed input and output, and its defaults."""

from __future__ import annotations

import json

import attrs
import pytest

from trio_agents import (
    Agent,
    AgentSpec,
    Budget,
    InvalidArgumentError,
    ModelRequest,
    ModelRunner,
    SharedInfra,
    TextBlock,
    ToolResultMessage,
    UsageLimits,
    UserMessage,
)
from trio_agents.patterns import agent_tool
from trio_agents.testing import FunctionModel, ScriptedModel, tool_call


@attrs.frozen
class Question:
    """A question for the expert."""

    topic: str
    depth: int


@attrs.frozen
class Answer:
    """The expert's answer."""

    summary: str
    sources: int


def last_text(request: ModelRequest) -> str:
    last = request.messages[-1]
    assert isinstance(last, UserMessage)
    block = last.content[0]
    assert isinstance(block, TextBlock)
    return block.text


async def test_spec_defaults_name_and_description_and_types_both_ends() -> None:
    asked: list[str] = []

    def expert(request: ModelRequest) -> object:
        asked.append(last_text(request))
        return tool_call("final_result", {"summary": "trio is structured", "sources": 2})

    runner = ModelRunner(FunctionModel(expert))
    spec = AgentSpec(name="expert", instructions="Answers questions about trio.")
    ask = agent_tool(spec=spec, runner=runner, input_type=Question, output_type=Answer)
    assert ask.name == "expert"
    assert ask.description == "Answers questions about trio."
    schema = ask.parameters
    assert schema["required"] == ["input"]
    assert schema["properties"]["input"]["properties"]["depth"]["type"] == "integer"
    got = await ask.function(input=Question("trio", 2))
    assert got == Answer("trio is structured", 2)
    assert json.loads(asked[0]) == {"topic": "trio", "depth": 2}


async def test_typed_arguments_are_validated_by_the_tool_schema() -> None:
    runner = ModelRunner(ScriptedModel(["never"]))
    ask = agent_tool(spec=AgentSpec(name="expert"), runner=runner, input_type=Question)
    assert ask.description == "Ask the expert agent."
    lead = Agent(
        ScriptedModel([tool_call("expert", {"input": {"topic": "trio", "depth": "deep"}}), "ok"]),
        tools=[ask],
    )
    result = await lead.run("go")
    reply = next(m for m in result.messages if isinstance(m, ToolResultMessage)).results[0]
    assert reply.is_error
    assert "depth" in reply.content


async def test_a_spec_tool_draws_from_the_tree_budget() -> None:
    infra = SharedInfra(budget=Budget(UsageLimits(agents=1)))
    runner = ModelRunner(ScriptedModel(["one", "two"]))
    ask = agent_tool(spec=AgentSpec(name="e"), runner=runner, infra=infra)
    assert await ask.function(prompt="a") == "one"
    lead = Agent(ScriptedModel([tool_call("e", {"prompt": "b"}), "ok"]), tools=[ask])
    result = await lead.run("go")
    reply = next(m for m in result.messages if isinstance(m, ToolResultMessage)).results[0]
    assert reply.is_error and "agent budget exhausted" in reply.content


def test_bad_arguments_name_what_is_wrong() -> None:
    runner = ModelRunner(ScriptedModel([]))

    def factory() -> Agent:
        return Agent(ScriptedModel([]))

    with pytest.raises(InvalidArgumentError, match="exactly one of a factory or spec="):
        agent_tool(factory, spec=AgentSpec(name="x"), runner=runner, name="x")
    with pytest.raises(InvalidArgumentError, match="needs runner= a ModelRunner"):
        agent_tool(spec=AgentSpec(name="x"))
    with pytest.raises(InvalidArgumentError, match="needs description="):
        agent_tool(factory, name="x")
    with pytest.raises(InvalidArgumentError, match="output_type= goes with spec="):
        agent_tool(factory, name="x", description="d", output_type=Answer)
    with pytest.raises(InvalidArgumentError, match="name must be a non-empty str"):
        agent_tool(factory, description="d")
