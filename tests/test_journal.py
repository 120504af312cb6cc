"""Durable runs: the run journal, resume after a crash, in-doubt tool calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AssistantMessage,
    JournalBackend,
    MemoryJournal,
    ModelRequest,
    RunJournal,
    StopReason,
    ToolCallInDoubt,
    ToolContext,
    tool,
)
from trio_agents.testing import FunctionModel, ScriptStep, text, tool_call

# --------------------------------------------------------------------------- helpers


class World:
    """Tools with side effects the test counts, and a model played from a script."""

    def __init__(self, script: Sequence[ScriptStep]) -> None:
        self.script = list(script)
        self.model_calls = 0
        self.effects: list[tuple[str, str | None]] = []  # (call id, idempotency key)

    def model(self) -> FunctionModel:
        def answer(request: ModelRequest) -> ScriptStep:
            self.model_calls += 1
            turn = sum(isinstance(m, AssistantMessage) for m in request.messages)
            return self.script[turn]

        return FunctionModel(answer)

    def agent(self) -> Agent[str]:
        async def pay(ctx: ToolContext, amount: int) -> str:
            """Pay ``amount`` (a side effect)."""
            self.effects.append((ctx.call.id, ctx.idempotency_key))
            await trio.sleep(1)
            return f"paid {amount}"

        async def lookup(ctx: ToolContext, key: str) -> str:
            """Look ``key`` up (idempotent)."""
            self.effects.append((ctx.call.id, ctx.idempotency_key))
            return key.upper()

        return Agent(self.model(), tools=[tool(pay), tool(lookup)], max_turns=20)


class Crash(BaseException):
    """The process died (nothing in the run may handle it)."""


class CrashingBackend:
    """Stores the first ``crash_at`` appends, then "dies" at the next: nothing after it runs
    in the task that appended, and the crash tears the run down."""

    def __init__(self, inner: JournalBackend, crash_at: int) -> None:
        self.inner = inner
        self.crash_at = crash_at
        self.appends = 0

    def append(self, run_id: str, index: int, line: str) -> None:
        self.appends += 1
        if self.appends > self.crash_at:
            raise Crash
        self.inner.append(run_id, index, line)

    def read(self, run_id: str) -> list[str]:
        return self.inner.read(run_id)

    def runs(self) -> list[str]:
        return self.inner.runs()


PAY = [tool_call("pay", {"amount": 5}, id="p1"), text("done")]


# --------------------------------------------------------------------------- journaling


async def test_each_step_is_journaled_before_it_is_acted_on(autojump_clock: Any) -> None:
    backend = MemoryJournal()
    journal = RunJournal(backend)
    seen: list[list[str]] = []

    async def pay(amount: int) -> str:
        """Pay."""
        seen.append([r.kind for r in journal.records("r1")])
        return "ok"

    agent = Agent(
        FunctionModel(lambda r: PAY[sum(isinstance(m, AssistantMessage) for m in r.messages)]),
        tools=[tool(pay)],
    )
    result = await journal.run(agent, "go", run_id="r1")
    assert result.output == "done"
    # When the tool ran, the response asking for it and the call's start were journaled.
    assert seen == [["run_started", "model_response", "tool_started"]]
    assert [r.kind for r in journal.records("r1")] == [
        "run_started",
        "model_response",
        "tool_started",
        "tool_result",
        "model_response",
    ]
    assert [r.index for r in journal.records("r1")] == [0, 1, 2, 3, 4]
    assert journal.runs() == ["r1"]


async def test_resume_of_a_finished_run_calls_nothing_again(autojump_clock: Any) -> None:
    world = World(PAY)
    journal = RunJournal(MemoryJournal())
    first = await journal.run(world.agent(), "go", run_id="r1")
    calls, effects = world.model_calls, list(world.effects)
    again = await journal.resume(world.agent(), "r1")
    # The same result; only the duration differs: the replayed tool did not run (sleep).
    assert again == attrs.evolve(first, duration=again.duration)
    assert (first.duration, again.duration) == (1.0, 0.0)
    assert (world.model_calls, world.effects) == (calls, effects)


# The script of a run: turns of 1-2 parallel calls, then an answer.
call_turns = st.lists(
    st.lists(st.sampled_from(["pay", "lookup"]), min_size=1, max_size=2), max_size=3
)


def _script(turns: list[list[str]]) -> list[ScriptStep]:
    steps: list[ScriptStep] = []
    for t, names in enumerate(turns):
        step: ScriptStep | None = None
        for c, name in enumerate(names):
            args: dict[str, Any] = {"amount": t} if name == "pay" else {"key": f"k{t}{c}"}
            one = tool_call(name, args, id=f"c{t}{c}")
            step = one if step is None else step + one
        assert step is not None
        steps.append(step)
    steps.append(text("answer"))
    return steps


def _pays(turns: list[list[str]]) -> set[str]:
    return {f"c{t}{c}" for t, names in enumerate(turns) for c, n in enumerate(names) if n == "pay"}


@given(turns=call_turns, crash=st.integers(min_value=1, max_value=20))
def test_resume_after_a_crash_gives_the_uncrashed_result(
    turns: list[list[str]], crash: int
) -> None:
    script = _script(turns)

    async def main() -> None:
        expected = await RunJournal(MemoryJournal()).run(World(script).agent(), "go", run_id="r")
        world = World(script)
        store = MemoryJournal()
        try:
            await RunJournal(CrashingBackend(store, crash)).run(world.agent(), "go", run_id="r")
        except* Crash:
            pass
        journal = RunJournal(store)
        journaled_responses = sum(r.kind == "model_response" for r in journal.records("r"))
        before = world.model_calls
        effects_before = list(world.effects)
        try:
            resumed = await journal.resume(world.agent(), "r", idempotent=["lookup"])
        except ToolCallInDoubt as exc:
            doubts = exc.calls
        else:
            doubts = ()
        if doubts:
            # A payment cut off between its start and its result is never re-run silently:
            # the person checks and says it happened.
            assert {c.call.name for c in doubts} == {"pay"}
            assert world.effects == effects_before
            for doubt in doubts:
                amount = doubt.call.arguments["amount"]
                journal.resolve("r", doubt.call.id, "result", result=f"paid {amount}")
            resumed = await journal.resume(world.agent(), "r", idempotent=["lookup"])
        assert resumed.stop_reason is StopReason.STOP
        assert resumed.output == expected.output
        assert resumed.messages == expected.messages
        assert resumed.usage == expected.usage
        # No journaled model response was asked for again.
        assert world.model_calls - before == len(script) - journaled_responses
        # No payment ran twice; each ran at most once, in the crashed run or the resumed one.
        paid = [call_id for call_id, _ in world.effects if call_id in _pays(turns)]
        assert len(paid) == len(set(paid))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
