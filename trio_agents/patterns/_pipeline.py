"""Pipelines: sequential steps and parallel branches with a merge strategy."""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import trio

from .._agent import AgentSpec
from .._delegation import ModelRunner
from .._errors import AgentError, InvalidArgumentError
from .._events import Event, EventSink
from .._infra import SharedInfra
from .._journal import run_nested
from .._messages import AgentResult, Message, UserMessage
from .._orchestrator import AgentFactory, _raise_flat
from .._tools import Tool
from ._common import _build, _check_infra, _sink

__all__ = [
    "Merge",
    "PipelineResult",
    "Step",
    "StepFailed",
    "StepFinished",
    "StepOutput",
    "run_parallel",
    "run_sequential",
]


@attrs.frozen
class Step:
    """A named step of a pipeline: ``factory`` builds a fresh agent for each run."""

    name: str = attrs.field()
    """The step's label (in results, events and errors)."""
    factory: AgentFactory = attrs.field()
    """Zero-argument callable returning a new :class:`~trio_agents.Agent`."""

    @classmethod
    def from_spec(
        cls,
        spec: AgentSpec,
        runner: ModelRunner,
        *,
        infra: SharedInfra | None = None,
        tools: Sequence[Tool] = (),
    ) -> Step:
        """A step named after ``spec`` whose agents ``runner`` builds, like a delegation's.

        With ``infra``, every agent the step builds draws from ``infra.budget`` (carved by the
        spec's limits), calls its model through ``infra``'s rate limiter, checks its tool
        calls with ``infra.policies`` and logs to ``infra.log``: the tree-wide budget and rate
        limits hold across all the branches of a pattern.
        """
        if not isinstance(spec, AgentSpec):
            raise InvalidArgumentError(f"spec must be an AgentSpec, got {type(spec).__name__}")
        if not isinstance(runner, ModelRunner):
            raise InvalidArgumentError(f"runner must be a ModelRunner, got {type(runner).__name__}")
        return cls(spec.name, functools.partial(runner.build, spec, tools=tools, infra=infra))

    @name.validator
    def _check_name(self, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"Step name must be a non-empty str, got {value!r}")

    @factory.validator
    def _check_factory(self, attribute: attrs.Attribute[Any], value: object) -> None:
        if not callable(value):
            raise InvalidArgumentError(
                f"Step {self.name!r} needs a zero-argument factory returning an Agent, "
                f"got {value!r}"
            )


class Merge(enum.Enum):
    """How :func:`run_parallel` turns its branches into one result."""

    CONCAT = "concat"
    """Wait for every branch; outputs in declaration order. A failure fails the whole run."""
    FIRST = "first"
    """The first branch to succeed wins and the others are cancelled; if all fail, the first
    failure (in time) is raised."""
    FASTEST = "fastest"
    """The first ``n`` successes (in finishing order) win and the others are cancelled. As
    soon as ``n`` successes can no longer be had (more than ``len(branches) - n`` failed),
    the branches still running are cancelled and the first failure (in time) is raised, with
    the successes so far in :attr:`StepFailed.outputs` and a note counting them."""
    CUSTOM = "custom"
    """Like :attr:`CONCAT`, then a fresh ``aggregator`` agent gets the labelled answers; its
    answer is the output (and its result the last of the outputs, as step ``"aggregate"``)."""


@attrs.frozen
class StepOutput:
    """One step's (or branch's) result."""

    step: str
    """The step's name."""
    result: AgentResult
    """What its agent produced."""


@attrs.frozen
class PipelineResult:
    """What a pipeline produced: its steps' outputs, and the text they add up to."""

    outputs: tuple[StepOutput, ...]
    """Sequential: every step in order. Parallel: the kept branches (see :class:`Merge`)."""
    output: str
    """Sequential: the last step's final text. Parallel: the kept branches' final texts,
    each under a ``[step]`` label, separated by blank lines (just the text for one branch)."""


@attrs.frozen(kw_only=True)
class StepFinished(Event):
    """A pipeline step or branch ended (``agent`` is the step's name)."""

    kind: ClassVar[str] = "step_finished"
    index: int
    """The step's position in its declaration (0-based)."""
    ok: bool
    """Whether it succeeded."""
    cancelled: bool = False
    """Whether it was cancelled because other branches won."""


