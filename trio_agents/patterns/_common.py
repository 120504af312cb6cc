"""What every pattern shares: building agents under a tree's infrastructure, pattern events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import trio

from .._agent import Agent
from .._errors import InvalidArgumentError
from .._events import EventSink, PatternFinished, PatternStarted
from .._infra import SharedInfra
from .._orchestrator import AgentFactory


def _check_infra(infra: object) -> SharedInfra | None:
    if infra is not None and not isinstance(infra, SharedInfra):
        raise InvalidArgumentError(
            f"infra must be a SharedInfra or None, got {type(infra).__name__}"
        )
    return infra


def _sink(event_sink: EventSink | None, infra: SharedInfra | None) -> EventSink | None:
    """The pattern's event sink: ``event_sink``, else the tree's log, else none."""
    if event_sink is not None:
        return event_sink
    return infra.log if infra is not None else None


def _build(factory: AgentFactory, infra: SharedInfra | None) -> Agent:
    """A fresh agent from ``factory``, joined to ``infra`` (see ``docs/patterns.rst``).

    With ``infra``: the tree's budget is asked for one more agent first (and counts it); the
    agent then gets, where it has none of its own, the tree's budget, event log, tool policy
    and ``infra``; and its model goes behind the tree's rate limiter for its model id.

    :raises BudgetExhausted: the tree's budget allows no more agents.
    """
    budget = infra.budget if infra is not None else None
    if budget is not None:
        budget.check_spawn()
    agent = factory()
    if infra is None:
        return agent
    if not isinstance(agent, Agent):
        raise InvalidArgumentError(
            f"an agent factory must return an Agent, got {type(agent).__name__}"
        )
    if budget is not None:
        budget.charge_spawn()
        if agent.budget is None:
            agent.budget = budget
    if agent.event_sink is None:
        agent.event_sink = infra.log
    if agent.policy is None:
        agent.policy = infra.policies
    if agent.infra is None:
        agent.infra = infra
    model = infra.model_for(agent.model)
    if model is not agent.model:
        agent._model = model
    return agent


@attrs.define
class _Outcome:
    """What a pattern decided, for its :class:`PatternFinished` event."""

    detail: str = ""


@contextmanager
def _pattern_events(
    sink: EventSink | None, name: str, pattern: str, agents: int
) -> Iterator[_Outcome]:
    """Emit :class:`PatternStarted` now and :class:`PatternFinished` when the block ends."""
    outcome = _Outcome()
    if sink is None:
        yield outcome
        return
    sink(PatternStarted(time=trio.current_time(), agent=name, pattern=pattern, agents=agents))
    try:
        yield outcome
    except trio.Cancelled:
        sink(_finished(name, pattern, ok=False, detail="cancelled"))
        raise
    except BaseException as exc:
        sink(_finished(name, pattern, ok=False, detail=f"{type(exc).__name__}: {exc}"))
        raise
    sink(_finished(name, pattern, ok=True, detail=outcome.detail))


def _finished(name: str, pattern: str, *, ok: bool, detail: str) -> PatternFinished:
    return PatternFinished(
        time=trio.current_time(), agent=name, pattern=pattern, ok=ok, detail=detail
    )
