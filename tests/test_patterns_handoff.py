"""Handoff: transfer_to_agent, chain safety, the handoff loop, cancellation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentResult,
    Event,
    InvalidArgumentError,
    StopReason,
    ToolResultMessage,
    TransferSignal,
    UsageError,
    UserMessage,
    dump,
    load,
    tool,
)
from trio_agents.patterns import AgentTransferred, Handoff, HandoffResult, transfer_to_agent
from trio_agents.testing import ScriptedModel, ScriptItem, hang, strategies, tool_call


def move(target: str, reason: str = "theirs", summary: str = "") -> ScriptItem:
    return tool_call("transfer_to_agent", {"target": target, "reason": reason, "summary": summary})


class Team:
    """Agents with scripted models; every built model is kept to inspect its requests."""

    def __init__(self, scripts: dict[str, list[ScriptItem]]) -> None:
        self.scripts = scripts
        self.models: dict[str, list[ScriptedModel]] = {name: [] for name in scripts}

    def factory(self, name: str) -> Callable[[], Agent]:
        def build() -> Agent:
            model = ScriptedModel(self.scripts[name])
            self.models[name].append(model)
            return Agent(model, name=name, tools=[transfer_to_agent])

        return build

    def handoff(self, **kwargs: object) -> Handoff:
        return Handoff({name: self.factory(name) for name in self.scripts}, **kwargs)  # type: ignore[arg-type]


def tool_errors(result: AgentResult) -> list[str]:
    return [
        block.content
        for message in result.messages
        if isinstance(message, ToolResultMessage)
        for block in message.results
        if block.is_error
    ]


async def test_transfer_hands_the_conversation_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    team = Team(
        {
            "triage": [move("billing", "a refund question", "wants a refund for order 7")],
            "billing": ["refund issued"],
        }
    )
    events: list[Event] = []
    outcome = await team.handoff(event_sink=events.append).run("triage", "refund please")
    assert outcome.chain == ("triage", "billing")
    assert outcome.output == "refund issued"
    first = outcome.results[0]
    assert first.stop_reason is StopReason.TRANSFER
    assert first.transfer is not None
    assert first.transfer.target == "billing"
    assert first.transfer.source == "triage"
    assert first.transfer.reason == "a refund question"
    assert first.transfer.message == "wants a refund for order 7"
    assert first.transfer.messages == first.messages  # the whole conversation
    seen = team.models["billing"][0].requests[0].messages
    assert seen[0] == UserMessage.text("refund please")
    assert seen[-1] == UserMessage.text(
        "[transferred from triage: a refund question] wants a refund for order 7"
    )
    assert [type(e) for e in events] == [AgentTransferred]
    assert events[0] == AgentTransferred(
        time=0.0, agent="triage", target="billing", reason="a refund question", depth=1
    )


async def test_cycle_is_refused_with_a_readable_tool_error() -> None:
    team = Team(
        {
            "a": [move("b")],
            "b": [move("a"), "fine, I answer"],
        }
    )
    outcome = await team.handoff().run("a", "hi")
    assert outcome.chain == ("a", "b")
    assert outcome.output == "fine, I answer"
    [error] = tool_errors(outcome.results[1])
    assert "cannot transfer to 'a'" in error and "a -> b" in error and "cycle" in error


async def test_self_transfer_is_refused() -> None:
    team = Team({"a": [move("a"), "ok"], "b": []})
    outcome = await team.handoff().run("a", "hi")
    assert outcome.chain == ("a",)
    [error] = tool_errors(outcome.results[0])
    assert "that is you" in error


async def test_unknown_target_lists_the_allowed_ones() -> None:
    team = Team({"a": [move("nobody"), "ok"], "b": []})
    outcome = await team.handoff().run("a", "hi")
    [error] = tool_errors(outcome.results[0])
    assert "not an allowed target" in error and "'a', 'b'" in error


async def test_depth_limit() -> None:
    team = Team({"a": [move("b")], "b": [move("c")], "c": [move("d"), "c answers"], "d": ["d"]})
    outcome = await team.handoff(max_depth=2).run("a", "hi")
    assert outcome.chain == ("a", "b", "c")
    [error] = tool_errors(outcome.results[2])
    assert "a -> b -> c" in error and "most transfers allowed (2)" in error


async def test_default_depth_is_five() -> None:
    names = [f"n{i}" for i in range(7)]
    scripts: dict[str, list[ScriptItem]] = {
        name: [move(names[i + 1]) if i + 1 < len(names) else "end", "stopped here"]
        for i, name in enumerate(names)
    }
    outcome = await Team(scripts).handoff().run("n0", "go")
    assert outcome.chain == tuple(names[:6])  # five transfers
    assert "most transfers allowed (5)" in tool_errors(outcome.results[-1])[0]


async def test_only_the_first_transfer_of_a_turn_counts() -> None:
    team = Team({"a": [move("b") + move("c")], "b": ["b answers"], "c": ["c answers"]})
    outcome = await team.handoff().run("a", "hi")
    assert outcome.chain == ("a", "b")
    assert outcome.output == "b answers"


async def test_transfer_outside_a_handoff_still_ends_the_run() -> None:
    agent = Agent(ScriptedModel([move("elsewhere")]), name="solo", tools=[transfer_to_agent])
    result = await agent.run("hi")
    assert result.stop_reason is StopReason.TRANSFER
    assert result.transfer is not None and result.transfer.target == "elsewhere"


async def test_request_transfer_misuse() -> None:
    agent = Agent(ScriptedModel([]), name="idle")
    with pytest.raises(UsageError, match="not running"):
        agent.request_transfer(TransferSignal(target="x"))
    with pytest.raises(InvalidArgumentError, match="TransferSignal"):
        agent.request_transfer("x")  # type: ignore[arg-type]


async def test_a_transfer_against_the_rules_made_by_hand_is_refused() -> None:
    @tool
    async def sneaky() -> str:
        """Transfer without the checks."""
        from trio_agents._agent import current_agent

        agent = current_agent()
        assert agent is not None
        agent.request_transfer(TransferSignal(target="a"))
        return "done"

    handoff = Handoff(
        {"a": lambda: Agent(ScriptedModel([tool_call("sneaky")]), name="a", tools=[sneaky])}
    )
    with pytest.raises(UsageError, match=r"'a' transferred against the rules.*that is you"):
        await handoff.run("a", "hi")
    assert len(handoff.results) == 1  # nothing done is lost


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="non-empty mapping"):
        Handoff({})
    with pytest.raises(InvalidArgumentError, match="max_depth must be an int >= 0"):
        Handoff({"a": lambda: Agent(ScriptedModel([]))}, max_depth=-1)


async def test_unknown_start() -> None:
    with pytest.raises(InvalidArgumentError, match=r"unknown start agent 'z' \(agents: a\)"):
        await Handoff({"a": lambda: Agent(ScriptedModel([]))}).run("z", "hi")


async def test_cancellation_wins_over_transfer(autojump_clock: trio.testing.MockClock) -> None:
    @tool
    async def slow() -> str:
        """Takes a while."""
        await trio.sleep(10)
        return "slow done"

    handoff = Handoff(
        {
            "a": lambda: Agent(
                ScriptedModel([move("b") + tool_call("slow")]),
                name="a",
                tools=[transfer_to_agent, slow],
            ),
            "b": lambda: Agent(ScriptedModel(["b"]), name="b"),
        }
    )
    with trio.move_on_after(5) as scope:
        await handoff.run("a", "hi")
    assert scope.cancelled_caught
    [partial] = handoff.results
    assert partial.stop_reason is StopReason.ABORTED and partial.transfer is None


async def test_outside_cancellation_is_bare_and_keeps_partial_results(
    autojump_clock: trio.testing.MockClock,
) -> None:
    team = Team({"a": [move("b")], "b": [hang()]})
    handoff = team.handoff()
    caught: list[BaseException] = []

    async def runner() -> None:
        try:
            await handoff.run("a", "hi")
        except BaseException as exc:
            caught.append(exc)
            raise

    with trio.move_on_after(1):
        await runner()
    assert [type(e) for e in caught] == [trio.Cancelled]
    assert [r.stop_reason for r in handoff.results] == [StopReason.TRANSFER, StopReason.ABORTED]


@given(
    results=st.lists(strategies.agent_results(), min_size=1, max_size=3),
    names=st.lists(strategies.identifiers(), min_size=1, max_size=3),
    signal=strategies.from_type(TransferSignal),
)
def test_handoff_values_round_trip(
    results: list[AgentResult], names: list[str], signal: TransferSignal
) -> None:
    result = HandoffResult(chain=tuple(names), results=tuple(results))
    assert load(dump(result), HandoffResult) == result
    event = AgentTransferred(time=1.0, agent="a", target=signal.target, reason="r", depth=1)
    assert load(dump(event), Event) == event
    assert load(dump(signal), TransferSignal) == signal
