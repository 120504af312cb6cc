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
