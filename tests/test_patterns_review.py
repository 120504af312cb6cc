"""review_loop with several workers: every draft reviewed, feedback to each, first approval wins."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given

from trio_agents import (
    Agent,
    AgentResult,
    Event,
    InvalidArgumentError,
    ModelRequest,
    RetryPolicy,
    TextBlock,
    UserMessage,
    dump,
    load,
)
from trio_agents.patterns import (
    ReviewResult,
    ReviewRound,
    RoundFinished,
    Step,
    StepFailed,
    StepOutput,
    review_loop,
)
from trio_agents.testing import FunctionModel, strategies, text


def prompt_of(request: ModelRequest) -> str:
    last = request.messages[-1]
    assert isinstance(last, UserMessage)
    block = last.content[0]
    assert isinstance(block, TextBlock)
    return block.text


def drafting(name: str, seen: list[str]) -> Step:
    def build() -> Agent:
        def answer(request: ModelRequest) -> str:
            seen.append(prompt_of(request))
            return f"{name}-draft{len(seen)}"

        return Agent(FunctionModel(answer), name=name, retry=RetryPolicy(max_attempts=1))

    return Step(name, build)


def reviewing(verdict: dict[str, str]) -> Agent:
    """Approves the drafts whose text is a key of ``verdict`` mapped to "APPROVED"."""

    def answer(request: ModelRequest) -> str:
        draft = prompt_of(request).split("\n\n")[-1]
        return verdict.get(draft, f"improve {draft}")

    return Agent(FunctionModel(answer), name="reviewer", retry=RetryPolicy(max_attempts=1))


async def test_each_draft_is_reviewed_and_each_worker_gets_its_own_feedback() -> None:
    seen_a: list[str] = []
    seen_b: list[str] = []
    events: list[Event] = []
    progress: list[StepOutput] = []
    result = await review_loop(
        [drafting("a", seen_a), drafting("b", seen_b)],
        lambda: reviewing({"b-draft2": "fine, APPROVED", "a-draft2": "APPROVED too"}),
        "task",
        event_sink=events.append,
        progress=progress,
    )
    assert seen_a == [
        "task",
        "task\n\nYour previous draft:\na-draft1\n\nReviewer feedback:\nimprove a-draft1",
    ]
    assert seen_b[1].endswith("Reviewer feedback:\nimprove b-draft1")  # its own feedback
    assert result.approved and result.winner == "a"  # both approved: declaration order wins
    assert result.output == "a-draft2"
    assert [(r.worker, r.round, r.draft.final_text) for r in result.rounds] == [
        ("a", 1, "a-draft1"),
        ("b", 1, "b-draft1"),
        ("a", 2, "a-draft2"),
        ("b", 2, "b-draft2"),
    ]
    assert [(e.round, e.detail) for e in events if isinstance(e, RoundFinished)] == [
        (1, "feedback"),
        (2, "approved: a"),
    ]
    assert len(progress) == 8  # 4 drafts, 4 reviews


async def test_no_approval_runs_out_of_rounds() -> None:
    result = await review_loop(
        [drafting("a", []), drafting("b", [])], lambda: reviewing({}), "t", max_rounds=2
    )
    assert not result.approved and result.winner is None
    assert len(result.rounds) == 4
    assert result.output == result.rounds[-1].draft.final_text


async def test_bad_workers_and_failures(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(InvalidArgumentError, match="review_loop needs a non-empty sequence"):
        await review_loop([], lambda: reviewing({}), "t")
    with pytest.raises(InvalidArgumentError, match="step names must be unique"):
        await review_loop([drafting("a", []), drafting("a", [])], lambda: reviewing({}), "t")
    with pytest.raises(InvalidArgumentError, match="reviewer must be an agent factory"):
        await review_loop([drafting("a", [])], "r", "t")  # type: ignore[arg-type]

    def slow_reviewer() -> Agent:
        return Agent(FunctionModel(lambda r: text("late", delay=5)), name="r")

    def broken() -> Agent:
        raise RuntimeError("no agent today")

    with pytest.raises(StepFailed, match="no agent today"):
        await review_loop([drafting("a", []), Step("x", broken)], slow_reviewer, "t")


async def test_outside_cancellation_is_bare(autojump_clock: trio.testing.MockClock) -> None:
    def slow_reviewer() -> Agent:
        return Agent(FunctionModel(lambda r: text("late", delay=5)), name="r")

    progress: list[StepOutput] = []
    caught: list[BaseException] = []
    with trio.move_on_after(1):
        try:
            await review_loop(
                [drafting("a", []), drafting("b", [])], slow_reviewer, "t", progress=progress
            )
        except BaseException as exc:
            caught.append(exc)
            raise
    assert [type(e) for e in caught] == [trio.Cancelled]
    assert sorted(o.step for o in progress) == ["a", "b"]  # the drafts are kept


@given(result=strategies.agent_results(), name=strategies.identifiers())
def test_review_values_with_workers_round_trip(result: AgentResult, name: str) -> None:
    value = ReviewResult(approved=True, rounds=(ReviewRound(result, result, name, 2),), winner=name)
    assert load(dump(value), ReviewResult) == value
