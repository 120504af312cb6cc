"""Loop, map-reduce, vote, review loop and tournament: more shapes on top of the pipeline's."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import trio

from .._agent import Agent
from .._errors import InvalidArgumentError
from .._events import Event, EventSink
from .._infra import SharedInfra
from .._journal import refuse_unjournaled, run_nested
from .._messages import AgentResult, ToolCallBlock
from .._orchestrator import AgentFactory, _raise_flat
from ._common import _build, _check_infra, _pattern_events, _sink
from ._pipeline import Step, StepFailed, StepOutput, _check_steps, _failed
from ._pipeline import _emit as _step_event

__all__ = [
    "APPROVED_MARKER",
    "DebateResult",
    "Loop",
    "LoopExhausted",
    "LoopResult",
    "Match",
    "MapReduceResult",
    "ReviewResult",
    "ReviewRound",
    "RoundFinished",
    "TournamentResult",
    "VoteResult",
    "debate",
    "map_reduce",
    "normalise_answer",
    "review_loop",
    "tournament",
    "vote",
]


@attrs.frozen(kw_only=True)
class RoundFinished(Event):
    """A round of a loop, review loop or tournament ended (``agent`` is the pattern's name)."""

    kind: ClassVar[str] = "round_finished"
    round: int
    """1 for the first round."""
    detail: str = ""
    """What the round decided, in words."""


def _emit(sink: EventSink | None, pattern: str, number: int, detail: str) -> None:
    if sink is not None:
        sink(RoundFinished(time=trio.current_time(), agent=pattern, round=number, detail=detail))


async def _run(
    step: Step,
    index: int,
    prompt: str,
    done: Sequence[StepOutput] = (),
    progress: list[StepOutput] | None = None,
    infra: SharedInfra | None = None,
    sink: EventSink | None = None,
    *,
    key: str,
) -> StepOutput:
    """One step's agent on ``prompt``; inside a journal (:meth:`RunJournal.run_pattern
    <trio_agents.RunJournal.run_pattern>`) its run is journaled under ``key``, which names
    the step uniquely within the pattern's run."""
    agent: Agent | None = None
    try:
        agent = _build(step.factory, infra)
        result = await run_nested(agent, prompt, key=key)
    except Exception as exc:
        _step_event(sink, step, index, ok=False, cancelled=False)
        who = agent.name if agent is not None else step.name
        raise StepFailed(_failed(step, index, who, exc), outputs=done) from exc
    _step_event(sink, step, index, ok=True, cancelled=False)
    out = StepOutput(step.name, result)
    if progress is not None:
        progress.append(out)
    return out


async def _all(
    steps: Sequence[Step],
    prompts: Sequence[str],
    limit: int,
    progress: list[StepOutput] | None = None,
    infra: SharedInfra | None = None,
    sink: EventSink | None = None,
    *,
    key: str,
) -> list[StepOutput]:
    """Each step on its prompt, at most ``limit`` at once; the first failure cancels the rest.
    Step *i* is journaled under ``"<key>-<i>"`` (see :func:`_run`)."""
    results: dict[int, StepOutput] = {}
    limiter = trio.CapacityLimiter(limit)

    async def one(index: int) -> None:
        async with limiter:
            results[index] = await _run(
                steps[index], index, prompts[index], (), progress, infra, sink, key=f"{key}-{index}"
            )

    try:
        async with trio.open_nursery() as nursery:
            for index in range(len(steps)):
                nursery.start_soon(one, index)
    except BaseExceptionGroup as group:
        leaves = [e for e in _leaves(group) if isinstance(e, StepFailed)]
        if leaves:
            leaves[0].outputs = tuple(results[i] for i in sorted(results))
        _raise_flat(group)
    return [results[i] for i in range(len(steps))]


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _positive(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _labelled(outputs: Sequence[StepOutput]) -> str:
    return "\n\n".join(f"[{o.step}]\n{o.result.final_text}" for o in outputs)


# --------------------------------------------------------------------------- loop


class LoopExhausted(StepFailed):
    """A :class:`Loop` reached ``max_iterations`` without its exit condition; keeps the outputs."""


@attrs.frozen
class LoopResult:
    """What :meth:`Loop.run` produced."""

    outputs: tuple[StepOutput, ...]
    """Every iteration's output, in order."""
    exit: str
    """Why it stopped: ``"tool"`` (the exit tool was called) or ``"match"`` (the output matched)."""

    @property
    def output(self) -> str:
        """The last iteration's final text."""
        return self.outputs[-1].result.final_text


def _called(result: AgentResult, tool_name: str) -> bool:
    return any(
        isinstance(block, ToolCallBlock) and block.name == tool_name
        for message in result.messages
        for block in getattr(message, "content", ())
    )


class Loop:
    """Runs a step again and again, each time on the previous answer, until it is done.

    Each iteration builds a fresh agent. The loop stops after the first iteration whose agent
    called the tool ``until_tool``, or whose final text matches ``until_output`` (a regular
    expression, compiled here, searched anywhere in the text).

    :raises InvalidArgumentError: no exit condition, a bad regular expression (names it and the
        error), or ``max_iterations < 1``.
    """

    def __init__(
        self,
        step: Step,
        *,
        until_tool: str | None = None,
        until_output: str | None = None,
        max_iterations: int = 5,
        event_sink: EventSink | None = None,
        infra: SharedInfra | None = None,
    ) -> None:
        _check_steps([step], "Loop")
        if until_tool is None and until_output is None:
            raise InvalidArgumentError("Loop needs an exit: until_tool=, until_output= or both")
        try:
            self.pattern = re.compile(until_output) if until_output is not None else None
        except re.error as exc:
            raise InvalidArgumentError(
                f"until_output is not a valid regular expression: {until_output!r} ({exc})"
            ) from None
        self.step = step
        self.until_tool = until_tool
        self.max_iterations = _positive("max_iterations", max_iterations)
        self.infra = _check_infra(infra)
        self.event_sink = _sink(event_sink, self.infra)

    async def run(self, input: str, *, progress: list[StepOutput] | None = None) -> LoopResult:
        """Iterate from ``input``; each finished iteration is appended to ``progress`` at once.

        :raises LoopExhausted: ``max_iterations`` ran without an exit (outputs kept).
        :raises StepFailed: an iteration failed (outputs kept).
        """
        outputs: list[StepOutput] = []
        text = input
        for number in range(1, self.max_iterations + 1):
            out = await _run(
                self.step, number - 1, text, outputs, progress, self.infra, key=f"round-{number}"
            )
            outputs.append(out)
            text = out.result.final_text
            exit = ""
            if self.until_tool is not None and _called(out.result, self.until_tool):
                exit = "tool"
            elif self.pattern is not None and self.pattern.search(text):
                exit = "match"
            _emit(self.event_sink, self.step.name, number, exit or "again")
            if exit:
                return LoopResult(outputs=tuple(outputs), exit=exit)
        wanted = " or ".join(
            w
            for w in (
                f"a call to {self.until_tool!r}" if self.until_tool else "",
                f"output matching {self.pattern.pattern!r}" if self.pattern else "",
            )
            if w
        )
        raise LoopExhausted(
            f"loop {self.step.name!r} ran max_iterations={self.max_iterations} without {wanted}",
            outputs=outputs,
        )


# --------------------------------------------------------------------------- map-reduce


@attrs.frozen
class MapReduceResult:
    """What :func:`map_reduce` produced."""

    mapped: tuple[StepOutput, ...]
    """One output per item, in item order (``step`` is ``"map[i]"``)."""
    reduced: AgentResult
    """The reducer's result."""

    @property
    def output(self) -> str:
        """The reducer's final text."""
        return self.reduced.final_text


async def map_reduce(
    mapper: AgentFactory,
    reducer: AgentFactory,
    items: Sequence[str],
    *,
    max_concurrency: int = 4,
    progress: list[StepOutput] | None = None,
    event_sink: EventSink | None = None,
    infra: SharedInfra | None = None,
) -> MapReduceResult:
    """Run a fresh mapper agent per item (at most ``max_concurrency`` at once), then a reducer
    on the labelled answers (``[map[0]] ...``, in item order).

    A failing mapper cancels the others and raises :exc:`StepFailed` naming the item
    (``step 2 ('map[2]', ...)``) with the finished outputs kept. Events: a
    :class:`~trio_agents.PatternStarted`, a :class:`StepFinished` per mapper and for the
    reducer (``"reduce"``), then a :class:`~trio_agents.PatternFinished`.
    """
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise InvalidArgumentError(f"map_reduce needs a non-empty sequence of items, got {items!r}")
    limit = _positive("max_concurrency", max_concurrency)
    infra = _check_infra(infra)
    sink = _sink(event_sink, infra)
    steps = [Step(f"map[{i}]", mapper) for i in range(len(items))]
    with _pattern_events(sink, "map_reduce", "map_reduce", len(items)) as outcome:
        mapped = await _all(
            steps, [str(item) for item in items], limit, progress, infra, sink, key="map"
        )
        reduced = await _run(
            Step("reduce", reducer),
            len(items),
            _labelled(mapped),
            mapped,
            progress,
            infra,
            sink,
            key="reduce",
        )
        outcome.detail = f"{len(mapped)} mapped"
    return MapReduceResult(mapped=tuple(mapped), reduced=reduced.result)


# --------------------------------------------------------------------------- vote


def normalise_answer(text: str) -> str:
    """How :func:`vote` compares answers: case-folded, whitespace collapsed, trailing ``.!?``
    and surrounding quotes removed (``" Paris. "`` and ``"paris"`` are one answer)."""
    return " ".join(text.split()).casefold().strip("\"'").rstrip(".!?").strip()


@attrs.frozen(kw_only=True)
class VoteResult:
    """What :func:`vote` produced."""

    votes: tuple[StepOutput, ...]
    """Every voter's output, in declaration order."""
    winner: str
    """The winning answer, normalised (see :func:`normalise_answer`)."""
    agreement: float
    """The share of voters that gave the winning answer (0 to 1)."""
    tie: bool
    """Whether several answers had the most votes; the winner is then the one of those given
    first in declaration order."""
    synthesis: AgentResult | None = None
    """The synthesizer's result, when there was one."""

    @property
    def output(self) -> str:
        """The synthesizer's final text, else the winning answer."""
        return self.synthesis.final_text if self.synthesis is not None else self.winner


async def vote(
    voters: Sequence[Step],
    question: str,
    *,
    synthesizer: AgentFactory | None = None,
    progress: list[StepOutput] | None = None,
    event_sink: EventSink | None = None,
    infra: SharedInfra | None = None,
) -> VoteResult:
    """Ask every voter at once; the normalised answer given most often wins.

    With ``synthesizer``, a fresh agent then gets the labelled answers and the tally.
    Events: a :class:`~trio_agents.PatternStarted`, a :class:`StepFinished` per voter (and for
    ``"synthesize"``), then a :class:`~trio_agents.PatternFinished` whose ``detail`` is the
    winner.
    """
    steps = _check_steps(voters, "vote")
    infra = _check_infra(infra)
    sink = _sink(event_sink, infra)
    with _pattern_events(sink, "vote", "vote", len(steps)) as outcome:
        result = await _vote(steps, question, synthesizer, progress, infra, sink)
        outcome.detail = result.winner
    return result


async def _vote(
    steps: Sequence[Step],
    question: str,
    synthesizer: AgentFactory | None,
    progress: list[StepOutput] | None,
    infra: SharedInfra | None,
    sink: EventSink | None,
) -> VoteResult:
    votes = await _all(
        steps, [question] * len(steps), len(steps), progress, infra, sink, key="vote"
    )
    counts: dict[str, int] = {}
    for out in votes:
        key = normalise_answer(out.result.final_text)
        counts[key] = counts.get(key, 0) + 1
    top = max(counts.values())
    leaders = [answer for answer, count in counts.items() if count == top]  # in first-cast order
    synthesis = None
    if synthesizer is not None:
        tally = ", ".join(f"{answer!r}: {count}" for answer, count in counts.items())
        prompt = f"{question}\n\n{_labelled(votes)}\n\nvotes: {tally}"
        synthesize = Step("synthesize", synthesizer)
        synthesis = (
            await _run(
                synthesize, len(steps), prompt, votes, progress, infra, sink, key="synthesize"
            )
        ).result
    return VoteResult(
        votes=tuple(votes),
        winner=leaders[0],
        agreement=top / len(votes),
        tie=len(leaders) > 1,
        synthesis=synthesis,
    )


# --------------------------------------------------------------------------- review loop

APPROVED_MARKER = "APPROVED"
"""What a reviewer writes (anywhere in its answer, case-sensitive) to approve a draft."""


@attrs.frozen
class ReviewRound:
    """One draft of :func:`review_loop` and its review."""

    draft: AgentResult
    """The worker's result."""
    review: AgentResult
    """The reviewer's result."""
    worker: str = "worker"
    """The worker's step name (``"worker"`` when :func:`review_loop` got one factory)."""
    round: int = 0
    """1 for the first round (0 in values made before the field existed)."""


@attrs.frozen(kw_only=True)
class ReviewResult:
    """What :func:`review_loop` produced."""

    approved: bool
    """Whether the reviewer approved a draft."""
    rounds: tuple[ReviewRound, ...]
    """Every draft and its review, round by round (workers in declaration order within a
    round)."""
    winner: str | None = None
    """The worker whose draft was approved (``None`` when none was)."""

    @property
    def output(self) -> str:
        """The approved draft's final text; without approval, the last draft's."""
        if self.winner is not None:
            for entry in reversed(self.rounds):
                if entry.worker == self.winner:
                    return entry.draft.final_text
        return self.rounds[-1].draft.final_text


async def review_loop(
    worker: AgentFactory | Sequence[Step],
    reviewer: AgentFactory,
    task: str,
    *,
    max_rounds: int = 3,
    marker: str = APPROVED_MARKER,
    event_sink: EventSink | None = None,
    progress: list[StepOutput] | None = None,
    infra: SharedInfra | None = None,
) -> ReviewResult:
    """A worker drafts, a reviewer approves (its answer contains ``marker``) or gives feedback.

    Each round builds a fresh worker and reviewer. After feedback, the next worker gets the
    task, its previous draft and the feedback. After ``max_rounds`` rounds without approval
    the result says ``approved=False`` (not an error). ``infra`` is as in
    :func:`run_sequential`.

    With several workers (a sequence of :class:`Step`), each round every worker drafts at
    once (the first round on the task, later ones on the task, its own previous draft and
    its own feedback), then a fresh reviewer reviews each draft, all at once, on the task and
    that draft alone. The loop stops after the first round in which the reviewer approves a
    draft: the winner is the first approved worker in declaration order. A failing worker or
    reviewer cancels the round and raises :exc:`StepFailed`.
    """
    if isinstance(worker, Sequence):
        return await _review_many(
            _check_steps(worker, "review_loop"),
            reviewer,
            task,
            max_rounds=max_rounds,
            marker=marker,
            event_sink=event_sink,
            progress=progress,
            infra=infra,
        )
    limit = _positive("max_rounds", max_rounds)
    infra = _check_infra(infra)
    event_sink = _sink(event_sink, infra)
    if not isinstance(marker, str) or not marker:
        raise InvalidArgumentError(f"marker must be a non-empty str, got {marker!r}")
    rounds: list[ReviewRound] = []
    prompt = task
    for number in range(1, limit + 1):
        draft = (
            await _run(
                Step("worker", worker),
                2 * number - 2,
                prompt,
                (),
                progress,
                infra,
                key=f"round-{number}-worker",
            )
        ).result
        review = (
            await _run(
                Step("reviewer", reviewer),
                2 * number - 1,
                f"{task}\n\n{draft.final_text}",
                (),
                progress,
                infra,
                key=f"round-{number}-review",
            )
        ).result
        rounds.append(ReviewRound(draft, review, "worker", number))
        approved = marker in review.final_text
        _emit(event_sink, "review", number, "approved" if approved else "feedback")
        if approved:
            return ReviewResult(approved=True, rounds=tuple(rounds), winner="worker")
        prompt = (
            f"{task}\n\nYour previous draft:\n{draft.final_text}\n\n"
            f"Reviewer feedback:\n{review.final_text}"
        )
    return ReviewResult(approved=False, rounds=tuple(rounds))


async def _review_many(
    workers: Sequence[Step],
    reviewer: AgentFactory,
    task: str,
    *,
    max_rounds: int,
    marker: str,
    event_sink: EventSink | None,
    progress: list[StepOutput] | None,
    infra: SharedInfra | None,
) -> ReviewResult:
    limit = _positive("max_rounds", max_rounds)
    infra = _check_infra(infra)
    event_sink = _sink(event_sink, infra)
    if not isinstance(marker, str) or not marker:
        raise InvalidArgumentError(f"marker must be a non-empty str, got {marker!r}")
    if not callable(reviewer):
        raise InvalidArgumentError(f"reviewer must be an agent factory, got {reviewer!r}")
    rounds: list[ReviewRound] = []
    prompts = [task] * len(workers)
    for number in range(1, limit + 1):
        drafts = await _all(
            workers, prompts, len(workers), progress, infra, key=f"round-{number}-draft"
        )
        reviewers = [Step(f"review {w.name}", reviewer) for w in workers]
        reviews = await _all(
            reviewers,
            [f"{task}\n\n{d.result.final_text}" for d in drafts],
            len(reviewers),
            progress,
            infra,
            key=f"round-{number}-review",
        )
        approved = [
            w.name for w, r in zip(workers, reviews, strict=True) if marker in r.result.final_text
        ]
        for w, d, r in zip(workers, drafts, reviews, strict=True):
            rounds.append(ReviewRound(d.result, r.result, w.name, number))
        _emit(
            event_sink,
            "review",
            number,
            f"approved: {approved[0]}" if approved else "feedback",
        )
        if approved:
            return ReviewResult(approved=True, rounds=tuple(rounds), winner=approved[0])
        prompts = [
            f"{task}\n\nYour previous draft:\n{d.result.final_text}\n\n"
            f"Reviewer feedback:\n{r.result.final_text}"
            for d, r in zip(drafts, reviews, strict=True)
        ]
    return ReviewResult(approved=False, rounds=tuple(rounds))


# --------------------------------------------------------------------------- tournament


@attrs.frozen(kw_only=True)
class Match:
    """One match of a :func:`tournament`."""

    round: int
    """1 for the first round."""
    first: str
    """The first contestant."""
    second: str | None
    """The second one; ``None`` for a bye (``first`` goes through without a judge)."""
    winner: str
    """Who went through."""
    judge: AgentResult | None = None
    """The judge's result (``None`` for a bye)."""


@attrs.frozen(kw_only=True)
class TournamentResult:
    """What :func:`tournament` produced."""

    entries: tuple[StepOutput, ...]
    """Every contestant's answer, in declaration order."""
    matches: tuple[Match, ...]
    """Every match, round by round."""
    ranking: tuple[str, ...]
    """The champion first, then the losers of later rounds before those of earlier ones
    (declaration order within a round)."""

    @property
    def winner(self) -> str:
        """The champion's name."""
        return self.ranking[0]


async def tournament(
    contestants: Sequence[Step],
    task: str,
    judge: AgentFactory,
    *,
    event_sink: EventSink | None = None,
    progress: list[StepOutput] | None = None,
    infra: SharedInfra | None = None,
) -> TournamentResult:
    """Single elimination: every contestant answers ``task`` at once, then pairs are judged.

    Each match gets a fresh judge, asked to answer ``1`` or ``2`` (the first of those digits in
    its answer decides; neither is a :exc:`StepFailed` naming the match). An odd contestant out
    gets a bye (the last of the round). The matches of a round run at once.
    """
    steps = _check_steps(contestants, "tournament")
    infra = _check_infra(infra)
    event_sink = _sink(event_sink, infra)
    entries = await _all(steps, [task] * len(steps), len(steps), progress, infra, key="entry")
    answers = {out.step: out.result.final_text for out in entries}
    alive = [out.step for out in entries]
    matches: list[Match] = []
    eliminated: list[list[str]] = []
    number = 0
    while len(alive) > 1:
        number += 1
        pairs = [(alive[i], alive[i + 1]) for i in range(0, len(alive) - 1, 2)]
        prompts = [
            f"{task}\n\nAnswer 1:\n{answers[a]}\n\nAnswer 2:\n{answers[b]}\n\n"
            "Which answer is better? Reply 1 or 2."
            for a, b in pairs
        ]
        judges = [Step(f"judge {a} vs {b}", judge) for a, b in pairs]
        verdicts = await _all(
            judges, prompts, len(judges), progress, infra, key=f"round-{number}-judge"
        )
        winners: list[str] = []
        losers: list[str] = []
        for (a, b), verdict in zip(pairs, verdicts, strict=True):
            found = re.search(r"[12]", verdict.result.final_text)
            if found is None:
                raise StepFailed(
                    f"round {number}: the judge of {a!r} vs {b!r} answered neither 1 nor 2: "
                    f"{verdict.result.final_text!r}",
                    outputs=entries,
                )
            win, lose = (a, b) if found.group() == "1" else (b, a)
            winners.append(win)
            losers.append(lose)
            matches.append(Match(round=number, first=a, second=b, winner=win, judge=verdict.result))
        if len(alive) % 2:
            bye = alive[-1]
            matches.append(Match(round=number, first=bye, second=None, winner=bye))
            winners.append(bye)
        eliminated.append(losers)
        _emit(event_sink, "tournament", number, ", ".join(winners))
        alive = winners
    ranking = [alive[0]] + [name for losers in reversed(eliminated) for name in losers]
    return TournamentResult(entries=tuple(entries), matches=tuple(matches), ranking=tuple(ranking))


# --------------------------------------------------------------------------- debate


@attrs.frozen(kw_only=True)
class DebateResult:
    """What :func:`debate` produced."""

    rounds: tuple[tuple[StepOutput, ...], ...]
    """Every round's answers, in declaration order within a round."""
    verdict: AgentResult
    """The judge's result."""

    @property
    def output(self) -> str:
        """The judge's final text."""
        return self.verdict.final_text


async def debate(
    debaters: Sequence[Step],
    question: str,
    judge: AgentFactory,
    *,
    rounds: int = 2,
    event_sink: EventSink | None = None,
    progress: list[StepOutput] | None = None,
    infra: SharedInfra | None = None,
) -> DebateResult:
    """Debaters answer at once; in each later round, each one gets the others' latest answers
    to critique and revises its own; then a fresh judge gets the last round's answers.

    Each debater's agent lives for the whole debate (its conversation carries its earlier
    answers); the judge is built fresh.
    """
    steps = _check_steps(debaters, "debate")
    if len(steps) < 2:
        raise InvalidArgumentError(f"debate needs at least 2 debaters, got {len(steps)}")
    count = _positive("rounds", rounds)
    infra = _check_infra(infra)
    event_sink = _sink(event_sink, infra)
    history = await _debate_rounds(steps, question, count, event_sink, progress, infra)
    verdict = await _run(
        Step("judge", judge),
        len(steps),
        f"{question}\n\n{_labelled(history[-1])}\n\nWhich answer is best, and why?",
        [o for past in history for o in past],
        progress,
        infra,
        key="verdict",
    )
    return DebateResult(rounds=tuple(history), verdict=verdict.result)


async def _debate_rounds(
    steps: Sequence[Step],
    question: str,
    count: int,
    event_sink: EventSink | None,
    progress: list[StepOutput] | None,
    infra: SharedInfra | None,
) -> list[tuple[StepOutput, ...]]:
    """The rounds of a debate (see :func:`debate`), each round's answers in declaration order."""
    refuse_unjournaled("a debate's rounds")
    agents: list[Agent] = []
    for index, step in enumerate(steps):
        try:
            agents.append(_build(step.factory, infra))
        except Exception as exc:  # a spent budget, a broken factory: the step failed
            raise StepFailed(
                "before round 1: " + _failed(step, index, step.name, exc), outputs=[]
            ) from exc
    history: list[tuple[StepOutput, ...]] = []
    for number in range(1, count + 1):
        if number == 1:
            prompts = [question] * len(steps)
        else:
            last = history[-1]
            prompts = [
                "The other debaters answered:\n\n"
                + _labelled([o for o in last if o.step != step.name])
                + "\n\nCritique their answers, then give your revised answer."
                for step in steps
            ]
        results: dict[int, StepOutput] = {}

        async def speak(
            index: int, prompt: str, number: int, results: dict[int, StepOutput]
        ) -> None:
            try:
                result = await agents[index].run(prompt)
            except Exception as exc:
                raise StepFailed(
                    f"round {number}: " + _failed(steps[index], index, agents[index].name, exc),
                    outputs=[o for past in history for o in past],
                ) from exc
            results[index] = StepOutput(steps[index].name, result)
            if progress is not None:
                progress.append(results[index])

        try:
            async with trio.open_nursery() as nursery:
                for index, prompt in enumerate(prompts):
                    nursery.start_soon(speak, index, prompt, number, results)
        except BaseExceptionGroup as group:
            _raise_flat(group)
        history.append(tuple(results[i] for i in range(len(steps))))
        _emit(event_sink, "debate", number, f"{len(steps)} answers")
    return history
