"""Swarm: parallel, sequential and debate forms over one set of agents, with a synthesizer."""

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
    Budget,
    Event,
    InvalidArgumentError,
    ModelOverloaded,
    ModelRequest,
    PatternFinished,
    PatternStarted,
    RetryPolicy,
    SharedInfra,
    TextBlock,
    UsageLimits,
    UserMessage,
    dump,
    load,
)
from trio_agents.patterns import (
    Merge,
    RoundFinished,
    Step,
    StepFailed,
    StepFinished,
    StepOutput,
    Swarm,
    SwarmMode,
    SwarmResult,
)
from trio_agents.testing import FunctionModel, ScriptedModel, ScriptItem, fail, strategies, text


def prompt_of(request: ModelRequest) -> str:
    last = request.messages[-1]
    assert isinstance(last, UserMessage)
    block = last.content[0]
    assert isinstance(block, TextBlock)
    return block.text


def answering(name: str, fn: Callable[[str], ScriptItem]) -> Callable[[], Agent]:
    def build() -> Agent:
        return Agent(
            FunctionModel(lambda request: fn(prompt_of(request))),
            name=name,
            retry=RetryPolicy(max_attempts=1),
        )

    return build


def member(name: str, reply: str, delay: float = 0.0) -> Step:
    return Step(name, answering(name, lambda p: text(reply, delay=delay)))


async def test_parallel_form_reuses_run_parallel_and_synthesizes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[str] = []
    events: list[Event] = []
    swarm = Swarm(
        [member("a", "A", 2), member("b", "B", 1)],
        synthesizer=answering("s", lambda p: seen.append(p) or "A and B"),  # type: ignore[func-returns-value]
        name="panel",
        event_sink=events.append,
    )
    result = await swarm.run("task")
    assert result.mode is SwarmMode.PARALLEL
    assert [o.step for o in result.outputs] == ["a", "b"]  # declaration order (CONCAT)
    assert seen == ["task\n\n[a]\nA\n\n[b]\nB"]
    assert result.output == "A and B" and result.synthesis is not None
    assert result.rounds == ()
    kinds = [
        (type(e).__name__, e.agent)
        for e in events
        if isinstance(e, PatternStarted | PatternFinished | StepFinished)
    ]
    assert kinds == [
        ("PatternStarted", "panel"),
        ("StepFinished", "b"),
        ("StepFinished", "a"),
        ("StepFinished", "synthesize"),
        ("PatternFinished", "panel"),
    ]
    assert [e.pattern for e in events if isinstance(e, PatternStarted)] == ["swarm.parallel"]
    fastest = await Swarm([member("a", "A", 2), member("b", "B", 1)]).run("task", merge=Merge.FIRST)
    assert fastest.output == "B" and fastest.synthesis is None


async def test_sequential_form_chains_answers() -> None:
    swarm = Swarm([member("draft", "v1"), Step("edit", answering("edit", lambda p: p + "+edited"))])
    result = await swarm.run("go", mode=SwarmMode.SEQUENTIAL)
    assert [o.result.final_text for o in result.outputs] == ["v1", "v1+edited"]
    assert result.output == "v1+edited"


async def test_debate_form_has_a_separate_synthesizer_that_reads_every_round() -> None:
    counts = {"a": 0, "b": 0}

    def debater(name: str) -> Step:
        def answer(prompt: str) -> str:
            counts[name] += 1
            return f"{name}{counts[name]}"

        return Step(name, answering(name, answer))

    seen: list[str] = []
    events: list[Event] = []
    swarm = Swarm(
        [debater("a"), debater("b")],
        synthesizer=answering("s", lambda p: seen.append(p) or "final"),  # type: ignore[func-returns-value]
        event_sink=events.append,
    )
    result = await swarm.run("q?", mode=SwarmMode.DEBATE, rounds=2)
    assert [[o.result.final_text for o in r] for r in result.rounds] == [["a1", "b1"], ["a2", "b2"]]
    assert [o.result.final_text for o in result.outputs] == ["a2", "b2"]
    assert seen == [
        "q?\n\nRound 1:\n\n[a]\na1\n\n[b]\nb1\n\nRound 2:\n\n[a]\na2\n\n[b]\nb2\n\n"
        "Read the debate and give the best answer."
    ]
    assert result.output == "final"
    assert [e.round for e in events if isinstance(e, RoundFinished)] == [1, 2]
    assert [(e.ok, e.pattern) for e in events if isinstance(e, PatternFinished)] == [
        (True, "swarm.debate")
    ]


