"""Approval inside journaled delegation trees: the stop, the decisions and what follows are
journaled, so a crash at any step neither asks the person again nor pays twice."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from test_journal import APPROVE, Approvals, Crash, CrashingBackend
from test_journal_tree import _responses, _results, _turn

from trio_agents import (
    AgentSpec,
    ApprovalDecision,
    Delegator,
    DelegatorResult,
    InvalidArgumentError,
    MemoryJournal,
    ModelRequest,
    ModelRunner,
    PendingApproval,
    RetryPolicy,
    RunJournal,
    StopReason,
    ToolCallInDoubt,
    tool,
)
from trio_agents._journal import _encode
from trio_agents.testing import FunctionModel, ScriptStep, tool_call

CLERK_RUN = "t/lead-1/researcher-1"


class PayTree:
    """lead -> researcher -> clerk; the clerk's ``pay`` needs a person's approval. With
    ``lead_signs``, the lead also calls its own ``sign`` (which needs approval too) in the
    turn that delegates, so one stop waits for calls at two depths."""

    def __init__(self, *, lead_signs: bool = False) -> None:
        self.lead_signs = lead_signs
        self.model_calls: Counter[tuple[str, int]] = Counter()
        self.paid: list[int] = []
        self.signed = 0

    def respond(self, request: ModelRequest) -> ScriptStep | str:
        who, turn = request.system or "", _turn(request)
        self.model_calls[who, turn] += 1
        if who == "lead":
            if turn == 0:
                step = tool_call(
                    "delegate", {"specialist": "researcher", "subtask": "buy"}, id="lead-1"
                )
                return step + tool_call("sign", {}, id="sign-1") if self.lead_signs else step
            return f"lead: {_results(request)}"
        if who == "researcher":
            if turn == 0:
                return tool_call(
                    "delegate", {"specialist": "clerk", "subtask": "pay"}, id="researcher-1"
                )
            return f"researcher: {_results(request)}"
        if turn == 0:
            return tool_call("pay", {"amount": 5}, id="pay-1")
        return f"clerk: {_results(request)}"

    def runner(self) -> ModelRunner:
        @tool(requires_approval=True)
        async def pay(amount: int) -> str:
            """Pay ``amount`` (counted outside)."""
            self.paid.append(amount)
            return f"paid {amount}"

        @tool(requires_approval=True)
        async def sign() -> str:
            """Sign (counted outside)."""
            self.signed += 1
            return "signed"

        return ModelRunner(
            FunctionModel(self.respond), tools=[pay, sign], retry=RetryPolicy(max_attempts=1)
        )


def delegator() -> Delegator:
    return Delegator(
        AgentSpec(name="lead", instructions="lead", tools=("delegate", "sign")),
        [
            AgentSpec(name="researcher", instructions="researcher", tools=("delegate",)),
            AgentSpec(name="clerk", instructions="clerk", tools=("pay",)),
        ],
    )


APPROVE_PAY = ApprovalDecision(call_id="pay-1", approved=True)
WAITING_PAY = PendingApproval(
    call_id="pay-1",
    tool="pay",
    arguments={"amount": 5},
    agent="lead/researcher/clerk",
    via=("lead-1", "researcher-1"),
)


async def inline(decisions: list[ApprovalDecision], *, lead_signs: bool = False) -> DelegatorResult:
    """The same tree without a journal, the person answering at once (the reference)."""
    tree = PayTree(lead_signs=lead_signs)
    waiting = await delegator().run("go", runner=tree.runner())
    return await delegator().resume(waiting, decisions, runner=tree.runner())


def _records(journal: RunJournal) -> dict[str, int]:
    return {run: len(journal.records(run)) for run in journal.runs()}


async def test_a_tree_that_waits_is_journaled_and_resumed_with_decisions(
    autojump_clock: Any,
) -> None:
    tree = PayTree()
    journal = RunJournal(MemoryJournal())
    waiting = await journal.run_delegator(delegator(), "go", runner=tree.runner(), run_id="t")
    assert waiting.result.stop_reason is StopReason.APPROVAL_REQUIRED
    assert waiting.pending_approvals == (WAITING_PAY,)
    # What waits can be read from the journal alone (after a crash, in another process).
    assert journal.pending_approvals("t") == (WAITING_PAY,)
    assert journal.pending_approvals(CLERK_RUN) == (
        PendingApproval(
            call_id="pay-1", tool="pay", arguments={"amount": 5}, agent="lead/researcher/clerk"
        ),
    )
    assert tree.paid == []

    done = await journal.resume_delegator(
        delegator(), "t", runner=tree.runner(), decisions=[APPROVE_PAY]
    )
    expected = await inline([APPROVE_PAY])
    assert done.final_answer == expected.final_answer == "lead: researcher: clerk: paid 5"
    assert done.result.stop_reason is StopReason.STOP
    assert tree.paid == [5]
    assert set(tree.model_calls.values()) == {1}  # no journaled response asked for again
    assert journal.pending_approvals("t") == ()
    kinds = [r.kind for r in journal.records(CLERK_RUN)]
    # The decision is journaled in the run that asked, before the payment starts.
    assert kinds.index("approval") < kinds.index("tool_started")
    # The delegation that waited got no result while it waited: only its real one.
    lead_results = [r.data for r in journal.records("t") if r.kind == "tool_result"]
    assert len(lead_results) == 1 and "paid 5" in str(lead_results[0])

    # Resumed again: everything replays, nothing runs, nobody is asked.
    calls = sum(tree.model_calls.values())
    again = await journal.resume_delegator(delegator(), "t", runner=tree.runner())
    assert again.final_answer == done.final_answer
    assert (tree.paid, sum(tree.model_calls.values())) == ([5], calls)
    with pytest.raises(InvalidArgumentError, match="does not wait for approval"):
        await journal.resume_delegator(
            delegator(), "t", runner=tree.runner(), decisions=[APPROVE_PAY]
        )


async def test_a_tree_resumed_without_decisions_still_waits(autojump_clock: Any) -> None:
    tree = PayTree()
    journal = RunJournal(MemoryJournal())
    await journal.run_delegator(delegator(), "go", runner=tree.runner(), run_id="t")
    before = _records(journal)
    again = await journal.resume_delegator(delegator(), "t", runner=tree.runner())
    assert again.pending_approvals == (WAITING_PAY,)
    assert _records(journal) == before  # the same stop is not journaled twice
    assert set(tree.model_calls.values()) == {1}
    # The waiting result resumes outside the journal too, as any DelegatorResult.
    assert again.suspended is not None


async def test_bad_decisions_for_a_tree_are_refused_before_anything_runs(
    autojump_clock: Any,
) -> None:
    tree = PayTree()
    journal = RunJournal(MemoryJournal())
    await journal.run_delegator(delegator(), "go", runner=tree.runner(), run_id="t")
    before, calls = _records(journal), sum(tree.model_calls.values())
    for decisions, problem in (
        ([], "no decision for pending call ids"),
        ([ApprovalDecision(call_id="nope", approved=True)], "unknown call id 'nope'"),
        (
            [ApprovalDecision(call_id="pay-1", approved=True, agent="lead")],
            "names agent 'lead'",
        ),
        ([APPROVE_PAY, APPROVE_PAY], "two decisions"),
    ):
        with pytest.raises(InvalidArgumentError, match=problem):
            await journal.resume_delegator(
                delegator(), "t", runner=tree.runner(), decisions=decisions
            )
        assert _records(journal) == before  # nothing journaled
        assert (tree.paid, sum(tree.model_calls.values())) == ([], calls)  # nothing ran
    done = await journal.resume_delegator(
        delegator(), "t", runner=tree.runner(), decisions=[APPROVE_PAY]
    )
    assert tree.paid == [5] and done.final_answer.endswith("paid 5")


async def test_a_denied_call_in_a_tree(autojump_clock: Any) -> None:
    deny = ApprovalDecision(call_id="pay-1", approved=False, reason="too much")
    tree = PayTree()
    journal = RunJournal(MemoryJournal())
    await journal.run_delegator(delegator(), "go", runner=tree.runner(), run_id="t")
    done = await journal.resume_delegator(delegator(), "t", runner=tree.runner(), decisions=[deny])
    expected = await inline([deny])
    assert done.final_answer == expected.final_answer
    assert "too much" in done.final_answer
    assert tree.paid == []


async def test_one_stop_waiting_at_two_depths(autojump_clock: Any) -> None:
    decisions = [APPROVE_PAY, ApprovalDecision(call_id="sign-1", approved=True)]
    tree = PayTree(lead_signs=True)
    journal = RunJournal(MemoryJournal())
    waiting = await journal.run_delegator(delegator(), "go", runner=tree.runner(), run_id="t")
    assert {(p.call_id, p.via) for p in journal.pending_approvals("t")} == {
        ("pay-1", ("lead-1", "researcher-1")),
        ("sign-1", ()),
    }
    assert journal.pending_approvals("t") == waiting.pending_approvals
    done = await journal.resume_delegator(
        delegator(), "t", runner=tree.runner(), decisions=decisions
    )
    expected = await inline(decisions, lead_signs=True)
    assert done.final_answer == expected.final_answer
    assert (tree.paid, tree.signed) == ([5], 1)
    assert set(tree.model_calls.values()) == {1}
    # The lead's own decision is journaled in the lead's run, the clerk's in the clerk's.
    assert [r.kind for r in journal.records("t")].count("approval") == 1
    assert [r.kind for r in journal.records(CLERK_RUN)].count("approval") == 1


def test_a_crash_at_any_step_after_the_decisions_repeats_nothing() -> None:
    """The person approves; the process dies at each journal step of what follows, in turn.
    Resuming (with the decisions again only if they were not journaled yet) gives the
    uncrashed answer; the payment runs once; no journaled response is asked for again."""

    async def main() -> None:
        expected = await inline([APPROVE_PAY])
        clean = RunJournal(MemoryJournal())
        await clean.run_delegator(delegator(), "go", runner=PayTree().runner(), run_id="t")
        waiting_records = sum(_records(clean).values())
        await clean.resume_delegator(
            delegator(), "t", runner=PayTree().runner(), decisions=[APPROVE_PAY]
        )
        steps = sum(_records(clean).values()) - waiting_records
        total_responses = _responses(clean)
        asked_again = in_doubt = 0
        for crash in range(steps + 1):
            tree = PayTree()
            store = MemoryJournal()
            await RunJournal(store).run_delegator(
                delegator(), "go", runner=tree.runner(), run_id="t"
            )
            try:
                await RunJournal(CrashingBackend(store, crash)).resume_delegator(
                    delegator(), "t", runner=tree.runner(), decisions=[APPROVE_PAY]
                )
            except* Crash:
                pass
            journal = RunJournal(store)
            journaled, before = _responses(journal), sum(tree.model_calls.values())
            decisions = None
            if journal.pending_approvals("t"):
                decisions = [APPROVE_PAY]  # died before the decision was journaled: ask again
                asked_again += 1
            try:
                result = await journal.resume_delegator(
                    delegator(), "t", runner=tree.runner(), decisions=decisions
                )
            except ToolCallInDoubt as exc:
                doubts = [(d.run_id, d.call.name) for d in exc.calls]
            else:
                doubts = []
            if doubts:
                # In this simulation the payment ran: the crash came at its result.
                assert doubts == [(CLERK_RUN, "pay")], crash
                in_doubt += 1
                journal.resolve(CLERK_RUN, "pay-1", "result", result="paid 5")
                result = await journal.resume_delegator(delegator(), "t", runner=tree.runner())
            assert result.final_answer == expected.final_answer, crash
            assert tree.paid == [5], crash  # once, whatever the crash point
            # No journaled model response was asked for again.
            assert sum(tree.model_calls.values()) - before == total_responses - journaled, crash
        assert steps == 8
        assert asked_again == 1  # only a crash before the decision's record asks again
        assert in_doubt == 1  # a crash at the payment's result: resolved, not paid again

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_pending_approvals_of_a_plain_run_and_bad_ids() -> None:
    journal = RunJournal(MemoryJournal())
    with pytest.raises(InvalidArgumentError, match="not journaled"):
        journal.pending_approvals("nope")
    tree = PayTree()
    await journal.run_delegator(delegator(), "go", runner=tree.runner(), run_id="t")
    with pytest.raises(InvalidArgumentError, match="run_id must be a non-empty str"):
        journal.pending_approvals("")


def test_a_crash_at_any_step_before_the_stop_reaches_it_again() -> None:
    """The process dies at each journal step of the run up to its stop for approval, the stop
    itself included. Resuming without decisions replays to the stop and journals it; the
    decision then finishes the run, as uncrashed."""

    async def main() -> None:
        expected = await inline([APPROVE_PAY])
        clean = RunJournal(MemoryJournal())
        await clean.run_delegator(delegator(), "go", runner=PayTree().runner(), run_id="t")
        steps = sum(_records(clean).values())
        total_responses = _responses(clean)
        for crash in range(steps):
            tree = PayTree()
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
            journaled, before = _responses(journal), sum(tree.model_calls.values())
            assert journal.pending_approvals("t") == (), crash  # the stop is not journaled
            with pytest.raises(InvalidArgumentError, match="resume it without decisions"):
                await journal.resume_delegator(
                    delegator(), "t", runner=tree.runner(), decisions=[APPROVE_PAY]
                )
            waiting = await journal.resume_delegator(delegator(), "t", runner=tree.runner())
            assert waiting.pending_approvals == (WAITING_PAY,), crash
            assert journal.pending_approvals("t") == (WAITING_PAY,), crash
            assert sum(tree.model_calls.values()) - before == total_responses - journaled, crash
            done = await journal.resume_delegator(
                delegator(), "t", runner=tree.runner(), decisions=[APPROVE_PAY]
            )
            assert done.final_answer == expected.final_answer, crash
            assert tree.paid == [5], crash
        assert steps == 11

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_decisions_for_a_run_that_does_not_wait_are_refused_before_it_runs(
    autojump_clock: Any,
) -> None:
    world = Approvals()
    journal = RunJournal(MemoryJournal())
    await journal.run(world.agent(), "go", run_id="r")
    await journal.resume(world.agent(), "r", decisions=APPROVE)
    calls, before = world.model_calls, journal.records("r")
    with pytest.raises(InvalidArgumentError, match="does not wait for approval"):
        await journal.resume(world.agent(), "r", decisions=APPROVE)
    assert (world.model_calls, world.paid, journal.records("r")) == (calls, 1, before)


async def test_a_version_1_journal_that_waits_is_resumed_as_it_was_written(
    autojump_clock: Any,
) -> None:
    # Written by the version before stops were journaled: no "approval_requested" record.
    world = Approvals()
    written = RunJournal(MemoryJournal())
    await written.run(world.agent(), "go", run_id="r")
    old = MemoryJournal()
    for record in written.records("r"):
        if record.kind != "approval_requested":
            line = _encode(attrs.evolve(record, index=len(old.read("r")), version=1))
            old.append("r", len(old.read("r")), line)
    journal = RunJournal(old)
    assert [r.version for r in journal.records("r")] == [1, 1]
    assert journal.pending_approvals("r") == ()  # version 1 does not say what waits
    done = await journal.resume(world.agent(), "r", decisions=APPROVE)
    assert (done.output, world.paid) == ("done", 1)
