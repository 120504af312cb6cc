"""Tool calls that wait for a person: StopReason.APPROVAL_REQUIRED and Agent.resume."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentResult,
    AgentSpec,
    AlreadyRunningError,
    ApprovalDecision,
    Delegator,
    InvalidArgumentError,
    ModelRunner,
    PendingApproval,
    PolicyEngine,
    StopReason,
    ToolResultMessage,
    Toolset,
    combine_executors,
    dump,
    dumps_json,
    load,
    loads_json,
    tool,
)
from trio_agents.testing import ScriptedModel, text, tool_call

sent: list[str] = []


@tool(requires_approval=True)
async def send_email(to: str, body: str) -> str:
    """Send an email."""
    sent.append(to)
    return f"sent to {to}"


@tool
async def lookup(name: str) -> str:
    """Look up an address."""
    return f"{name}@example.com"


@pytest.fixture(autouse=True)
def _clear_sent() -> None:
    sent.clear()


def _results(result: AgentResult) -> list[tuple[str, bool, str]]:
    """(call id, is_error, content) of every tool result of the run."""
    return [
        (r.tool_call_id, r.is_error, r.content)
        for m in result.messages
        if isinstance(m, ToolResultMessage)
        for r in m.results
    ]


async def test_a_call_that_needs_approval_stops_the_run() -> None:
    model = ScriptedModel([tool_call("send_email", {"to": "bob", "body": "hi"}, id="c1")])
    agent = Agent(model, name="assistant", tools=[send_email])
    result = await agent.run("mail bob")
    assert result.stop_reason is StopReason.APPROVAL_REQUIRED
    assert result.pending_approvals == (
        PendingApproval(
            call_id="c1",
            tool="send_email",
            arguments={"to": "bob", "body": "hi"},
            agent="assistant",
        ),
    )
    assert sent == []
    assert result.ok
    assert result.output is None
    # The history ends with the unanswered call; nothing was appended for it.
    assert agent.messages[-1].tool_calls[0].id == "c1"  # type: ignore[union-attr]


async def test_approved_call_runs_on_resume_and_the_run_goes_on() -> None:
    model = ScriptedModel(
        [tool_call("send_email", {"to": "bob", "body": "hi"}, id="c1"), text("Sent.")]
    )
    agent = Agent(model, tools=[send_email])
    await agent.run("mail bob")
    result = await agent.resume([ApprovalDecision(call_id="c1", approved=True)])
    assert sent == ["bob"]
    assert result.stop_reason is StopReason.STOP
    assert result.output == "Sent."
    assert _results(result) == [("c1", False, "sent to bob")]
    # The model saw the result in its next request.
    assert model.requests[1].messages[-1] == result.messages[0]


async def test_denied_call_becomes_an_error_result_the_model_reads() -> None:
    model = ScriptedModel(
        [tool_call("send_email", {"to": "bob", "body": "hi"}, id="c1"), text("Not sent.")]
    )
    agent = Agent(model, tools=[send_email])
    await agent.run("mail bob")
    result = await agent.resume(
        [ApprovalDecision(call_id="c1", approved=False, reason="not to bob")]
    )
    assert sent == []
    assert _results(result) == [("c1", True, "not run: a person denied this call: not to bob")]
    assert result.final_text == "Not sent."


async def test_mixed_turn_runs_the_other_calls_at_once_and_holds_their_results() -> None:
    model = ScriptedModel(
        [
            tool_call("lookup", {"name": "ann"}, id="a")
            + tool_call("send_email", {"to": "ann", "body": "x"}, id="b")
            + tool_call("send_email", {"to": "cy", "body": "y"}, id="c"),
            text("Done."),
        ]
    )
    agent = Agent(model, tools=[lookup, send_email])
    waiting = await agent.run("go")
    assert [p.call_id for p in waiting.pending_approvals] == ["b", "c"]
    assert [(r.tool_call_id, r.content) for r in waiting.held_results] == [("a", "ann@example.com")]
    result = await agent.resume(
        [
            ApprovalDecision(call_id="c", approved=False),
            ApprovalDecision(call_id="b", approved=True),
        ]
    )
    assert sent == ["ann"]
    # One result per call, in call order, in one message.
    assert _results(result) == [
        ("a", False, "ann@example.com"),
        ("b", False, "sent to ann"),
        ("c", True, "not run: a person denied this call"),
    ]


async def test_a_policy_that_asks_stops_the_run_and_its_checks_still_apply() -> None:
    policy = PolicyEngine()
    policy.require_approval("lookup")
    policy.deny_parameter("no-eve", "lookup", "name", "eve")
    model = ScriptedModel(
        [
            tool_call("lookup", {"name": "eve"}, id="c1"),
            text("ok"),
        ]
    )
    agent = Agent(model, tools=[lookup], policy=policy)
    waiting = await agent.run("go")
    assert [p.tool for p in waiting.pending_approvals] == ["lookup"]
    result = await agent.resume([ApprovalDecision(call_id="c1", approved=True)])
    ((_, is_error, content),) = _results(result)
    assert is_error
    assert content.startswith("tool call denied: policy check 'no-eve'")


async def test_resume_in_a_fresh_agent_from_stored_values() -> None:
    first = ScriptedModel([tool_call("send_email", {"to": "bob", "body": "hi"}, id="c1")])
    waiting = await Agent(first, tools=[send_email]).run("mail bob")
    stored_result = dumps_json(waiting)
    stored_decisions = json.dumps([dump(ApprovalDecision(call_id="c1", approved=True))])

    # Later, elsewhere: a new agent and a new model, from the stored JSON only.
    second = ScriptedModel([text("Sent.")])
    fresh = Agent(second, tools=[send_email])
    restored = loads_json(stored_result, AgentResult)
    decisions = [load(d, ApprovalDecision) for d in json.loads(stored_decisions)]
    result = await fresh.resume(decisions, waiting=restored)
    assert sent == ["bob"]
    assert result.final_text == "Sent."
    # The fresh agent has the whole conversation, and the model saw it.
    assert [type(m).__name__ for m in fresh.messages] == [
        "UserMessage",
        "AssistantMessage",
        "ToolResultMessage",
        "AssistantMessage",
    ]
    assert len(second.requests[0].messages) == 3


async def test_bad_decisions_are_rejected_and_change_nothing() -> None:
    model = ScriptedModel(
        [
            tool_call("send_email", {"to": "a", "body": "x"}, id="c1")
            + tool_call("send_email", {"to": "b", "body": "y"}, id="c2"),
            text("Done."),
        ]
    )
    agent = Agent(model, tools=[send_email])
    waiting = await agent.run("go")
    history = agent.messages
    yes = ApprovalDecision(call_id="c1", approved=True)
    no = ApprovalDecision(call_id="c2", approved=False)
    with pytest.raises(
        InvalidArgumentError, match=r"unknown call id 'zz'; pending: \['c1', 'c2'\]"
    ):
        await agent.resume([yes, no, ApprovalDecision(call_id="zz", approved=True)])
    with pytest.raises(InvalidArgumentError, match=r"no decision for pending call ids \['c2'\]"):
        await agent.resume([yes])
    with pytest.raises(InvalidArgumentError, match="two decisions for call id 'c1'"):
        await agent.resume([yes, yes, no])
    with pytest.raises(InvalidArgumentError, match=r"decisions\[0\] must be an ApprovalDecision"):
        await agent.resume(["c1"])  # type: ignore[list-item]
    with pytest.raises(AlreadyRunningError, match="waits for approval"):
        await agent.run("something else")
    assert agent.messages == history
    assert sent == []
    assert agent.last_result is waiting
    # Still waiting: the right decisions work.
    result = await agent.resume([no, yes])
    assert sent == ["a"]
    assert result.final_text == "Done."


async def test_resuming_what_is_not_waiting_is_rejected() -> None:
    agent = Agent(ScriptedModel(["hi"]))
    with pytest.raises(InvalidArgumentError, match="is not waiting for approval"):
        await agent.resume([])
    done = await agent.run("hello")
    with pytest.raises(InvalidArgumentError, match="is not waiting for approval"):
        await agent.resume([])
    with pytest.raises(InvalidArgumentError, match="APPROVAL_REQUIRED"):
        await agent.resume([], waiting=done)


async def test_resume_with_another_conversation_is_rejected() -> None:
    first = ScriptedModel([tool_call("send_email", {"to": "a", "body": "x"}, id="c1")])
    waiting = await Agent(first, tools=[send_email]).run("go")
    other = Agent(ScriptedModel(["hi", "ho"]), tools=[send_email])
    await other.run("unrelated")
    before = other.messages
    with pytest.raises(InvalidArgumentError, match="does not end with the turn"):
        await other.resume([ApprovalDecision(call_id="c1", approved=True)], waiting=waiting)
    assert other.messages == before
    assert sent == []


async def test_clear_history_drops_the_waiting_calls() -> None:
    model = ScriptedModel([tool_call("send_email", {"to": "a", "body": "x"}, id="c1"), "fresh"])
    agent = Agent(model, tools=[send_email])
    await agent.run("go")
    agent.clear_history()
    assert (await agent.run("again")).final_text == "fresh"


approvals = st.builds(
    PendingApproval,
    call_id=st.text(max_size=8),
    tool=st.text(max_size=8),
    arguments=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    agent=st.text(max_size=8),
)
decisions = st.builds(
    ApprovalDecision,
    call_id=st.text(max_size=8),
    approved=st.booleans(),
    reason=st.text(max_size=8),
)


@given(st.lists(approvals, max_size=3), decisions)
def test_approval_values_round_trip_through_the_converter(
    pending: list[PendingApproval], decision: ApprovalDecision
) -> None:
    result = AgentResult(stop_reason=StopReason.APPROVAL_REQUIRED, pending_approvals=pending)
    assert load(json.loads(dumps_json(result)), AgentResult) == result
    assert load(json.loads(json.dumps(dump(decision))), ApprovalDecision) == decision


async def test_a_specialist_that_stops_for_approval_stops_the_lead() -> None:
    model = ScriptedModel(
        [
            tool_call("delegate", {"specialist": "mailer", "subtask": "mail bob"}, id="d1"),
            tool_call("send_email", {"to": "bob", "body": "hi"}, id="c1"),
            text("Mailed."),
            text("Bob has mail."),
        ]
    )
    lead = AgentSpec(name="lead", instructions="Delegate.")
    mailer = AgentSpec(name="mailer", instructions="Send mail.", tools=["send_email"])
    team = Delegator(lead, [mailer])
    runner = ModelRunner(model, tools=[send_email])
    waiting = await team.run("mail bob", runner=runner)
    assert sent == []
    assert waiting.delegations == ()  # the delegation has no record until it ends
    assert waiting.pending_approvals == (
        PendingApproval(
            call_id="c1",
            tool="send_email",
            arguments={"to": "bob", "body": "hi"},
            agent="lead/mailer",
            via=("d1",),
        ),
    )
    done = await team.resume(
        waiting, [ApprovalDecision(call_id="c1", approved=True)], runner=runner
    )
    assert sent == ["bob"]
    (record,) = done.delegations
    assert (record.success, record.result) == (True, "Mailed.")
    assert done.final_answer == "Bob has mail."


async def test_a_tool_that_needs_approval_asks_behind_combined_executors() -> None:
    model = ScriptedModel([tool_call("send_email", {"to": "bob", "body": "hi"}, id="c1")])
    tools = combine_executors(Toolset([lookup]), Toolset([send_email]))
    result = await Agent(model, tools=tools).run("mail bob")
    assert result.stop_reason is StopReason.APPROVAL_REQUIRED
    assert sent == []
    assert tools.get("send_email") is send_email  # type: ignore[attr-defined]
    assert tools.get("nothing") is None  # type: ignore[attr-defined]
