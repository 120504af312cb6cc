"""Loop, map-reduce, vote, review loop and tournament, on scripted models."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentOrchestrator,
    AgentResult,
    Backoff,
    Event,
    InvalidArgumentError,
    ModelOverloaded,
    ModelRequest,
    RetryPolicy,
    SupervisorAction,
    TextBlock,
    UserMessage,
    dump,
    load,
    tool,
)
from trio_agents.patterns import (
    DebateResult,
    Loop,
    LoopExhausted,
    LoopResult,
    MapReduceResult,
    Match,
    ReviewResult,
    ReviewRound,
    RoundFinished,
    Step,
    StepFailed,
    StepOutput,
    TournamentResult,
    VoteResult,
    debate,
    map_reduce,
    normalise_answer,
    pattern_agent,
    review_loop,
    run_parallel,
    run_sequential,
    tournament,
    vote,
)
from trio_agents.testing import (
    FunctionModel,
    ScriptedModel,
    ScriptItem,
    fail,
    strategies,
    text,
    tool_call,
)


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


def says(name: str, *script: ScriptItem, tools: list[object] | None = None) -> Step:
    return Step(
        name,
        lambda: Agent(
            ScriptedModel(script),
            name=name,
            tools=tools or [],  # type: ignore[arg-type]
            retry=RetryPolicy(max_attempts=1),
        ),
    )


# --------------------------------------------------------------------------- loop


async def test_loop_exits_on_a_matching_output() -> None:
    events: list[Event] = []
    step = Step("count", answering("count", lambda p: str(int(p) + 1)))
    result = await Loop(step, until_output=r"^3$", event_sink=events.append).run("0")
    assert [o.result.final_text for o in result.outputs] == ["1", "2", "3"]
    assert result.exit == "match" and result.output == "3"
    assert [(e.round, e.detail) for e in events if isinstance(e, RoundFinished)] == [
        (1, "again"),
        (2, "again"),
        (3, "match"),
    ]


async def test_loop_exits_when_the_tool_was_called() -> None:
    @tool
    async def finish() -> str:
        """Say the work is done."""
        return "ok"

    runs = iter([["draft"], [tool_call("finish"), "final"]])

    def build() -> Agent:
        return Agent(ScriptedModel(next(runs)), name="w", tools=[finish])

    result = await Loop(Step("w", build), until_tool="finish").run("go")
    assert result.exit == "tool" and result.output == "final" and len(result.outputs) == 2


async def test_loop_max_iterations_is_a_clear_error_keeping_outputs() -> None:
    step = Step("echo", answering("echo", lambda p: p + "!"))
    with pytest.raises(
        LoopExhausted,
        match=r"loop 'echo' ran max_iterations=2 without a call to 'done' or output matching 'x'",
    ) as info:
        await Loop(step, until_tool="done", until_output="x", max_iterations=2).run("a")
    assert [o.result.final_text for o in info.value.outputs] == ["a!", "a!!"]


def test_loop_is_checked_when_built() -> None:
    step = says("s", "x")
    with pytest.raises(InvalidArgumentError, match="needs an exit"):
        Loop(step)
    with pytest.raises(InvalidArgumentError, match=r"not a valid regular expression: '\('"):
        Loop(step, until_output="(")
    with pytest.raises(InvalidArgumentError, match="max_iterations must be an int >= 1"):
        Loop(step, until_output="x", max_iterations=0)


# --------------------------------------------------------------------------- map-reduce


async def test_map_reduce_caps_concurrency_and_reduces_in_item_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    running = 0
    peak = 0

    async def mapper_fn(request: ModelRequest) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        item = prompt_of(request)
        await trio.sleep(10 - len(item))  # longer items finish first
        running -= 1
        return item.upper()

    reduced_prompts: list[str] = []

    def reducer_fn(prompt: str) -> str:
        reduced_prompts.append(prompt)
        return "reduced"

    result = await map_reduce(
        lambda: Agent(FunctionModel(mapper_fn), name="mapper"),
        answering("reducer", reducer_fn),
        ["a", "bb", "ccc", "dddd", "eeeee"],
        max_concurrency=2,
    )
    assert peak == 2
    assert [o.step for o in result.mapped] == [f"map[{i}]" for i in range(5)]
    assert reduced_prompts[0].startswith("[map[0]]\nA\n\n[map[1]]\nBB")
    assert result.output == "reduced"


async def test_map_reduce_failure_names_the_item_and_cancels_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled: list[str] = []

    async def mapper_fn(request: ModelRequest) -> str:
        item = prompt_of(request)
        if item == "bad":
            raise ModelOverloaded("down")
        try:
            await trio.sleep(5)
        except trio.Cancelled:
            cancelled.append(item)
            raise
        return item

    with pytest.raises(StepFailed, match=r"step 1 \('map\[1\]', agent 'mapper'\)"):
        await map_reduce(
            lambda: Agent(
                FunctionModel(mapper_fn), name="mapper", retry=RetryPolicy(max_attempts=1)
            ),
            answering("reducer", lambda p: "never"),
            ["ok", "bad", "also"],
        )
    assert sorted(cancelled) == ["also", "ok"]


def test_map_reduce_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="non-empty sequence of items"):
        trio.run(map_reduce, answering("m", str), answering("r", str), "abc")
    with pytest.raises(InvalidArgumentError, match="max_concurrency must be an int >= 1"):
        trio.run(
            lambda: map_reduce(answering("m", str), answering("r", str), ["a"], max_concurrency=0)
        )


# --------------------------------------------------------------------------- vote


def test_normalise_answer() -> None:
    assert normalise_answer('  "Paris."  ') == normalise_answer("paris") == "paris"
    assert normalise_answer("New   York!") == "new york"


async def test_vote_majority_and_agreement() -> None:
    voters = [says("a", "Paris."), says("b", "paris"), says("c", "Lyon")]
    result = await vote(voters, "capital?")
    assert result.winner == "paris" and not result.tie
    assert result.agreement == pytest.approx(2 / 3)
    assert [v.step for v in result.votes] == ["a", "b", "c"]


async def test_vote_tie_goes_to_the_first_cast_and_synthesizer_sees_the_tally() -> None:
    seen: list[str] = []

    def synth(prompt: str) -> str:
        seen.append(prompt)
        return "both are fine"

    voters = [says("a", "Lyon"), says("b", "Paris"), says("c", "paris"), says("d", "lyon")]
    result = await vote(voters, "capital?", synthesizer=answering("synth", synth))
    assert result.tie and result.winner == "lyon" and result.agreement == 0.5
    assert result.output == "both are fine"
    assert seen[0].endswith("votes: 'lyon': 2, 'paris': 2")


# --------------------------------------------------------------------------- review loop


async def test_review_approval_after_feedback() -> None:
    worker_prompts: list[str] = []

    def worker(prompt: str) -> str:
        worker_prompts.append(prompt)
        return f"draft {len(worker_prompts)}"

    reviews = iter(["Too short.", "Good. APPROVED"])
    events: list[Event] = []
    result = await review_loop(
        answering("worker", worker),
        answering("reviewer", lambda p: next(reviews)),
        "write",
        event_sink=events.append,
    )
    assert result.approved and len(result.rounds) == 2 and result.output == "draft 2"
    assert worker_prompts[1] == (
        "write\n\nYour previous draft:\ndraft 1\n\nReviewer feedback:\nToo short."
    )
    assert [e.detail for e in events if isinstance(e, RoundFinished)] == ["feedback", "approved"]


async def test_review_exhaustion_is_not_approved() -> None:
    result = await review_loop(
        answering("worker", lambda p: "draft"),
        answering("reviewer", lambda p: "approved? no"),  # the marker is case-sensitive
        "write",
        max_rounds=2,
    )
    assert not result.approved and len(result.rounds) == 2


# --------------------------------------------------------------------------- tournament


def prefers_longer(prompt: str) -> str:
    one = prompt.split("Answer 1:\n")[1].split("\n\n")[0]
    two = prompt.split("Answer 2:\n")[1].split("\n\n")[0]
    return "1" if len(one) >= len(two) else "2"


async def test_tournament_with_a_bye_for_an_odd_count() -> None:
    judges: list[Agent] = []

    def judge() -> Agent:
        agent = answering("judge", prefers_longer)()
        judges.append(agent)
        return agent

    contestants = [
        says("a", "x"),
        says("b", "xxxx"),
        says("c", "xx"),
        says("d", "xxx"),
        says("e", "xxxxx"),
    ]
    events: list[Event] = []
    result = await tournament(contestants, "say x", judge, event_sink=events.append)
    byes = [m for m in result.matches if m.second is None]
    assert [(m.round, m.first) for m in byes] == [(1, "e"), (2, "e")]
    assert result.winner == "e"
    # round 1: b beats a, d beats c, e bye; round 2: b beats d, e bye; round 3: e beats b
    assert result.ranking == ("e", "b", "d", "a", "c")
    assert len(judges) == 4 and len({id(j) for j in judges}) == 4  # a fresh judge per match
    assert [e.detail for e in events if isinstance(e, RoundFinished)] == ["b, d, e", "b, e", "e"]


async def test_tournament_judge_that_does_not_choose_is_an_error() -> None:
    with pytest.raises(StepFailed, match="answered neither 1 nor 2"):
        await tournament([says("a", "x"), says("b", "y")], "t", answering("judge", lambda p: "hmm"))


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize(
    ("which", "kept"),
    [
        ("sequential", 1),
        ("parallel", 1),
        ("loop", 1),
        ("map_reduce", 1),
        ("vote", 1),
        ("review", 1),
        ("debate", 1),
        ("tournament", 2),
    ],
)
async def test_outside_cancellation_is_bare_and_progress_keeps_partial_results(
    which: str, kept: int, autojump_clock: trio.testing.MockClock
) -> None:
    fast = answering("fast", lambda p: "quick")
    slow = answering("slow", lambda p: text("late", delay=10))
    calls = 0

    def first_fast() -> Agent:
        nonlocal calls
        calls += 1
        return fast() if calls == 1 else slow()

    progress: list[StepOutput] = []
    runs = {
        "sequential": lambda: run_sequential(
            [Step("a", fast), Step("b", slow)], "go", progress=progress
        ),
        "parallel": lambda: run_parallel(
            [Step("a", fast), Step("b", slow)], "go", progress=progress
        ),
        "loop": lambda: Loop(Step("s", first_fast), until_output="x").run("go", progress=progress),
        "map_reduce": lambda: map_reduce(first_fast, slow, ["a", "b"], progress=progress),
        "vote": lambda: vote([Step("a", fast), Step("b", slow)], "q", progress=progress),
        "review": lambda: review_loop(fast, slow, "t", progress=progress),
        "debate": lambda: debate([Step("a", fast), Step("b", slow)], "q", slow, progress=progress),
        "tournament": lambda: tournament(
            [Step("a", fast), Step("b", fast)], "t", slow, progress=progress
        ),
    }
    caught: list[BaseException] = []
    with trio.move_on_after(1):
        try:
            await runs[which]()
        except BaseException as exc:
            caught.append(exc)
            raise
    assert [type(e) for e in caught] == [trio.Cancelled]
    assert len(progress) == kept
    assert all(o.result.final_text == "quick" for o in progress)


# --------------------------------------------------------------------------- values


outputs = st.lists(
    st.builds(StepOutput, strategies.identifiers(), strategies.agent_results()),
    min_size=1,
    max_size=3,
)


@given(
    outs=outputs,
    result=strategies.agent_results(),
    ratio=st.floats(0, 1),
    flag=st.booleans(),
    name=strategies.identifiers(),
)
def test_values_round_trip(
    outs: list[StepOutput], result: AgentResult, ratio: float, flag: bool, name: str
) -> None:
    values: list[object] = [
        LoopResult(outputs=tuple(outs), exit="match"),
        MapReduceResult(mapped=tuple(outs), reduced=result),
        VoteResult(votes=tuple(outs), winner=name, agreement=ratio, tie=flag, synthesis=result),
        ReviewResult(approved=flag, rounds=(ReviewRound(result, result),)),
        TournamentResult(
            entries=tuple(outs),
            matches=(
                Match(round=1, first=name, second=None, winner=name),
                Match(round=1, first=name, second="b", winner="b", judge=result),
            ),
            ranking=(name, "b"),
        ),
        RoundFinished(time=1.0, agent="review", round=2, detail="approved"),
    ]
    for value in values:
        kind = Event if isinstance(value, Event) else type(value)
        assert load(dump(value), kind) == value


# --------------------------------------------------------------------------- debate


async def test_debate_rounds_pass_critiques_and_a_judge_decides() -> None:
    prompts: dict[str, list[str]] = {"a": [], "b": [], "c": []}

    def debater(name: str) -> Step:
        def answer(prompt: str) -> str:
            prompts[name].append(prompt)
            return f"{name}{len(prompts[name])}"

        return Step(name, answering(name, answer))

    judged: list[str] = []
    events: list[Event] = []
    result = await debate(
        [debater("a"), debater("b"), debater("c")],
        "q?",
        answering("judge", lambda p: judged.append(p) or "c wins"),  # type: ignore[func-returns-value]
        rounds=3,
        event_sink=events.append,
    )
    assert [[o.result.final_text for o in r] for r in result.rounds] == [
        ["a1", "b1", "c1"],
        ["a2", "b2", "c2"],
        ["a3", "b3", "c3"],
    ]
    assert prompts["a"][0] == "q?"
    assert prompts["a"][1] == (
        "The other debaters answered:\n\n[b]\nb1\n\n[c]\nc1\n\n"
        "Critique their answers, then give your revised answer."
    )
    assert "[a]\na3\n\n[b]\nb3\n\n[c]\nc3" in judged[0]
    assert result.output == "c wins"
    assert [e.round for e in events if isinstance(e, RoundFinished)] == [1, 2, 3]


async def test_debate_bad_arguments_and_failures() -> None:
    with pytest.raises(InvalidArgumentError, match="at least 2 debaters"):
        await debate([says("a", "x")], "q", answering("j", str))
    with pytest.raises(StepFailed, match=r"round 1: step 1 \('b', agent 'b'\)"):
        await debate(
            [says("a", "x"), says("b", fail(ModelOverloaded("down")))], "q", answering("j", str)
        )


# --------------------------------------------------------------------------- supervised


async def test_a_pattern_runs_as_a_supervised_agent(autojump_clock: trio.testing.MockClock) -> None:
    built: list[int] = []

    def panel() -> Agent:
        built.append(1)
        flaky = len(built) == 1  # the first incarnation's voters fail

        async def run(question: str) -> VoteResult:
            voters = [
                says("a", "yes"),
                says("b", fail(ModelOverloaded("down")) if flaky else "yes"),
            ]
            return await vote(voters, question)

        return pattern_agent(run, name="panel")

    orch = AgentOrchestrator(supervisor=PatternSupervisor(), backoff=Backoff.none(), max_restarts=3)
    orch.add_agent("panel", panel)
    async with orch.open() as system:
        handle = await system.spawn("panel")
        with pytest.raises(StepFailed):
            await handle.send_message("agree?")
        # the next request is served by the new incarnation
        assert (await handle.send_message("agree?")).final_text == "yes"
        assert handle.statistics().restarts == 1
    assert len(built) == 2


class PatternSupervisor:
    """Restarts every failure (a failed pattern is not retryable by default)."""

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        return SupervisorAction.RESTART


@given(outs=outputs, result=strategies.agent_results())
def test_debate_result_round_trips(outs: list[StepOutput], result: AgentResult) -> None:
    value = DebateResult(rounds=(tuple(outs), tuple(outs)), verdict=result)
    assert load(dump(value), DebateResult) == value
