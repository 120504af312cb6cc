"""Delegation plans: who delegates what to whom, as a value a property test can generate.

A :class:`DelegationPlan` describes a run of a :class:`~trio_agents.Delegator`: the main agent
delegates its :attr:`~DelegationPlan.calls` (all in its first turn, so they run in parallel),
each specialist delegates its own :attr:`~DelegationStep.calls` in turn, and a step marked
:attr:`~DelegationStep.fails` has its specialist fail after its delegations. The plan builds
the delegator (:meth:`~DelegationPlan.delegator`) and one model that plays every agent as
planned (:meth:`~DelegationPlan.model`), and predicts the records
(:meth:`~DelegationPlan.expected`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from .._agent import AgentSpec
from .._delegation import DELEGATE_TOOL, Delegator, FailurePolicy
from .._errors import AuthenticationError, InvalidArgumentError
from .._messages import TextBlock, UserMessage
from .._models import ModelRequest
from ._models import FunctionModel, FunctionResult, ScriptStep, fail, tool_call

__all__ = ["DelegationPlan", "DelegationStep"]


def _steps(value: object) -> tuple[DelegationStep, ...]:
    if isinstance(value, DelegationStep):
        raise InvalidArgumentError("calls must be a sequence of DelegationStep; wrap one: (s,)")
    items = tuple(value) if isinstance(value, list | tuple) else None
    if items is None:
        raise InvalidArgumentError(f"calls must be a sequence of DelegationStep; got {value!r}")
    for index, item in enumerate(items):
        if not isinstance(item, DelegationStep):
            raise InvalidArgumentError(
                f"calls[{index}] must be a DelegationStep; got {type(item).__name__}"
            )
    return items


@attrs.frozen(kw_only=True)
class DelegationStep:
    """One call of the ``delegate`` tool in a :class:`DelegationPlan`."""

    specialist: str
    """The specialist asked for."""
    subtask: str
    """The subtask (unique in the plan: it tells the model which step it is playing)."""
    calls: tuple[DelegationStep, ...] = attrs.field(default=(), converter=_steps)
    """What the specialist delegates in turn, all in its first turn."""
    fails: bool = False
    """Whether the specialist fails (with a non-retryable error) after its delegations."""

    def walk(self, depth: int = 1, path: str = "") -> Iterator[tuple[DelegationStep, int, str]]:
        """This step and the steps under it, depth-first, with their depth and path."""
        here = f"{path}/{self.specialist}" if path else self.specialist
        yield self, depth, here
        for call in self.calls:
            yield from call.walk(depth + 1, here)


@attrs.frozen(kw_only=True)
class DelegationPlan:
    """A planned run of a :class:`~trio_agents.Delegator` (see the module documentation).

    Every agent's spec has its name as instructions (so the model knows whom it plays), and
    every specialist may delegate. Plans made by
    :func:`~trio_agents.testing.strategies.delegation_plans` stay within ``max_depth`` and have
    no cycles, so each step becomes exactly one record.
    """

    specialists: tuple[str, ...]
    """The pool, in order."""
    calls: tuple[DelegationStep, ...] = attrs.field(converter=_steps)
    """The main agent's delegations, all in its first turn."""
    main: str = "lead"
    """The main agent's name."""
    max_depth: int = 3
    """The delegator's depth limit."""
    failure_policy: FailurePolicy = FailurePolicy.ISOLATE
    """The delegator's failure policy."""

    def __attrs_post_init__(self) -> None:
        if not self.specialists:
            raise InvalidArgumentError("specialists must name at least one specialist")
        subtasks = [step.subtask for step, _, _ in self.steps()]
        if len(set(subtasks)) != len(subtasks):
            raise InvalidArgumentError("every step of a DelegationPlan needs its own subtask")

    def steps(self) -> Iterator[tuple[DelegationStep, int, str]]:
        """Every step depth-first (the order of the records), with its depth and path."""
        for call in self.calls:
            yield from call.walk(1, self.main)

    def specs(self) -> tuple[AgentSpec, list[AgentSpec]]:
        """The main agent's spec and the specialists' specs."""
        main = AgentSpec(name=self.main, instructions=self.main)
        pool = [
            AgentSpec(name=name, instructions=name, tools=(DELEGATE_TOOL,))
            for name in self.specialists
        ]
        return main, pool

    def delegator(self, **options: Any) -> Delegator:
        """The :class:`~trio_agents.Delegator` of this plan (``options`` go to it)."""
        main, pool = self.specs()
        options.setdefault("max_depth", self.max_depth)
        options.setdefault("failure_policy", self.failure_policy)
        return Delegator(main, pool, **options)

    def model(self) -> FunctionModel:
        """One model playing every agent as planned.

        An agent whose task has planned calls delegates them all in its first turn; then (or
        at once without calls) it answers ``"<name> did <task>"``, or fails with
        :class:`~trio_agents.AuthenticationError` if its step :attr:`~DelegationStep.fails`.
        """
        by_task: dict[str, DelegationStep] = {s.subtask: s for s, _, _ in self.steps()}
        main_calls = self.calls

        def respond(request: ModelRequest) -> FunctionResult:
            task = _first_user_text(request)
            step = by_task.get(task)
            calls = step.calls if step is not None else main_calls
            name = request.system or "?"
            if calls and isinstance(request.messages[-1], UserMessage):
                return _fan_out(calls)
            if step is not None and step.fails:
                return fail(AuthenticationError(f"{name} failed {task} as planned"))
            return f"{name} did {task}"

        return FunctionModel(respond, model_id="plan")

    def expected(self) -> list[tuple[str, int, str, bool]]:
        """``(specialist, depth, path, success)`` of every record, in record order.

        Exact for the ``isolate`` policy (every step is recorded, whatever happens to its
        siblings); ``retry`` makes the same records (a planned failure fails every attempt).
        """
        return [(s.specialist, d, p, not s.fails) for s, d, p in self.steps()]


def _first_user_text(request: ModelRequest) -> str:
    for message in request.messages:
        if isinstance(message, UserMessage):
            return "".join(b.text for b in message.content if isinstance(b, TextBlock))
    return ""


def _fan_out(calls: tuple[DelegationStep, ...]) -> ScriptStep:
    steps = [
        tool_call(DELEGATE_TOOL, {"specialist": c.specialist, "subtask": c.subtask}) for c in calls
    ]
    out = steps[0]
    for more in steps[1:]:
        out = out + more
    return out
