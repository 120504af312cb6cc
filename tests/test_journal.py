"""Durable runs: the run journal, resume after a crash, in-doubt tool calls."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from test_cancellation_inventory import bare, cut_off

from trio_agents import (
    JOURNAL_SCHEMA_VERSION,
    Agent,
    AlreadyRunningError,
    ApprovalDecision,
    AssistantMessage,
    InDoubtCall,
    InvalidArgumentError,
    JournalBackend,
    JournalCorrupted,
    JournalRecord,
    MemoryJournal,
    ModelRequest,
    RunJournal,
    SQLiteJournal,
    StateStore,
    StopReason,
    ToolCallBlock,
    ToolCallInDoubt,
    ToolContext,
    UsageError,
    dump,
    load,
    tool,
)
from trio_agents._journal import _decode, _encode
from trio_agents.testing import FunctionModel, ScriptStep, hang, text, tool_call

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


# --------------------------------------------------------------------------- in doubt


async def _crashed_payment(world: World, after: int = 3) -> RunJournal:
    """A run that paid, then died while journaling the payment's result."""
    store = MemoryJournal()
    with pytest.raises(Crash):
        await RunJournal(CrashingBackend(store, after)).run(world.agent(), "go", run_id="r")
    return RunJournal(store)


async def test_an_in_doubt_call_is_not_rerun_and_bad_resolutions_change_nothing(
    autojump_clock: Any,
) -> None:
    world = World(PAY)
    journal = await _crashed_payment(world)
    assert world.effects == [("p1", "r/p1")]  # it paid, then died
    with pytest.raises(ToolCallInDoubt, match=r"pay \(call 'p1' of run 'r'\)") as caught:
        await journal.resume(world.agent(), "r")
    assert [(c.run_id, c.call.id) for c in caught.value.calls] == [("r", "p1")]
    assert world.effects == [("p1", "r/p1")]  # not paid again
    before = journal.records("r")
    with pytest.raises(InvalidArgumentError, match="'rerun', 'result', 'fail'"):
        journal.resolve("r", "p1", "maybe")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"calls in doubt: \['p1'\]"):
        journal.resolve("r", "nope", "fail")
    assert journal.records("r") == before


@pytest.mark.parametrize(
    ("how", "effects", "content"),
    [
        ("rerun", 2, "paid 5"),
        ("result", 1, "settled"),
        ("fail", 1, "the outcome of this call is unknown"),
    ],
)
async def test_resolutions(autojump_clock: Any, how: Any, effects: int, content: str) -> None:
    world = World(PAY)
    journal = await _crashed_payment(world)
    journal.resolve("r", "p1", how, result="settled")
    result = await journal.resume(world.agent(), "r")
    assert result.output == "done"
    assert len(world.effects) == effects
    tool_results = [b for m in result.messages for b in getattr(m, "results", ())]
    assert [r.content.startswith(content) for r in tool_results] == [True]
    # Resolved once: a second resolution is refused.
    with pytest.raises(InvalidArgumentError, match="not in doubt"):
        journal.resolve("r", "p1", "fail")


async def test_an_idempotent_tool_reruns_with_the_same_key(autojump_clock: Any) -> None:
    world = World([tool_call("lookup", {"key": "a"}, id="l1"), text("done")])
    store = MemoryJournal()
    with pytest.raises(Crash):
        # Input, response, start: then the tool runs and the process dies at its result.
        await RunJournal(CrashingBackend(store, 3)).run(world.agent(), "go", run_id="r")
    assert world.effects == [("l1", "r/l1")]
    result = await RunJournal(store).resume(world.agent(), "r", idempotent=["lookup"])
    assert result.output == "done"
    assert world.effects == [("l1", "r/l1"), ("l1", "r/l1")]


# --------------------------------------------------------------------------- storage


def _line(run_id: str, index: int, kind: Any = "run_started", version: int = 1) -> str:
    return _encode(JournalRecord(run_id=run_id, index=index, kind=kind, data=[], version=version))


@given(
    run_id=st.text(min_size=1, max_size=8),
    index=st.integers(0, 10**6),
    data=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
        max_leaves=8,
    ),
)
def test_records_round_trip(run_id: str, index: int, data: Any) -> None:
    record = JournalRecord(run_id=run_id, index=index, kind="tool_result", data=data)
    assert _decode(run_id, index, _encode(record)) == record
    assert load(dump(record), JournalRecord) == record  # the one converter, exactly
    doubt = InDoubtCall(run_id=run_id, call=ToolCallBlock(id=str(index), name="pay"))
    assert load(dump(doubt), InDoubtCall) == doubt


