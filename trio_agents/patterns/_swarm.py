"""Swarm: one object over a set of agents, run in parallel, in sequence, or as a debate."""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from .._errors import InvalidArgumentError
from .._events import EventSink
from .._infra import SharedInfra
from .._messages import AgentResult
from .._orchestrator import AgentFactory
from ._common import _check_infra, _pattern_events, _sink
from ._pipeline import Merge, Step, StepOutput, _check_steps, run_parallel, run_sequential
from ._shapes import _debate_rounds, _labelled, _positive, _run

__all__ = ["Swarm", "SwarmMode", "SwarmResult"]


class SwarmMode(enum.Enum):
    """How :meth:`Swarm.run` runs the members."""

    PARALLEL = "parallel"
    """Every member on the task at once (:func:`run_parallel`, with its :class:`Merge`)."""
    SEQUENTIAL = "sequential"
    """The members one after the other, each on the previous answer (:func:`run_sequential`)."""
    DEBATE = "debate"
    """Rounds of answers and critiques (as :func:`debate`), then the synthesizer reads every
    round and answers."""


@attrs.frozen(kw_only=True)
class SwarmResult:
    """What :meth:`Swarm.run` produced."""

    mode: SwarmMode
    """How the members ran."""
    outputs: tuple[StepOutput, ...]
    """Parallel: the kept branches; sequential: every member in order; debate: the last
    round's answers."""
    rounds: tuple[tuple[StepOutput, ...], ...] = ()
    """Debate: every round's answers, in declaration order (empty for the other modes)."""
    synthesis: AgentResult | None = None
    """The synthesizer's result, when the swarm has one."""
    output: str
    """The synthesizer's final text; without one, what :func:`run_parallel` /
    :func:`run_sequential` give as their output."""


def _check_mode(mode: object) -> None:
    if not isinstance(mode, SwarmMode):
        allowed = ", ".join(m.name for m in SwarmMode)
        raise InvalidArgumentError(f"mode must be a SwarmMode ({allowed}), got {mode!r}")


def _rounds_text(task: str, rounds: Sequence[Sequence[StepOutput]]) -> str:
    body = "\n\n".join(
        f"Round {number}:\n\n{_labelled(answers)}" for number, answers in enumerate(rounds, 1)
    )
    return f"{task}\n\n{body}\n\nRead the debate and give the best answer."


