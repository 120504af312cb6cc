"""Durable pattern branches: run_parallel and run_sequential journal each branch and step,
so a crash at any journal step resumes without repeating a journaled step."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing
from test_cancellation_inventory import bare, cut_off
from test_journal import Crash, CrashingBackend
from test_journal_tree import _responses, _results, _turn

from trio_agents import (
    Agent,
    InvalidArgumentError,
    MemoryJournal,
    ModelRequest,
    RetryPolicy,
    RunJournal,
    ToolCallInDoubt,
    UsageError,
    tool,
)
from trio_agents.patterns import (
    Merge,
    Step,
    StepFailed,
    agent_tool,
    map_reduce,
    review_loop,
    run_parallel,
    run_sequential,
    vote,
)
from trio_agents.testing import FunctionModel, ScriptStep, hang, text, tool_call


class World:
    """Agents named by their instructions: each records a note (a side effect, counted
    outside), then answers with what it got back."""

    def __init__(self) -> None:
        self.model_calls: Counter[tuple[str, int]] = Counter()
        self.notes: list[str] = []

    def respond(self, request: ModelRequest) -> ScriptStep | str:
        who, turn = request.system or "", _turn(request)
        self.model_calls[who, turn] += 1
        if turn == 0:
            return tool_call("record", {"note": who}, id=f"{who}-1")
        return text(f"{who}: {_results(request)}")

    def step(self, name: str) -> Step:
        async def record(note: str) -> str:
            """Record ``note`` outside (counted)."""
            self.notes.append(note)
            return f"recorded {note}"

        def build() -> Agent[str]:
            return Agent(
                FunctionModel(self.respond),
                instructions=name,
                name=name,
                tools=[tool(record)],
                retry=RetryPolicy(max_attempts=1),
            )

        return Step(name, build)


NOTES = {"parallel": ["east", "north", "south"], "sequential": ["draft", "edit"]}


# More shapes: each run's pattern, and what of its result must equal the uncrashed one's.
RUNS = {
    "map_reduce": ["j/map-0", "j/map-1", "j/map-2", "j/reduce"],
    "vote": ["j/synthesize", "j/vote-0", "j/vote-1", "j/vote-2"],
    "review_loop": ["j/round-1-review", "j/round-1-worker"],
}
SHAPES: dict[str, tuple[Any, Any]] = {
    "map_reduce": (
        lambda w: (
            lambda: map_reduce(w.step("mapper").factory, w.step("reducer").factory, ["a", "b", "c"])
        ),
        lambda r: (tuple(o.result.final_text for o in r.mapped), r.reduced.final_text),
    ),
    "vote": (
        lambda w: (
            lambda: vote(
                [w.step(n) for n in ("v1", "v2", "v3")], "q?", synthesizer=w.step("synth").factory
            )
        ),
        lambda r: (r.winner, tuple(o.result.final_text for o in r.votes), r.synthesis),
    ),
    "review_loop": (
        lambda w: (
            lambda: review_loop(
                w.step("worker").factory, w.step("reviewer").factory, "do it", marker="reviewer:"
            )
        ),
        lambda r: (r.approved, tuple((x.draft.final_text, x.review.final_text) for x in r.rounds)),
    ),
}


def parallel(world: World) -> Any:
    return lambda: run_parallel([world.step(n) for n in ("north", "south", "east")], "map it")


def sequential(world: World) -> Any:
    return lambda: run_sequential([world.step(n) for n in ("draft", "edit")], "write it")


async def test_branches_and_steps_journal_under_their_own_run_ids(autojump_clock: Any) -> None:
    world = World()
    journal = RunJournal(MemoryJournal())
    result = await journal.run_pattern(parallel(world), run_id="p")
    assert result.output.count("recorded") == 3
    assert sorted(journal.runs()) == ["p/branch-0", "p/branch-1", "p/branch-2"]
    steps = await journal.run_pattern(sequential(world), run_id="s")
    assert [r for r in journal.runs() if r.startswith("s/")] == ["s/step-0", "s/step-1"]
    calls = sum(world.model_calls.values())
    # Resumed: every branch and step replays; no model call, no tool call.
    again = await journal.resume_pattern(parallel(World()), run_id="p")
    assert again.output == result.output
    replayed = await journal.resume_pattern(sequential(World()), run_id="s")
    assert replayed.output == steps.output
    assert sum(world.model_calls.values()) == calls
    assert sorted(world.notes) == ["draft", "east", "edit", "north", "south"]
    with pytest.raises(InvalidArgumentError, match="already journaled"):
        await journal.run_pattern(parallel(world), run_id="p")
    with pytest.raises(InvalidArgumentError, match="nothing is journaled under 'q'"):
        await journal.resume_pattern(parallel(world), run_id="q")
    with pytest.raises(InvalidArgumentError, match="pattern must be a function"):
        await journal.run_pattern(object(), run_id="x")  # type: ignore[arg-type]
    assert "x" not in journal.runs()


@pytest.mark.parametrize("shape", [parallel, sequential], ids=["parallel", "sequential"])
def test_a_pattern_resumed_after_a_crash_at_any_step_repeats_nothing(shape: Any) -> None:
    async def main() -> None:
        clean = RunJournal(MemoryJournal())
        expected = await clean.run_pattern(shape(World()), run_id="j")
        steps = sum(len(clean.records(run)) for run in clean.runs())
        total_responses = _responses(clean)
        in_doubt = 0
        for crash in range(steps + 1):
            world = World()
            store = MemoryJournal()
            try:
                await RunJournal(CrashingBackend(store, crash)).run_pattern(
                    shape(world), run_id="j"
                )
            except* Crash:
                pass
            journal = RunJournal(store)
            if not journal.runs():
                continue  # died before the first record: nothing to resume
            journaled, before = _responses(journal), sum(world.model_calls.values())
            try:
                result = await journal.resume_pattern(shape(world), run_id="j")
            except ToolCallInDoubt as exc:
                doubts = exc.calls
            else:
                doubts = ()
            for doubt in doubts:
                # In this simulation a call in doubt ran (the crash came at its result): a
                # person who checked the outside system resolves it as done.
                in_doubt += 1
                note = doubt.call.arguments["note"]
                assert note in world.notes, crash
                journal.resolve(doubt.run_id, doubt.call.id, "result", result=f"recorded {note}")
            if doubts:
                result = await journal.resume_pattern(shape(world), run_id="j")
            assert result.output == expected.output, crash
            # Counted outside the crashed run: every side effect happened exactly once.
            assert sorted(world.notes) == NOTES[shape.__name__], crash
            # No journaled model response was asked for again.
            assert sum(world.model_calls.values()) - before == total_responses - journaled, crash
        assert in_doubt >= 1  # some crash came at a tool's result: resolved, not rerun

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_more_shapes_resume_after_a_crash_at_any_step(name: str) -> None:
    shape, summary = SHAPES[name]

    async def main() -> None:
        world = World()
        clean = RunJournal(MemoryJournal())
        expected = summary(await clean.run_pattern(shape(world), run_id="j"))
        notes = sorted(world.notes)
        assert sorted(clean.runs()) == RUNS[name]  # each step under its own run id
        steps = sum(len(clean.records(run)) for run in clean.runs())
        total_responses = _responses(clean)
        for crash in range(steps + 1):
            world = World()
            store = MemoryJournal()
            try:
                await RunJournal(CrashingBackend(store, crash)).run_pattern(
                    shape(world), run_id="j"
                )
            except* Crash:
                pass
            journal = RunJournal(store)
            if not journal.runs():
                continue
            journaled, before = _responses(journal), sum(world.model_calls.values())
            try:
                result = await journal.resume_pattern(shape(world), run_id="j")
            except ToolCallInDoubt as exc:
                for doubt in exc.calls:
                    note = doubt.call.arguments["note"]
                    journal.resolve(
                        doubt.run_id, doubt.call.id, "result", result=f"recorded {note}"
                    )
                result = await journal.resume_pattern(shape(world), run_id="j")
            assert summary(result) == expected, crash
            assert sorted(world.notes) == notes, crash  # every side effect once
            assert sum(world.model_calls.values()) - before == total_responses - journaled, crash

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_an_agent_tool_journals_its_agent_under_the_call(autojump_clock: Any) -> None:
    world = World()
    ask = agent_tool(world.step("expert").factory, name="ask", description="Ask the expert.")
    assert ask.idempotent

    def lead_answer(request: ModelRequest) -> ScriptStep | str:
        world.model_calls["lead", _turn(request)] += 1
        if _turn(request) == 0:
            return tool_call("ask", {"prompt": "how?"}, id="a1")
        return text(f"lead: {_results(request)}")

    def lead() -> Agent[str]:
        return Agent(FunctionModel(lead_answer), tools=[ask], retry=RetryPolicy(max_attempts=1))

    clean = RunJournal(MemoryJournal())
    expected = await clean.run(lead(), "go", run_id="r")
    assert sorted(clean.runs()) == ["r", "r/a1"]
    steps = sum(len(clean.records(run)) for run in clean.runs())
    for crash in range(1, steps):
        world.notes.clear()
        store = MemoryJournal()
        try:
            await RunJournal(CrashingBackend(store, crash)).run(lead(), "go", run_id="r")
        except* Crash:
            pass
        journal = RunJournal(store)
        try:
            result = await journal.resume(lead(), "r")
        except ToolCallInDoubt as exc:
            doubts = list(exc.calls)
        else:
            doubts = []
        if doubts:
            # Only the expert's own side effect can be in doubt: the ask call resumes.
            assert [(d.run_id, d.call.name) for d in doubts] == [("r/a1", "record")], crash
            journal.resolve("r/a1", doubts[0].call.id, "result", result="recorded expert")
            result = await journal.resume(lead(), "r")
        assert result.output == expected.output, crash
        assert world.notes == ["expert"], crash


async def test_a_pattern_inside_a_journaled_tool_call_resumes_its_branches(
    autojump_clock: Any,
) -> None:
    # A lead whose (idempotent) tool runs a parallel pattern: the branches journal under the
    # tool call, so re-running the call after a crash replays the finished branches.
    world = World()

    @tool(idempotent=True)
    async def survey() -> str:
        """Survey three directions at once."""
        return (await parallel(world)()).output

    def lead_answer(request: ModelRequest) -> ScriptStep | str:
        world.model_calls["lead", _turn(request)] += 1
        if _turn(request) == 0:
            return tool_call("survey", {}, id="s1")
        return text(f"lead: {_results(request)}")

    def lead() -> Agent[str]:
        return Agent(FunctionModel(lead_answer), tools=[survey], retry=RetryPolicy(max_attempts=1))

    clean = RunJournal(MemoryJournal())
    expected = await clean.run(lead(), "go", run_id="r")
    assert sorted(r for r in clean.runs() if r != "r") == [
        "r/s1/branch-0",
        "r/s1/branch-1",
        "r/s1/branch-2",
    ]
    world.notes.clear()
    world.model_calls.clear()
    store = MemoryJournal()
    # Die at a branch's tool result: the lead's start, response and tool start, the three
    # branches' starts and responses, and their tool starts are journaled.
    crashed = False
    try:
        await RunJournal(CrashingBackend(store, 12)).run(lead(), "go", run_id="r")
    except* Crash:
        crashed = True
    assert crashed
    journal = RunJournal(store)
    assert sorted(r for r in journal.runs() if r != "r") == [
        "r/s1/branch-0",
        "r/s1/branch-1",
        "r/s1/branch-2",
    ]
    # The survey is idempotent; the branch tool whose result was not journaled is not.
    with pytest.raises(ToolCallInDoubt) as doubt:
        await journal.resume(lead(), "r", idempotent={"survey"})
    (call,) = doubt.value.calls
    assert call.run_id.startswith("r/s1/branch-") and call.call.name == "record"
    journal.resolve(
        call.run_id, call.call.id, "result", result=f"recorded {call.call.arguments['note']}"
    )
    result = await journal.resume(lead(), "r", idempotent={"survey"})
    assert result.output == expected.output
    assert sorted(world.notes) == ["east", "north", "south"]  # each once
    assert world.model_calls["lead", 0] == 1  # the lead's first response was replayed
    for who in ("north", "south", "east"):
        assert world.model_calls[who, 0] == 1  # journaled before the crash: not asked again


async def test_outside_cancellation_of_a_journaled_pattern_is_bare() -> None:
    def respond(request: ModelRequest) -> ScriptStep:
        return hang()

    def step(name: str) -> Step:
        return Step(
            name,
            lambda: Agent(FunctionModel(respond), name=name, retry=RetryPolicy(max_attempts=1)),
        )

    def shape() -> Any:
        return run_parallel([step("a"), step("b")], "x", merge=Merge.CONCAT)

    journal = RunJournal(MemoryJournal())
    bare(await cut_off(lambda: journal.run_pattern(shape, run_id="c")))
    assert sorted(journal.runs()) == ["c/branch-0", "c/branch-1"]
    bare(await cut_off(lambda: journal.resume_pattern(shape, run_id="c")))


async def test_patterns_whose_agents_keep_a_conversation_are_refused_in_a_pattern_run(
    autojump_clock: Any,
) -> None:
    from trio_agents.patterns import Handoff, debate

    world = World()
    journal = RunJournal(MemoryJournal())
    with pytest.raises(UsageError, match="a debate's rounds is not journaled"):
        await journal.run_pattern(
            lambda: debate(
                [world.step("pro"), world.step("con")], "q?", world.step("judge").factory
            ),
            run_id="d",
        )
    handoff = Handoff({"desk": world.step("desk").factory})
    with pytest.raises(UsageError, match="a Handoff is not journaled"):
        await journal.run_pattern(lambda: handoff.run("desk", "hello"), run_id="h")
    assert world.model_calls == Counter() and journal.runs() == []
    # Outside a journal they run as ever.
    assert (await handoff.run("desk", "hello")).final.final_text == "desk: recorded desk"


async def test_two_patterns_in_one_scope_are_refused_not_mixed_up(autojump_clock: Any) -> None:
    world = World()

    async def twice() -> Any:
        await parallel(world)()
        return await parallel(world)()  # its branch-0 would replay the first one's

    journal = RunJournal(MemoryJournal())
    # The pattern reports it as the step's failure, naming the cause.
    with pytest.raises(StepFailed, match="UsageError: two agent runs would journal under 'j/br"):
        await journal.run_pattern(twice, run_id="j")
    assert sorted(world.notes) == ["east", "north", "south"]  # the first pattern ran, once