async def test_a_torn_tail_is_dropped_and_damage_in_the_middle_is_an_error(
    autojump_clock: Any,
) -> None:
    world = World(PAY)
    store = MemoryJournal()
    journal = RunJournal(store)
    expected = await journal.run(world.agent(), "go", run_id="r")
    lines = store.read("r")
    torn = MemoryJournal()
    for i, line in enumerate(lines):
        torn.append("r", i, line if i < len(lines) - 1 else line[: len(line) // 2])
    assert len(RunJournal(torn).records("r")) == len(lines) - 1
    calls = world.model_calls
    resumed = await RunJournal(torn).resume(world.agent(), "r")
    assert resumed.messages == expected.messages
    assert world.model_calls == calls + 1  # only the torn last response was asked again

    bad = MemoryJournal()
    for i, line in enumerate(lines):
        bad.append("r", i, line.replace("p1", "p2") if i == 2 else line)
    with pytest.raises(JournalCorrupted, match=r"record 2 of run 'r' is damaged"):
        RunJournal(bad).records("r")


def test_a_newer_schema_is_refused() -> None:
    store = MemoryJournal()
    store.append("r", 0, _line("r", 0, version=JOURNAL_SCHEMA_VERSION + 1))
    with pytest.raises(JournalCorrupted, match="newer trio_agents"):
        RunJournal(store).records("r")


async def test_sqlite_journal_survives_reopening(tmp_path: Path, autojump_clock: Any) -> None:
    world = World(PAY)
    path = tmp_path / "journal.db"
    with SQLiteJournal(path) as backend:
        expected = await RunJournal(backend).run(world.agent(), "go", run_id="r")
    with SQLiteJournal(path) as backend:
        assert backend.runs() == ["r"]
        calls = world.model_calls
        resumed = await RunJournal(backend).resume(world.agent(), "r")
        assert world.model_calls == calls
    assert resumed.messages == expected.messages
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_sqlite_journal_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    before = other.read_bytes()
    with pytest.raises(InvalidArgumentError, match="not a run journal"):
        SQLiteJournal(other)
    assert other.read_bytes() == before
    state = tmp_path / "state.db"
    StateStore.open_sqlite(state).close()
    with pytest.raises(InvalidArgumentError, match="not a run journal"):
        SQLiteJournal(state)


# --------------------------------------------------------------------------- bad input


async def test_bad_input_is_refused_and_journals_nothing(autojump_clock: Any) -> None:
    world = World(PAY)
    journal = RunJournal(MemoryJournal())
    await journal.run(world.agent(), "go", run_id="r")
    with pytest.raises(InvalidArgumentError, match="already journaled"):
        await journal.run(world.agent(), "go", run_id="r")
    with pytest.raises(InvalidArgumentError, match="not journaled"):
        await journal.resume(world.agent(), "missing")
    busy = world.agent()
    await busy.run("earlier")
    with pytest.raises(InvalidArgumentError, match="has a history"):
        await journal.run(busy, "go", run_id="s")
    with pytest.raises(InvalidArgumentError, match="non-empty str"):
        await journal.run(world.agent(), "go", run_id="")
    with pytest.raises(InvalidArgumentError, match="JournalBackend"):
        RunJournal(object())  # type: ignore[arg-type]
    assert journal.runs() == ["r"]


async def test_resume_refuses_an_agent_built_differently(autojump_clock: Any) -> None:
    world = World(PAY)
    journal = RunJournal(MemoryJournal())
    await journal.run(world.agent(), "go", run_id="r")
    before = journal.records("r")
    other = Agent(world.model(), instructions="be brief")
    with pytest.raises(InvalidArgumentError, match="another instructions, tools"):
        await journal.resume(other, "r")
    assert journal.records("r") == before


async def test_a_reused_call_id_is_refused_before_it_is_journaled(
    autojump_clock: Any,
) -> None:
    script = [
        tool_call("lookup", {"key": "a"}, id="c1"),
        tool_call("lookup", {"key": "b"}, id="c1"),
    ]
    world = World([*script, text("never")])
    journal = RunJournal(MemoryJournal())
    with pytest.raises(UsageError, match=r"reused tool call ids \['c1'\]"):
        await journal.run(world.agent(), "go", run_id="r")
    kinds = [r.kind for r in journal.records("r")]
    assert kinds == ["run_started", "model_response", "tool_started", "tool_result"]


async def test_a_running_agent_is_refused_and_keeps_its_model() -> None:
    model = FunctionModel(lambda r: hang())
    agent = Agent(model)
    journal = RunJournal(MemoryJournal())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.run, "busy")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(AlreadyRunningError, match="already running"):
            await journal.run(agent, "go", run_id="r")
        assert agent.model is model
        nursery.cancel_scope.cancel()
    assert journal.runs() == []


# --------------------------------------------------------------------------- cancellation


async def test_outside_cancellation_of_run_and_resume_is_bare() -> None:
    model = FunctionModel(lambda r: PAY[0] if len(r.messages) == 1 else hang())
    journal = RunJournal(MemoryJournal())
    agent = Agent(model)
    bare(await cut_off(lambda: journal.run(agent, "go", run_id="r")))
    # Cut off in its second model call, after the first turn was journaled.
    assert [r.kind for r in journal.records("r")] == [
        "run_started",
        "model_response",
        "tool_started",
        "tool_result",
    ]
    assert agent.last_result is not None
    assert agent.last_result.stop_reason is StopReason.ABORTED
    bare(await cut_off(lambda: journal.resume(Agent(model), "r")))


async def test_a_tool_declared_idempotent_reruns_without_being_named(
    autojump_clock: Any,
) -> None:
    keys: list[str | None] = []

    @tool(idempotent=True)
    async def charge(ctx: ToolContext, amount: int) -> str:
        """Charge ``amount``; the payment service deduplicates by the idempotency key."""
        keys.append(ctx.idempotency_key)
        return "charged"

    script = [tool_call("charge", {"amount": 3}, id="k1"), text("done")]

    def agent() -> Agent[str]:
        model = FunctionModel(
            lambda r: script[sum(isinstance(m, AssistantMessage) for m in r.messages)]
        )
        return Agent(model, tools=[charge])

    store = MemoryJournal()
    with pytest.raises(Crash):
        await RunJournal(CrashingBackend(store, 3)).run(agent(), "go", run_id="r")
    started = RunJournal(store).records("r")[2]
    assert started.kind == "tool_started"
    assert isinstance(started.data, dict) and started.data["idempotent"] is True
    result = await RunJournal(store).resume(agent(), "r")
    assert result.output == "done"
    assert keys == ["r/k1", "r/k1"]


# --------------------------------------------------------------------------- approval


class Approvals:
    """A payment that needs a person's approval; counts payments and model calls."""

    def __init__(self) -> None:
        self.paid = 0
        self.model_calls = 0

    def agent(self) -> Agent[str]:
        @tool(requires_approval=True)
        async def pay(amount: int) -> str:
            """Pay ``amount``."""
            self.paid += 1
            return f"paid {amount}"

        def answer(request: ModelRequest) -> ScriptStep:
            self.model_calls += 1
            return PAY[sum(isinstance(m, AssistantMessage) for m in request.messages)]

        return Agent(FunctionModel(answer), tools=[pay])


APPROVE = [ApprovalDecision(call_id="p1", approved=True)]


async def test_approval_decisions_are_journaled_before_they_are_acted_on(
    autojump_clock: Any,
) -> None:
    world = Approvals()
    journal = RunJournal(MemoryJournal())
    waiting = await journal.run(world.agent(), "go", run_id="r")
    assert waiting.stop_reason is StopReason.APPROVAL_REQUIRED
    before = journal.records("r")
    with pytest.raises(InvalidArgumentError, match="no decision for pending call ids"):
        await journal.resume(world.agent(), "r", decisions=[])
    assert journal.records("r") == before
    # Resumed in another agent (as in another process): the approved payment runs once.
    done = await journal.resume(world.agent(), "r", decisions=APPROVE)
    assert (done.stop_reason, done.output, world.paid) == (StopReason.STOP, "done", 1)
    kinds = [r.kind for r in journal.records("r")]
    assert kinds[len(before) :] == ["approval", "tool_started", "tool_result", "model_response"]
    # Resumed again: the decision is replayed, nothing runs again.
    calls = world.model_calls
    again = await journal.resume(world.agent(), "r")
    assert again == attrs.evolve(done, duration=again.duration)
    assert (world.paid, world.model_calls) == (1, calls)
    with pytest.raises(InvalidArgumentError, match="does not wait for approval"):
        await journal.resume(world.agent(), "r", decisions=APPROVE)


async def test_a_crash_after_the_decision_resumes_without_asking_again(
    autojump_clock: Any,
) -> None:
    world = Approvals()
    store = MemoryJournal()
    await RunJournal(store).run(world.agent(), "go", run_id="r")
    with pytest.raises(Crash):  # journals the decision, dies at the payment's start
        await RunJournal(CrashingBackend(store, 1)).resume(world.agent(), "r", decisions=APPROVE)
    assert world.paid == 0
    assert [r.kind for r in RunJournal(store).records("r")][-1] == "approval"
    result = await RunJournal(store).resume(world.agent(), "r")
    assert (result.output, world.paid) == ("done", 1)


def test_sqlite_synchronous_is_applied_and_checked(tmp_path: Path) -> None:

    path = tmp_path / "normal.db"
    with SQLiteJournal(path, synchronous="NORMAL") as backend:
        assert backend.synchronous == "NORMAL"
        backend.append("r", 0, "x")
        # PRAGMA synchronous: 1 is NORMAL, 2 is FULL (per connection).
        assert backend._connection().execute("PRAGMA synchronous").fetchone()[0] == 1
    with SQLiteJournal(path) as backend:
        assert backend._connection().execute("PRAGMA synchronous").fetchone()[0] == 2
        assert backend.read("r") == ["x"]
    with pytest.raises(InvalidArgumentError, match="synchronous must be 'FULL' or 'NORMAL'"):
        SQLiteJournal(tmp_path / "other.db", synchronous="OFF")  # type: ignore[arg-type]
    assert not (tmp_path / "other.db").exists()  # refused before anything was created
