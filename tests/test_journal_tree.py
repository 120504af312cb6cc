"""Durable delegation trees: specialists journal under child run ids and resume with the tree."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing
from test_cancellation_inventory import bare, cut_off
from test_journal import Crash, CrashingBackend

from trio_agents import (
    AgentSpec,
    AssistantMessage,
    Delegator,
    InvalidArgumentError,
    MemoryJournal,
    ModelRequest,
    ModelRunner,
    RetryPolicy,
    RunJournal,
    ToolCallInDoubt,
    ToolResultMessage,
    tool,
)
from trio_agents.testing import FunctionModel, ScriptStep, hang, text, tool_call


def _turn(request: ModelRequest) -> int:
    return sum(isinstance(m, AssistantMessage) for m in request.messages)


def _results(request: ModelRequest) -> str:
    last = request.messages[-1]
    assert isinstance(last, ToolResultMessage)
    return " | ".join(r.content for r in last.results)


class Tree:
    """lead -> researcher -> analyst; the two specialists each record a note (a side effect)."""

    def __init__(self) -> None:
        self.model_calls: Counter[tuple[str, int]] = Counter()
        self.notes: list[str] = []

    def respond(self, request: ModelRequest) -> ScriptStep | str:
        who, turn = request.system or "", _turn(request)
        self.model_calls[who, turn] += 1
        if who == "lead":
            if turn == 0:
                return tool_call(
                    "delegate", {"specialist": "researcher", "subtask": "dig"}, id="lead-1"
                )
            return f"lead: {_results(request)}"
        if turn == 0:
            return tool_call("record", {"note": who}, id=f"{who}-1")
        if who == "researcher" and turn == 1:
            return tool_call(
                "delegate", {"specialist": "analyst", "subtask": "measure"}, id="researcher-2"
            )
        return text(f"{who}: {_results(request)}")

    def runner(self) -> ModelRunner:
        async def record(note: str) -> str:
            """Record ``note`` outside (counted)."""
            self.notes.append(note)
            return f"recorded {note}"

        return ModelRunner(
            FunctionModel(self.respond),
            tools=[tool(record)],
            retry=RetryPolicy(max_attempts=1),
        )


def delegator() -> Delegator:
    return Delegator(
        AgentSpec(name="lead", instructions="lead", tools=("delegate",)),
        [
            AgentSpec(name="researcher", instructions="researcher", tools=("record", "delegate")),
            AgentSpec(name="analyst", instructions="analyst", tools=("record",)),
        ],
    )


def _responses(journal: RunJournal) -> int:
    return sum(r.kind == "model_response" for run in journal.runs() for r in journal.records(run))


async def test_specialists_journal_under_child_run_ids(autojump_clock: Any) -> None:
    tree = Tree()
    journal = RunJournal(MemoryJournal())
    result = await journal.run_delegator(delegator(), "go", runner=tree.runner(), run_id="t")
    assert result.final_answer == "lead: researcher: analyst: recorded analyst"
    assert journal.runs() == ["t", "t/lead-1", "t/lead-1/researcher-2"]
    calls = sum(tree.model_calls.values())
    again = await journal.resume_delegator(delegator(), "t", runner=tree.runner())
    assert again.final_answer == result.final_answer
    assert sum(tree.model_calls.values()) == calls  # everything replayed
    assert tree.notes == ["researcher", "analyst"]
    with pytest.raises(InvalidArgumentError, match="already journaled"):
        await journal.run_delegator(delegator(), "go", runner=tree.runner(), run_id="t")


def test_a_tree_resumed_after_a_crash_at_any_step_repeats_nothing() -> None:
    async def main() -> None:
        clean = Tree()
        reference = RunJournal(MemoryJournal())
        expected = await reference.run_delegator(
            delegator(), "go", runner=clean.runner(), run_id="t"
        )
        steps = sum(len(reference.records(run)) for run in reference.runs())
        total_responses = _responses(reference)
        seen_doubt_in: set[str] = set()
        for crash in range(steps + 1):
            tree = Tree()
            store = MemoryJournal()
            try:
                await RunJournal(CrashingBackend(store, crash)).run_delegator(
                    delegator(), "go", runner=tree.runner(), run_id="t"
                )
            except* Crash:
                pass
            journal = RunJournal(store)
            if not journal.runs():
                continue  # died before the first record: nothing to resume
            journaled = _responses(journal)
            before = sum(tree.model_calls.values())
            try:
                result = await journal.resume_delegator(delegator(), "t", runner=tree.runner())
            except ToolCallInDoubt as exc:
                doubts = exc.calls
            else:
                doubts = ()
            if doubts:
                # In this simulation a call in doubt ran (the crash came at its result).
                for doubt in doubts:
                    seen_doubt_in.add(doubt.run_id)
                    assert doubt.call.name == "record"
                    note = doubt.call.arguments["note"]
                    journal.resolve(
                        doubt.run_id, doubt.call.id, "result", result=f"recorded {note}"
                    )
                result = await journal.resume_delegator(delegator(), "t", runner=tree.runner())
            assert result.final_answer == expected.final_answer, crash
            assert sorted(tree.notes) == ["analyst", "researcher"], crash  # each once
            # No journaled model response was asked for again.
            assert sum(tree.model_calls.values()) - before == total_responses - journaled, crash
        assert steps == 18
        # Crashes left calls in doubt two and three levels down; each was resolved, not rerun.
        assert seen_doubt_in == {"t/lead-1", "t/lead-1/researcher-2"}

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_outside_cancellation_of_a_journaled_tree_is_bare() -> None:
    def respond(request: ModelRequest) -> ScriptStep | str:
        if request.system == "lead" and _turn(request) == 0:
            return tool_call("delegate", {"specialist": "analyst", "subtask": "x"}, id="d1")
        return hang()  # the specialist, one level down

    async def record(note: str) -> str:
        """Record."""
        return note

    runner = ModelRunner(
        FunctionModel(respond), tools=[tool(record)], retry=RetryPolicy(max_attempts=1)
    )
    journal = RunJournal(MemoryJournal())
    bare(await cut_off(lambda: journal.run_delegator(delegator(), "go", runner=runner, run_id="t")))
    assert journal.runs() == ["t", "t/d1"]
    bare(await cut_off(lambda: journal.resume_delegator(delegator(), "t", runner=runner)))
