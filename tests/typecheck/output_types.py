"""Checked by mypy (tests/test_output_typing.py): what type checkers infer for output types."""

from __future__ import annotations

from typing import Any, Literal, assert_type

import attrs

from trio_agents import Agent, AgentResult
from trio_agents.testing import ScriptedModel


@attrs.frozen
class City:
    name: str


async def check() -> None:
    model = ScriptedModel([])
    text_agent = Agent(model)
    assert_type(text_agent, Agent[str])
    assert_type(await text_agent.run("hi"), AgentResult[str])
    city_agent = Agent(model, output_type=City)
    assert_type(city_agent, Agent[City])
    result = await city_agent.run("hi")
    assert_type(result, AgentResult[City])
    assert_type(result.output, City | None)
    assert_type(Agent(model, output_type=list[int]), Agent[list[int]])
    assert_type(Agent(model, output_type=Literal["a", "b"]), Agent[Any])
