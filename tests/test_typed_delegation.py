"""Specialists that answer a structured value: Delegator(..., output_types=...)."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    AgentSpec,
    DelegationRecord,
    Delegator,
    InvalidArgumentError,
    ModelRunner,
    ToolResultMessage,
    dump,
    load,
)
from trio_agents.testing import ScriptedModel, text, tool_call


@attrs.frozen
class Findings:
    """What the researcher found."""

    topic: str
    facts: list[str]


LEAD = AgentSpec(name="lead", instructions="Delegate research.")
RESEARCHER = AgentSpec(name="researcher", instructions="Find facts.")
WRITER = AgentSpec(name="writer", instructions="Write.")


async def test_a_typed_specialist_answers_a_structured_value() -> None:
    model = ScriptedModel(
        [
            tool_call("delegate", {"specialist": "researcher", "subtask": "owls"}, id="d1"),
            tool_call("final_result", {"topic": "owls", "facts": ["they hoot"]}, id="f1"),
            text("Owls hoot."),
        ]
    )
    delegator = Delegator(LEAD, [RESEARCHER, WRITER], output_types={"researcher": Findings})
    result = await delegator.run("tell me about owls", runner=ModelRunner(model))
    (record,) = result.delegations
    assert record.success
    assert record.output == {"topic": "owls", "facts": ["they hoot"]}
    assert load(record.output, Findings) == Findings("owls", ["they hoot"])
    assert json.loads(record.result) == record.output
    # The specialist was asked for the type (its request carried the output schema) ...
    specialist_request = model.requests[1]
    assert specialist_request.output is not None
    assert "facts" in specialist_request.output.schema["properties"]
    # ... and the lead read the answer as JSON text.
    shown = model.requests[2].messages[-1]
    assert isinstance(shown, ToolResultMessage)
    assert json.loads(shown.results[0].content) == record.output
    assert result.final_answer == "Owls hoot."


async def test_untyped_specialists_answer_text_as_before() -> None:
    model = ScriptedModel(
        [
            tool_call("delegate", {"specialist": "writer", "subtask": "a poem"}, id="d1"),
            text("Roses."),
            text("Done."),
        ]
    )
    delegator = Delegator(LEAD, [RESEARCHER, WRITER], output_types={"researcher": Findings})
    result = await delegator.run("go", runner=ModelRunner(model))
    (record,) = result.delegations
    assert (record.result, record.output) == ("Roses.", None)
    assert model.requests[1].output is None


def test_output_types_must_name_specialists_and_supported_types() -> None:
    with pytest.raises(InvalidArgumentError, match="output_types names 'oracle'"):
        Delegator(LEAD, [RESEARCHER], output_types={"oracle": Findings})
    with pytest.raises(InvalidArgumentError, match="output_type set\\[int\\] is not supported"):
        Delegator(LEAD, [RESEARCHER], output_types={"researcher": set[int]})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@given(json_values)
def test_records_with_structured_output_round_trip(output: object) -> None:
    record = DelegationRecord(
        specialist="researcher",
        subtask="owls",
        result=json.dumps(output),
        success=True,
        output=output,
    )
    assert load(json.loads(json.dumps(dump(record))), DelegationRecord) == record


@attrs.frozen
class Question:
    """A research question."""

    topic: str
    depth: int = 1


async def test_a_typed_input_is_checked_sent_as_json_and_recorded() -> None:
    model = ScriptedModel(
        [
            tool_call("delegate", {"specialist": "researcher", "subtask": {"topic": 3}}, id="d1")
            + tool_call(
                "delegate", {"specialist": "researcher", "subtask": {"topic": "owls"}}, id="d2"
            ),
            text("They hoot."),
            text("Done."),
        ]
    )
    delegator = Delegator(LEAD, [RESEARCHER, WRITER], input_types={"researcher": Question})
    result = await delegator.run("go", runner=ModelRunner(model))
    # The bad subtask is an error result the lead reads, with no record.
    shown = model.requests[-1].messages[-1]
    assert isinstance(shown, ToolResultMessage)
    assert shown.results[0].is_error
    assert "invalid subtask for specialist 'researcher'" in shown.results[0].content
    assert "@ $.topic: expected a string" in shown.results[0].content
    assert not shown.results[1].is_error
    (record,) = result.delegations
    assert record.input == {"topic": "owls", "depth": 1}
    assert json.loads(record.subtask) == record.input
    # The specialist got the value as JSON text.
    specialist_input = model.requests[1].messages[0]
    assert json.loads(specialist_input.content[0].text) == record.input  # type: ignore[union-attr]


def test_typed_inputs_are_in_the_delegate_tool_schema() -> None:
    plain = Delegator(LEAD, [RESEARCHER, WRITER])
    typed = Delegator(LEAD, [RESEARCHER, WRITER], input_types={"researcher": Question})
    plain_subtask = plain.definition().parameters["properties"]["subtask"]
    subtask = typed.definition().parameters["properties"]["subtask"]
    assert plain_subtask["type"] == "string"
    first, second = subtask["anyOf"]
    assert first == plain_subtask
    assert second["title"] == "researcher"
    assert second["required"] == ["topic"]
    assert "'researcher'" in subtask["description"]
    with pytest.raises(InvalidArgumentError, match="input_types names 'oracle'"):
        Delegator(LEAD, [RESEARCHER], input_types={"oracle": Question})
