"""Structured output: ``Agent(..., output_type=T)``."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Literal, TypedDict

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentResult,
    InvalidArgumentError,
    ModelRequest,
    OutputMode,
    OutputValidationError,
    StopReason,
    ToolResultMessage,
    UserMessage,
    dump,
    load,
    tool,
)
from trio_agents.testing import FunctionModel, ScriptedModel, tool_call


@attrs.frozen
class City:
    """A city and its population."""

    name: str
    population: int
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float


class Movie(TypedDict):
    title: str
    year: int


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


# (output type, a value of it, that value as JSON data)
CASES: list[tuple[Any, Any, Any]] = [
    (City, City("Lyon", 520_000, ("fr",)), {"name": "Lyon", "population": 520_000, "tags": ["fr"]}),
    (Point, Point(1.5, -2.0), {"x": 1.5, "y": -2.0}),
    (Movie, Movie(title="Alien", year=1979), {"title": "Alien", "year": 1979}),
    (int, 42, 42),
    (float, 0.25, 0.25),
    (bool, False, False),
    (list[str], ["a", "b"], ["a", "b"]),
    (list[City], [City("Oslo", 700_000)], [{"name": "Oslo", "population": 700_000, "tags": []}]),
    (Literal["yes", "no"], "no", "no"),
    (Colour, Colour.GREEN, "green"),
    (int | str, "seven", "seven"),
    (City | Point, Point(0.0, 1.0), {"x": 0.0, "y": 1.0}),
]
IDS = [
    "attrs",
    "dataclass",
    "typeddict",
    "int",
    "float",
    "bool",
    "list",
    "list-attrs",
    "literal",
    "enum",
    "union-primitive",
    "union-records",
]


def _record(tp: Any) -> bool:
    return tp in (City, Point, Movie)


def _answer(tp: Any, data: Any) -> dict[str, Any]:
    """The final-result arguments (or the native JSON answer) for ``data``."""
    return data if _record(tp) else {"response": data}


@pytest.mark.parametrize(("output_type", "value", "data"), CASES, ids=IDS)
async def test_every_output_type_through_the_final_result_tool(
    output_type: Any, value: Any, data: Any
) -> None:
    model = ScriptedModel([tool_call("final_result", _answer(output_type, data))])
    agent = Agent(model, output_type=output_type, output_mode="tool")
    result = await agent.run("go")
    assert result.output == value
    assert type(result.output) is type(value)
    assert result.stop_reason is StopReason.STOP
    # The call is answered, so the history stays a valid conversation.
    assert isinstance(result.messages[-1], ToolResultMessage)
    assert not result.messages[-1].results[0].is_error
    request = model.requests[0]
    assert request.output is not None
    assert request.output.mode is OutputMode.TOOL
    assert [t.name for t in request.tools] == ["final_result"]
    assert request.tools[0].parameters == request.output.schema


@pytest.mark.parametrize(("output_type", "value", "data"), CASES, ids=IDS)
async def test_every_output_type_through_native_output(
    output_type: Any, value: Any, data: Any
) -> None:
    model = ScriptedModel([json.dumps(_answer(output_type, data))])
    agent = Agent(model, output_type=output_type, output_mode="native")
    result = await agent.run("go")
    assert result.output == value
    request = model.requests[0]
    assert request.output is not None
    assert request.output.mode is OutputMode.NATIVE
    assert request.tools == ()  # no final-result tool in native mode
    # The schema is always an object; non-records are wrapped in {"response": ...}.
    assert request.output.schema["type"] == "object"
    assert ("response" in request.output.schema["properties"]) is not _record(output_type)


async def test_schema_comes_from_the_tool_schema_machinery() -> None:
    model = ScriptedModel([tool_call("final_result", {"name": "Rome", "population": 1})])
    agent = Agent(model, output_type=City, output_mode="tool")
    await agent.run("go")
    output = model.requests[0].output
    assert output is not None
    assert output.schema == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "population": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}, "default": []},
        },
        "required": ["name", "population"],
        "additionalProperties": False,
        "description": "A city and its population.",
    }
    assert output.description == "A city and its population."


async def test_auto_mode_follows_the_models_declaration() -> None:
    class NativeModel(ScriptedModel):
        native_output = True

    native = NativeModel(['{"response": 3}'])
    assert (await Agent(native, output_type=int).run("go")).output == 3
    assert native.requests[0].output is not None
    assert native.requests[0].output.mode is OutputMode.NATIVE
    plain = ScriptedModel([tool_call("final_result", {"response": 3})])
    assert (await Agent(plain, output_type=int).run("go")).output == 3
    assert plain.requests[0].output is not None
    assert plain.requests[0].output.mode is OutputMode.TOOL


async def test_text_agent_output_is_the_final_text() -> None:
    model = ScriptedModel(["hello"])
    result = await Agent(model).run("hi")
    assert result.output == "hello"
    assert model.requests[0].output is None


async def test_invalid_answer_is_retried_with_what_was_wrong() -> None:
    model = ScriptedModel(
        [
            tool_call("final_result", {"name": "Rome", "population": "many"}),
            tool_call("final_result", {"name": "Rome", "population": 2_800_000}),
        ]
    )
    agent = Agent(model, output_type=City, output_mode="tool", output_retries=1)
    result = await agent.run("go")
    assert result.output == City("Rome", 2_800_000)
    # The model read the problem, naming the field, as the result of its bad call.
    retry = model.requests[1].messages[-1]
    assert isinstance(retry, ToolResultMessage)
    assert retry.results[0].is_error
    assert "$.population" in retry.results[0].content
    assert "expected an integer" in retry.results[0].content


async def test_invalid_native_answer_is_retried_as_a_user_message() -> None:
    model = ScriptedModel(["not json", '{"response": ["a"]}'])
    agent = Agent(model, output_type=list[str], output_mode="native")
    result = await agent.run("go")
    assert result.output == ["a"]
    retry = model.requests[1].messages[-1]
    assert isinstance(retry, UserMessage)
    assert "not valid JSON" in retry.content[0].text  # type: ignore[union-attr]


async def test_answering_text_in_tool_mode_is_a_retry() -> None:
    model = ScriptedModel(["the answer is 4", tool_call("final_result", {"response": 4})])
    result = await Agent(model, output_type=int, output_mode="tool").run("go")
    assert result.output == 4
    retry = model.requests[1].messages[-1]
    assert isinstance(retry, UserMessage)
    assert "final_result" in retry.content[0].text  # type: ignore[union-attr]


async def test_retries_exhausted_end_the_run_with_output_validation_error() -> None:
    model = ScriptedModel(
        [
            tool_call("final_result", {"response": "one"}),
            tool_call("final_result", {"response": "two"}),
            tool_call("final_result", {"response": "three"}),
        ]
    )
    agent = Agent(model, output_type=int, output_mode="tool", output_retries=2)
    with pytest.raises(OutputValidationError, match="output_retries=2") as info:
        await agent.run("go")
    error = info.value
    assert not error.retryable
    assert "expected an integer" in error.problems
    assert error.result is not None
    assert error.result is agent.last_result
    assert error.result.stop_reason is StopReason.ERROR
    assert error.result.output is None
    assert error.result.turns == 3
    assert model.remaining == 0


async def test_zero_output_retries_fails_at_the_first_bad_answer() -> None:
    model = ScriptedModel(['{"response": "x"}'])
    agent = Agent(model, output_type=int, output_mode="native", output_retries=0)
    with pytest.raises(OutputValidationError):
        await agent.run("go")


@tool
async def lookup(city: str) -> int:
    """Population of a city."""
    return len(city) * 1000


async def test_tools_run_before_the_final_result() -> None:
    model = ScriptedModel(
        [
            tool_call("lookup", {"city": "Nice"}),
            tool_call("final_result", {"name": "Nice", "population": 4000}),
        ]
    )
    agent = Agent(model, tools=[lookup], output_type=City, output_mode="tool")
    result = await agent.run("go")
    assert result.output == City("Nice", 4000)
    assert [t.name for t in model.requests[0].tools] == ["lookup", "final_result"]


async def test_other_calls_beside_a_valid_final_result_are_not_run() -> None:
    calls: list[str] = []

    @tool
    async def record(note: str) -> str:
        """Record a note."""
        calls.append(note)
        return "ok"

    def answer(request: ModelRequest) -> Any:
        return tool_call("record", {"note": "x"}) + tool_call("final_result", {"response": 1})

    agent = Agent(FunctionModel(answer), tools=[record], output_type=int, output_mode="tool")
    result = await agent.run("go")
    assert result.output == 1
    assert calls == []
    last = result.messages[-1]
    assert isinstance(last, ToolResultMessage)
    assert [r.is_error for r in last.results] == [True, False]
    assert "not run" in last.results[0].content


@pytest.mark.parametrize(
    ("output_type", "named"),
    [(set[int], "set[int]"), (object, "object"), (dict[int, str], "dict[int, str]")],
)
def test_unsupported_output_type_is_rejected_at_construction(output_type: Any, named: str) -> None:
    with pytest.raises(InvalidArgumentError, match="output_type") as info:
        Agent(ScriptedModel([]), output_type=output_type)
    assert named in str(info.value)
    assert "supported:" in str(info.value)


def test_bad_output_options_are_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="output_mode must be one of"):
        Agent(ScriptedModel([]), output_type=int, output_mode="json")  # type: ignore[call-overload]
    with pytest.raises(InvalidArgumentError, match="output_retries must be an int >= 0"):
        Agent(ScriptedModel([]), output_type=int, output_retries=-1)


def test_a_tool_named_like_the_final_result_tool_is_rejected() -> None:
    @tool
    async def final_result(x: int) -> int:
        """Clash."""
        return x

    with pytest.raises(InvalidArgumentError, match="final_result"):
        Agent(ScriptedModel([]), tools=[final_result], output_type=int, output_mode="tool")


cities = st.builds(
    City,
    name=st.text(max_size=10),
    population=st.integers(min_value=0, max_value=10**12),
    tags=st.lists(st.text(max_size=5), max_size=3).map(tuple),
)


@given(cities)
def test_result_with_output_round_trips_through_the_converter(city: City) -> None:
    result = AgentResult(output=city, stop_reason=StopReason.STOP)
    data = json.loads(json.dumps(dump(result)))
    loaded = load(data, AgentResult)
    # The output comes back as JSON data; loading it into the output type gives the value.
    assert loaded.output == dump(city)
    assert load(loaded.output, City) == city
    assert attrs.evolve(loaded, output=city) == result


def _request_for(agent: Agent[Any]) -> ModelRequest:
    output = agent._output
    assert output is not None
    tools = (output.tool,) if output.schema.mode is OutputMode.TOOL else ()
    return ModelRequest(messages=[UserMessage.text("go")], tools=tools, output=output.schema)


def test_openai_asks_through_response_format() -> None:
    pytest.importorskip("openai")
    from trio_agents.models.openai import OpenAIModel

    model = OpenAIModel("gpt-4o-mini", api_key="k")
    agent = Agent(model, output_type=City)  # auto: OpenAIModel declares native output
    request = _request_for(agent)
    params = model.build_params(request)
    assert "tools" not in params
    assert params["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "final_result",
            "description": "A city and its population.",
            "schema": request.output.schema,  # type: ignore[union-attr]
        },
    }
    assert "response_format" not in model.build_params(ModelRequest())


def test_anthropic_forces_a_tool_call_for_the_final_result() -> None:
    pytest.importorskip("anthropic")
    from trio_agents.models.anthropic import AnthropicModel

    model = AnthropicModel("claude-test", api_key="k")
    agent = Agent(model, output_type=City)  # auto: no native output, the final-result tool
    params = model.build_params(_request_for(agent))
    assert [t["name"] for t in params["tools"]] == ["final_result"]
    assert params["tool_choice"] == {"type": "any"}
    assert "tool_choice" not in model.build_params(ModelRequest())


# Values of several output types, with the type they belong to.
typed_values = st.one_of(
    cities.map(lambda c: (City, c)),
    st.integers().map(lambda i: (int, i)),
    st.lists(st.text(max_size=5), max_size=4).map(lambda v: (list[str], v)),
    (st.integers() | st.text(max_size=5)).map(lambda v: (int | str, v)),
    st.sampled_from(Colour).map(lambda c: (Colour, c)),
    st.sampled_from(["yes", "no"]).map(lambda v: (Literal["yes", "no"], v)),
)


@given(typed_values, st.sampled_from(["tool", "native"]))
def test_any_value_round_trips_through_a_model_answer(
    typed_value: tuple[Any, Any], mode: Literal["tool", "native"]
) -> None:
    output_type, value = typed_value
    answer = _answer(output_type, dump(value))
    step = tool_call("final_result", answer) if mode == "tool" else json.dumps(answer)

    async def main() -> Any:
        agent = Agent(ScriptedModel([step]), output_type=output_type, output_mode=mode)
        return (await agent.run("go")).output

    assert trio.run(main) == value