class StepFailed(AgentError):
    """A pipeline step failed; the message names the step and its agent, the cause is chained.

    :attr:`outputs` keeps the steps that finished before it.
    """

    def __init__(self, message: str, *, outputs: Sequence[StepOutput] = ()) -> None:
        super().__init__(message)
        self.outputs: tuple[StepOutput, ...] = tuple(outputs)


def _check_steps(steps: object, what: str) -> tuple[Step, ...]:
    if not isinstance(steps, Sequence) or not steps or not all(isinstance(s, Step) for s in steps):
        raise InvalidArgumentError(f"{what} needs a non-empty sequence of Step, got {steps!r}")
    names = [s.name for s in steps]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidArgumentError(f"{what}: step names must be unique, repeated: {dupes}")
    return tuple(steps)


def _emit(sink: EventSink | None, step: Step, index: int, *, ok: bool, cancelled: bool) -> None:
    if sink is not None:
        sink(
            StepFinished(
                time=trio.current_time(), agent=step.name, index=index, ok=ok, cancelled=cancelled
            )
        )


def _failed(step: Step, index: int, agent_name: str, exc: BaseException) -> str:
    return f"step {index} ({step.name!r}, agent {agent_name!r}) failed: {type(exc).__name__}: {exc}"


async def run_sequential(
    steps: Sequence[Step],
    input: str,
    *,
    pass_transcript: bool = False,
    event_sink: EventSink | None = None,
    progress: list[StepOutput] | None = None,
    infra: SharedInfra | None = None,
) -> PipelineResult:
    """Run ``steps`` one after the other, each on the previous step's answer.

    The first step gets ``input``. With ``pass_transcript``, each later step gets the earlier
    steps' conversation (user messages and answers, tool calls left out) before the new
    request; otherwise only the previous answer.

    With ``infra`` (the tree's :class:`~trio_agents.SharedInfra`), every agent a step builds
    joins the tree: see "Tree-wide limits" in ``docs/patterns.rst``; events then go to
    ``infra.log`` unless ``event_sink`` is given.

    :raises StepFailed: a step failed (names the step and agent; keeps the earlier outputs).
    """
    checked = _check_steps(steps, "run_sequential")
    infra = _check_infra(infra)
    event_sink = _sink(event_sink, infra)
    outputs: list[StepOutput] = []
    transcript: list[Message] = []
    text = input
    for index, step in enumerate(checked):
        agent = None
        request: list[Message] = [*transcript, UserMessage.text(text)]
        try:
            agent = _build(step.factory, infra)
            result = await run_nested(agent, request, key=f"step-{index}")
        except Exception as exc:
            _emit(event_sink, step, index, ok=False, cancelled=False)
            who = agent.name if agent is not None else step.name
            raise StepFailed(_failed(step, index, who, exc), outputs=outputs) from exc
        _emit(event_sink, step, index, ok=True, cancelled=False)
        outputs.append(StepOutput(step.name, result))
        if progress is not None:
            progress.append(outputs[-1])
        if pass_transcript:
            transcript += [
                UserMessage.text(text),
                UserMessage.text(f"[{step.name}] {result.final_text}"),
            ]
        text = result.final_text
    return PipelineResult(outputs=tuple(outputs), output=text)


def _check_merge(merge: object) -> None:
    if not isinstance(merge, Merge):
        allowed = ", ".join(m.name for m in Merge)
        raise InvalidArgumentError(f"merge must be a Merge ({allowed}), got {merge!r}")


def _join(outputs: Sequence[StepOutput]) -> str:
    if len(outputs) == 1:
        return outputs[0].result.final_text
    return "\n\n".join(f"[{o.step}]\n{o.result.final_text}" for o in outputs)