class Swarm:
    """One object over a set of agents (``members``), run in one of three forms.

    * :attr:`SwarmMode.PARALLEL` runs :func:`run_parallel` over the members (``merge`` and
      ``n`` as there);
    * :attr:`SwarmMode.SEQUENTIAL` runs :func:`run_sequential` (``pass_transcript`` as there);
    * :attr:`SwarmMode.DEBATE` has the members debate for ``rounds`` rounds (as in
      :func:`debate`), then a fresh ``synthesizer`` agent gets the task and every round's
      labelled answers (``Round 1:`` ...) and its answer is the output. Debate needs a
      synthesizer and at least two members.

    With a ``synthesizer``, the parallel and sequential forms also end with it: it gets the
    task and the labelled answers kept (parallel) or every member's answer (sequential).

    Events (to ``event_sink``, else ``infra.log``): :class:`~trio_agents.PatternStarted`
    (``pattern`` is ``"swarm.parallel"``, ``"swarm.sequential"`` or ``"swarm.debate"``,
    ``agent`` the swarm's ``name``), the form's own events, a :class:`StepFinished` for
    ``"synthesize"``, and :class:`~trio_agents.PatternFinished`. ``infra`` joins every agent
    to the tree (see :func:`run_sequential`). Failures raise :exc:`StepFailed` (outputs
    kept), outside cancellation leaves as the bare :class:`trio.Cancelled`, and
    ``progress=[]`` keeps every finished run, as in the other patterns.

    :raises InvalidArgumentError: ``members`` is not a non-empty sequence of uniquely named
        :class:`Step`, ``synthesizer`` is not callable, or ``infra`` is not a
        :class:`~trio_agents.SharedInfra`.
    """

    def __init__(
        self,
        members: Sequence[Step],
        *,
        synthesizer: AgentFactory | None = None,
        name: str = "swarm",
        event_sink: EventSink | None = None,
        infra: SharedInfra | None = None,
    ) -> None:
        self.members = _check_steps(members, "Swarm")
        if synthesizer is not None and not callable(synthesizer):
            raise InvalidArgumentError(
                f"synthesizer must be an agent factory or None, got {synthesizer!r}"
            )
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"Swarm name must be a non-empty str, got {name!r}")
        self.synthesizer = synthesizer
        self.name = name
        self.infra = _check_infra(infra)
        self.event_sink = _sink(event_sink, self.infra)

    async def run(
        self,
        task: str,
        *,
        mode: SwarmMode = SwarmMode.PARALLEL,
        merge: Merge = Merge.CONCAT,
        n: int = 1,
        pass_transcript: bool = False,
        rounds: int = 2,
        progress: list[StepOutput] | None = None,
    ) -> SwarmResult:
        """Run the members on ``task`` in ``mode`` (see :class:`Swarm`).

        :raises InvalidArgumentError: ``mode`` is not a :class:`SwarmMode` (names the allowed
            ones), a debate without a synthesizer or with fewer than two members, ``rounds <
            1``, or ``merge=Merge.CUSTOM`` (the synthesizer is the swarm's aggregator).
        :raises StepFailed: a member or the synthesizer failed (outputs kept).
        """
        _check_mode(mode)
        if merge is Merge.CUSTOM:
            raise InvalidArgumentError(
                "Swarm.run does not take merge=Merge.CUSTOM: give the Swarm a synthesizer="
            )
        if mode is SwarmMode.DEBATE:
            if self.synthesizer is None:
                raise InvalidArgumentError("a debate Swarm needs a synthesizer= to answer")
            if len(self.members) < 2:
                raise InvalidArgumentError(
                    f"a debate Swarm needs at least 2 members, got {len(self.members)}"
                )
            count = _positive("rounds", rounds)
        sink = self.event_sink
        with _pattern_events(sink, self.name, f"swarm.{mode.value}", len(self.members)) as done:
            history: list[tuple[StepOutput, ...]] = []
            if mode is SwarmMode.PARALLEL:
                result = await run_parallel(
                    self.members,
                    task,
                    merge=merge,
                    n=n,
                    event_sink=sink,
                    progress=progress,
                    infra=self.infra,
                )
                outputs, output = result.outputs, result.output
            elif mode is SwarmMode.SEQUENTIAL:
                result = await run_sequential(
                    self.members,
                    task,
                    pass_transcript=pass_transcript,
                    event_sink=sink,
                    progress=progress,
                    infra=self.infra,
                )
                outputs, output = result.outputs, result.output
            else:
                history = await _debate_rounds(
                    self.members, task, count, sink, progress, self.infra
                )
                outputs, output = history[-1], ""
            synthesis = None
            if self.synthesizer is not None:
                prompt = (
                    _rounds_text(task, history) if history else f"{task}\n\n{_labelled(outputs)}"
                )
                done_so_far = [o for past in history for o in past] or list(outputs)
                synthesis = (
                    await _run(
                        Step("synthesize", self.synthesizer),
                        len(self.members),
                        prompt,
                        done_so_far,
                        progress,
                        self.infra,
                        sink,
                        key="synthesize",
                    )
                ).result
                output = synthesis.final_text
            done.detail = f"{len(outputs)} answers"
        return SwarmResult(
            mode=mode,
            outputs=tuple(outputs),
            rounds=tuple(history),
            synthesis=synthesis,
            output=output,
        )

    def __repr__(self) -> str:
        names = [m.name for m in self.members]
        return f"<Swarm {self.name!r} members={names} synthesizer={self.synthesizer is not None}>"