async def test_bad_arguments_name_what_is_wrong() -> None:
    with pytest.raises(InvalidArgumentError, match="Swarm needs a non-empty sequence of Step"):
        Swarm([])
    with pytest.raises(InvalidArgumentError, match="synthesizer must be an agent factory"):
        Swarm([member("a", "A")], synthesizer="s")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="infra must be a SharedInfra"):
        Swarm([member("a", "A")], infra=1)  # type: ignore[arg-type]
    swarm = Swarm([member("a", "A")])
    with pytest.raises(InvalidArgumentError, match=r"mode must be a SwarmMode \(PARALLEL, SEQ"):
        await swarm.run("t", mode="debate")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="needs a synthesizer"):
        await swarm.run("t", mode=SwarmMode.DEBATE)
    with pytest.raises(InvalidArgumentError, match="at least 2 members"):
        await Swarm([member("a", "A")], synthesizer=member("s", "S").factory).run(
            "t", mode=SwarmMode.DEBATE
        )
    with pytest.raises(InvalidArgumentError, match=r"Merge\.CUSTOM"):
        await swarm.run("t", merge=Merge.CUSTOM)


async def test_failures_keep_outputs_and_a_tree_budget_stops_the_swarm() -> None:
    broken = Step(
        "x",
        lambda: Agent(
            ScriptedModel([fail(ModelOverloaded("busy"))]),
            name="x",
            retry=RetryPolicy(max_attempts=1),
        ),
    )
    with pytest.raises(StepFailed, match="busy") as caught:
        await Swarm([member("a", "A"), broken]).run("t", mode=SwarmMode.SEQUENTIAL)
    assert [o.step for o in caught.value.outputs] == ["a"]
    infra = SharedInfra(budget=Budget(UsageLimits(requests=2)))
    swarm = Swarm(
        [member("a", "A"), member("b", "B")], synthesizer=member("s", "S").factory, infra=infra
    )
    with pytest.raises(StepFailed, match="BudgetExhausted") as spent:
        await swarm.run("t")
    assert "'synthesize'" in str(spent.value)
    assert [o.step for o in spent.value.outputs] == ["a", "b"]


@pytest.mark.parametrize(
    ("mode", "kept"),
    [(SwarmMode.PARALLEL, 1), (SwarmMode.SEQUENTIAL, 1), (SwarmMode.DEBATE, 2)],
)
async def test_outside_cancellation_is_bare_and_progress_keeps_partial_results(
    mode: SwarmMode, kept: int, autojump_clock: trio.testing.MockClock
) -> None:
    swarm = Swarm(
        [member("fast", "quick"), member("slow", "late", 10)]
        if mode is not SwarmMode.DEBATE
        else [member("a", "quick"), member("b", "quick")],
        synthesizer=member("s", "late", 10).factory,
    )
    progress: list[StepOutput] = []
    caught: list[BaseException] = []
    with trio.move_on_after(1):
        try:
            await swarm.run("go", mode=mode, rounds=1, progress=progress)
        except BaseException as exc:
            caught.append(exc)
            raise
    assert [type(e) for e in caught] == [trio.Cancelled]
    assert len(progress) == kept
    assert all(o.result.final_text == "quick" for o in progress)


@given(
    mode=st.sampled_from(SwarmMode),
    outs=st.lists(
        st.builds(StepOutput, strategies.identifiers(), strategies.agent_results()), max_size=3
    ),
    result=st.none() | strategies.agent_results(),
    output=strategies.texts(),
)
def test_swarm_result_round_trips(
    mode: SwarmMode, outs: list[StepOutput], result: AgentResult | None, output: str
) -> None:
    value = SwarmResult(
        mode=mode,
        outputs=tuple(outs),
        rounds=(tuple(outs), tuple(outs)),
        synthesis=result,
        output=output,
    )
    assert load(dump(value), SwarmResult) == value