async def run_parallel(
    branches: Sequence[Step],
    input: str,
    *,
    merge: Merge = Merge.CONCAT,
    n: int = 1,
    aggregator: AgentFactory | None = None,
    event_sink: EventSink | None = None,
    progress: list[StepOutput] | None = None,
    infra: SharedInfra | None = None,
) -> PipelineResult:
    """Run every branch on ``input`` at once, in a nursery this call owns, and merge them.

    See :class:`Merge` for the strategies; ``n`` is how many successes :attr:`Merge.FASTEST`
    keeps; ``aggregator`` (required by :attr:`Merge.CUSTOM`, refused otherwise) builds the
    agent that merges the answers. Cancelling the call cancels every branch (it leaves as the bare
    :class:`trio.Cancelled`). ``infra`` is as in :func:`run_sequential`.

    :raises StepFailed: a branch failed under :attr:`Merge.CONCAT`, every branch failed under
        :attr:`Merge.FIRST`, or fewer than ``n`` succeeded under :attr:`Merge.FASTEST`.
    """
    checked = _check_steps(branches, "run_parallel")
    _check_merge(merge)
    infra = _check_infra(infra)
    event_sink = _sink(event_sink, infra)
    if (merge is Merge.CUSTOM) != (aggregator is not None):
        raise InvalidArgumentError(
            "aggregator= goes with merge=Merge.CUSTOM, and Merge.CUSTOM needs one "
            f"(merge={merge.name}, aggregator={aggregator!r})"
        )
    if aggregator is not None and not callable(aggregator):
        raise InvalidArgumentError(f"aggregator must be an agent factory, got {aggregator!r}")
    if merge is Merge.FIRST:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(checked):
        raise InvalidArgumentError(
            f"n must be an int from 1 to the number of branches ({len(checked)}), got {n!r}"
        )
    everything = merge in (Merge.CONCAT, Merge.CUSTOM)
    wanted = len(checked) if everything else n
    done: dict[int, StepOutput] = {}
    finish_order: list[int] = []
    failures: list[StepFailed] = []

    async def branch(index: int, step: Step, scope: trio.CancelScope) -> None:
        agent = None
        try:
            agent = _build(step.factory, infra)
            result = await run_nested(agent, input, key=f"branch-{index}")
        except trio.Cancelled:
            if scope.cancel_called:  # lost to the branches that finished (or failed)
                _emit(event_sink, step, index, ok=False, cancelled=True)
            raise
        except Exception as exc:
            _emit(event_sink, step, index, ok=False, cancelled=False)
            who = agent.name if agent is not None else step.name
            failures.append(StepFailed(_failed(step, index, who, exc)))
            failures[-1].__cause__ = exc
            if everything or len(failures) > len(checked) - wanted:
                scope.cancel(reason=f"branch {step.name!r} failed")
            return
        _emit(event_sink, step, index, ok=True, cancelled=False)
        done[index] = StepOutput(step.name, result)
        if progress is not None:
            progress.append(done[index])
        finish_order.append(index)
        if len(done) >= wanted:
            scope.cancel(reason=f"{merge.value}: enough branches finished")

    try:
        async with trio.open_nursery() as nursery:
            for index, step in enumerate(checked):
                nursery.start_soon(branch, index, step, nursery.cancel_scope)
    except BaseExceptionGroup as group:
        _raise_flat(group)
    if len(done) < wanted:
        first = failures[0]
        if not everything and len(failures) == len(checked):
            first.add_note(f"every branch failed ({len(failures)})")
        elif merge is Merge.FASTEST:
            first.add_note(
                f"Merge.FASTEST wanted {n} successes: {len(done)} succeeded, "
                f"{len(failures)} failed, the others were cancelled"
            )
        first.outputs = tuple(done[i] for i in sorted(done))
        raise first
    if everything:
        kept = [done[i] for i in range(len(checked))]
    else:
        kept = [done[i] for i in finish_order[:wanted]]
    if aggregator is None:
        return PipelineResult(outputs=tuple(kept), output=_join(kept))
    step = Step("aggregate", aggregator)
    agent = None
    try:
        agent = _build(step.factory, infra)
        labelled = "\n\n".join(f"[{o.step}]\n{o.result.final_text}" for o in kept)
        merged = await run_nested(agent, f"{input}\n\n{labelled}", key="aggregate")
    except Exception as exc:
        who = agent.name if agent is not None else step.name
        raise StepFailed(_failed(step, len(checked), who, exc), outputs=kept) from exc
    _emit(event_sink, step, len(checked), ok=True, cancelled=False)
    return PipelineResult(outputs=(*kept, StepOutput(step.name, merged)), output=merged.final_text)
