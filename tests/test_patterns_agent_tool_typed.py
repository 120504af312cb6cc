"""agent_tool with typed input and output, and built from an AgentSpec."""

from __future__ import annotations

import json
from typing import TypedDict

import attrs
import pytest
import trio

from trio_agents import (
    Agent,
    AgentSpec,
    Budget,
    ModelRunner,
    SharedInfra,
    ToolResultBlock,
    ToolResultMessage,
    UsageLimits,
    UserMessage,
)
from trio_agents.patterns import agent_tool
from trio_agents.testing import ScriptedModel, hang, tool_call


@attrs.frozen
class Query:
    city: str
    days: int


@attrs.frozen
class Forecast:
    city: str
    high: float


class Place(TypedDict):
    name: str


def results_of(messages: object) -> dict[str, ToolResultBlock]:
    return {
        b.tool_name: b
        for m in messages  # type: ignore[attr-defined]
        if isinstance(m, ToolResultMessage)
        for b in m.results
    }


async def test_a_typed_input_is_validated_and_handed_to_the_agent_as_json() -> None:
    built: list[Agent] = []

    def forecaster() -> Agent:
        agent = Agent(ScriptedModel(["sunny"]), name="forecaster")
        built.append(agent)
        return agent

    ask = agent_tool(forecaster, name="forecast", description="Forecast.", input_type=Query)
    assert ask.parameters["properties"]["input"]["properties"] == {
        "city": {"type": "string"},
        "days": {"type": "integer"},
    }
    lead = Agent(
        ScriptedModel(
            [
                tool_call("forecast", {"input": {"city": "Oslo", "days": "two"}}, id="bad")
                + tool_call("forecast", {"input": {"city": "Oslo", "days": 2}}, id="good"),
                "done",
            ]
        ),
        tools=[ask],
    )
    result = await lead.run("go")
    blocks = {
        b.tool_call_id: b
        for m in result.messages
        if isinstance(m, ToolResultMessage)
        for b in m.results
    }
    # The bad argument never reached an agent: one agent was built, for the good call.
    assert blocks["bad"].is_error and "days" in blocks["bad"].content
    assert not blocks["good"].is_error and blocks["good"].content == "sunny"
    assert len(built) == 1
    asked = built[0].messages[0]
    assert isinstance(asked, UserMessage)
    assert json.loads(asked.content[0].text) == {"city": "Oslo", "days": 2}  # type: ignore[union-attr]


async def test_an_agent_with_an_output_type_answers_the_tool_with_its_value_as_json() -> None:
    def forecaster() -> Agent[Forecast]:
        return Agent(
            ScriptedModel([tool_call("final_result", {"city": "Oslo", "high": 3.5})]),
            name="forecaster",
            output_type=Forecast,
        )

    lead = Agent(
        ScriptedModel([tool_call("forecast", {"prompt": "Oslo"}), "done"]),
        tools=[agent_tool(forecaster, name="forecast", description="Forecast.")],
    )
    result = await lead.run("go")
    block = results_of(result.messages)["forecast"]
    assert not block.is_error
    assert json.loads(block.content) == {"city": "Oslo", "high": 3.5}


async def test_from_a_spec_the_trees_budget_holds() -> None:
    spec = AgentSpec(name="helper", instructions="Help.")
    helper_model = ScriptedModel(["first answer", "second answer"])
    infra = SharedInfra(budget=Budget(UsageLimits(requests=1)))
    ask = agent_tool(spec=spec, runner=ModelRunner(helper_model), infra=infra)
    lead = Agent(
        ScriptedModel(
            [
                tool_call("helper", {"prompt": "a"}, id="c1"),
                tool_call("helper", {"prompt": "b"}, id="c2"),
                "done",
            ]
        ),
        tools=[ask],
    )
    result = await lead.run("go")
    blocks = [b for m in result.messages if isinstance(m, ToolResultMessage) for b in m.results]
    assert [b.is_error for b in blocks] == [False, True]
    assert blocks[0].content == "first answer"
    assert "BudgetExhausted" in blocks[1].content  # the tree's budget allowed one request
    assert len(helper_model.requests) == 1


async def test_cancelling_the_caller_cancels_a_typed_agent_and_stays_bare() -> None:
    ask = agent_tool(
        lambda: Agent(ScriptedModel([hang()]), name="slow"),
        name="slow",
        description="Slow.",
        input_type=Query,
    )
    lead = Agent(
        ScriptedModel([tool_call("slow", {"input": {"city": "x", "days": 1}})]), tools=[ask]
    )
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.testing.wait_all_tasks_blocked)
            scope.deadline = trio.current_time()  # cut off at its first wait
            with pytest.raises(trio.Cancelled) as caught:
                await lead.run("go")
    assert type(caught.value) is trio.Cancelled
