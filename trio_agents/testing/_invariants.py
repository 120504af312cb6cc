"""Invariant checkers over an event log.

Each checker reads a sequence of :class:`~trio_agents.Event` (what an
:class:`~trio_agents.AgentOrchestrator`'s ``event_sink`` received, in order) and raises
:class:`InvariantViolation` naming the agent and the index of the offending event. They work
on any log: a test of your own agents can collect the events with ``events.append`` as the
sink and call :func:`check_event_log` at the end.

A log is *complete* when the system it comes from has ended (its ``async with`` block was
left): then nothing may still be waiting or running. Pass ``complete=False`` to check a log
taken while the system runs; the checks then only look at what has happened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .._errors import InvalidArgumentError
from .._events import Event, ModelResponded, RunFinished, RunStarted
from .._messages import Usage
from .._orchestrator import (
    AgentEnded,
    AgentFailed,
    AgentOrchestrator,
    AgentRestarted,
    AgentSpawned,
    AgentStatus,
    AgentSuspended,
    FailureEscalated,
    RequestReceived,
    RequestReplied,
    SupervisorDecided,
)
from .._supervision import RestartLimit

__all__ = [
    "InvariantViolation",
    "check_cancellation_not_failure",
    "check_cancelled_subtrees",
    "check_deterministic",
    "check_event_log",
    "check_lifecycle",
    "check_no_serving_after_end",
    "check_one_reply",
    "check_restart_limits",
    "check_same_events",
    "check_statuses",
    "check_usage",
    "looks_complete",
    "restart_limits",
]


class InvariantViolation(AssertionError):
    """An event log breaks an invariant; the message names the agent and the event.

    :param invariant: the checker's name, e.g. ``"one reply per request"``.
    :param message: what is wrong.
    :param agent: path of the agent concerned.
    :param index: index of the offending event in the log, if one is to blame.
    """

    def __init__(
        self, invariant: str, message: str, *, agent: str | None = None, index: int | None = None
    ) -> None:
        where = f" (event #{index})" if index is not None else ""
        super().__init__(f"[{invariant}] {message}{where}")
        self.invariant = invariant
        """Which invariant is broken."""
        self.agent = agent
        """Path of the agent concerned."""
        self.index = index
        """Index of the offending event, if one is to blame."""


def _show(index: int, event: Event) -> str:
    return f"#{index} {event.kind} of {event.agent!r} at t={event.time:g}"


def _is_under(path: str, ancestor: str) -> bool:
    return path.startswith(ancestor + "/")


def _parent(path: str) -> str | None:
    return path.rsplit("/", 1)[0] if "/" in path else None


# --------------------------------------------------------------------------- replies


def check_one_reply(events: Sequence[Event], *, complete: bool = False) -> None:
    """Every request gets exactly one reply.

    No request (an agent path and a request number) is received twice or replied twice, none
    is received after its reply, and in a complete log every received request was replied.
    (Requests still queued when an agent ends are replied without being received.)
    """
    name = "one reply per request"
    received: dict[tuple[str, int], int] = {}
    replied: dict[tuple[str, int], int] = {}
    for index, event in enumerate(events):
        if isinstance(event, RequestReceived):
            key = (event.agent, event.request)
            if key in received:
                raise InvariantViolation(
                    name,
                    f"agent {event.agent!r} received request {event.request} twice "
                    f"(first at #{received[key]})",
                    agent=event.agent,
                    index=index,
                )
            if key in replied:
                raise InvariantViolation(
                    name,
                    f"agent {event.agent!r} received request {event.request} after replying "
                    f"to it at #{replied[key]}",
                    agent=event.agent,
                    index=index,
                )
            received[key] = index
        elif isinstance(event, RequestReplied):
            key = (event.agent, event.request)
            if key in replied:
                raise InvariantViolation(
                    name,
                    f"agent {event.agent!r} replied to request {event.request} twice "
                    f"(first at #{replied[key]})",
                    agent=event.agent,
                    index=index,
                )
            replied[key] = index
    if complete:
        for (agent, number), index in received.items():
            if (agent, number) not in replied:
                raise InvariantViolation(
                    name,
                    f"request {number} of agent {agent!r} was received but never replied "
                    "although the system has ended",
                    agent=agent,
                    index=index,
                )


# --------------------------------------------------------------------------- lifetimes

_ACTIVITY = frozenset(
    {
        "agent_spawned",
        "agent_restarted",
        "request_received",
        "run_started",
        "turn_started",
        "model_requested",
        "tool_started",
    }
)


def check_no_serving_after_end(events: Sequence[Event], *, complete: bool = False) -> None:
    """No agent is serving after it, or its supervisor, ended.

    After an :class:`~trio_agents.AgentEnded` of an agent (and until it is spawned again), that
    agent and every agent under it show no activity: no spawn, restart, received request,
    model call, tool call, and no request answered with a result. In a complete log every
    agent that was spawned has ended.
    """
    name = "no serving after the supervisor ended"
    ended: dict[str, int] = {}  # path -> index of its AgentEnded, while it stays ended
    alive: dict[str, int] = {}
    for index, event in enumerate(events):
        path = event.agent
        active = event.kind in _ACTIVITY or (
            isinstance(event, RequestReplied) and event.error is None
        )
        if isinstance(event, AgentSpawned):
            # A new spawn of the agent itself; its ancestors must be live.
            ended.pop(path, None)
        if active:
            for other, at in ended.items():
                if other == path or _is_under(path, other):
                    whose = "it" if other == path else f"its supervisor {other!r}"
                    raise InvariantViolation(
                        name,
                        f"agent {path!r} is active ({_show(index, event)}) after {whose} "
                        f"ended at #{at}",
                        agent=path,
                        index=index,
                    )
        if isinstance(event, AgentSpawned):
            alive[path] = index
        elif isinstance(event, AgentEnded):
            ended[path] = index
            alive.pop(path, None)
    if complete:
        for path, index in alive.items():
            raise InvariantViolation(
                name,
                f"agent {path!r} (spawned at #{index}) never ended although the system has ended",
                agent=path,
                index=index,
            )


def check_cancelled_subtrees(events: Sequence[Event]) -> None:
    """A cancelled subtree has no running member.

    When an agent ends ``cancelled``, every agent under it that was alive (spawned and not
    ended) ends in the same cascade: before any event other than an ``AgentEnded`` or a
    ``RequestReplied``, and none of them ``completed``.
    """
    name = "a cancelled subtree has no running member"
    alive: set[str] = set()
    index = 0
    count = len(events)
    while index < count:
        event = events[index]
        if isinstance(event, AgentSpawned):
            alive.add(event.agent)
        elif isinstance(event, AgentEnded):
            alive.discard(event.agent)
            if event.status == "cancelled":
                top = event.agent
                pending = {path for path in alive if _is_under(path, top)}
                cursor = index + 1
                while pending and cursor < count:
                    follow = events[cursor]
                    if isinstance(follow, AgentEnded):
                        if follow.agent in pending and follow.status == "completed":
                            raise InvariantViolation(
                                name,
                                f"agent {follow.agent!r} completed although its ancestor "
                                f"{top!r} was cancelled at #{index}",
                                agent=follow.agent,
                                index=cursor,
                            )
                        pending.discard(follow.agent)
                        alive.discard(follow.agent)
                    elif not isinstance(follow, RequestReplied):
                        break
                    cursor += 1
                if pending:
                    first = sorted(pending)[0]
                    raise InvariantViolation(
                        name,
                        f"agent {first!r} is still alive after its ancestor {top!r} was "
                        f"cancelled at #{index} (still alive under it: {sorted(pending)})",
                        agent=first,
                        index=cursor if cursor < count else None,
                    )
                index = cursor
                continue
        index += 1


def check_cancellation_not_failure(events: Sequence[Event]) -> None:
    """Outside cancellation is never counted as a failure.

    No :class:`~trio_agents.AgentFailed` carries a cancellation (``Cancelled`` or
    ``AgentCancelled``); every ``AgentFailed`` is followed by exactly one
    ``SupervisorDecided`` for the same agent before the agent does anything else; every
    ``SupervisorDecided`` answers an ``AgentFailed``; and an agent is only restarted
    (``AgentRestarted``) after a decision to restart it.
    """
    name = "outside cancellation is not a failure"
    failed: dict[str, int] = {}  # failed, decision pending
    restart_ok: dict[str, int] = {}  # decided to restart, not yet restarted
    for index, event in enumerate(events):
        path = event.agent
        if isinstance(event, AgentFailed):
            if event.error.type in ("Cancelled", "AgentCancelled"):
                raise InvariantViolation(
                    name,
                    f"agent {path!r} was counted as failed by a cancellation "
                    f"({event.error.type}: {event.error.message})",
                    agent=path,
                    index=index,
                )
            if path in failed:
                raise InvariantViolation(
                    name,
                    f"agent {path!r} failed again before its supervisor decided about its "
                    f"failure at #{failed[path]}",
                    agent=path,
                    index=index,
                )
            failed[path] = index
        elif isinstance(event, SupervisorDecided):
            if path not in failed:
                raise InvariantViolation(
                    name,
                    f"the supervisor of {path!r} decided ({event.action}) with no failure "
                    "to decide about",
                    agent=path,
                    index=index,
                )
            del failed[path]
            if event.action == "restart":
                restart_ok[path] = index
        elif isinstance(event, AgentRestarted):
            if path not in restart_ok:
                raise InvariantViolation(
                    name,
                    f"agent {path!r} was restarted without a decision to restart it",
                    agent=path,
                    index=index,
                )
            del restart_ok[path]
        elif path in failed and event.kind in _ACTIVITY:
            raise InvariantViolation(
                name,
                f"agent {path!r} is active ({_show(index, event)}) while its failure at "
                f"#{failed[path]} waits for a decision",
                agent=path,
                index=index,
            )
        if isinstance(event, AgentEnded):
            restart_ok.pop(path, None)


# --------------------------------------------------------------------------- restart limits


def restart_limits(orchestrator: AgentOrchestrator) -> dict[str, RestartLimit]:
    """The restart limit of every agent registered on ``orchestrator``, by path."""
    return {
        orchestrator.path_of(name): entry.limit for name, entry in orchestrator._entries.items()
    }


def _restart_attempt(event: SupervisorDecided) -> bool:
    """Whether the decision consulted the restart limit, from the agent's restart type (on
    the event) and what the policy asked: a restart asked for, or a STOP of a permanent
    agent (carried out as a restart); never for a temporary agent."""
    if event.restart_type == "temporary":
        return False
    return event.requested == "restart" or (
        event.restart_type == "permanent" and event.requested == "stop"
    )


def check_restart_limits(
    events: Sequence[Event],
    limits: AgentOrchestrator | Mapping[str, RestartLimit],
) -> None:
    """Restarts never exceed the configured limit, and a restart within it is never refused.

    Replays every restart attempt (read from :attr:`SupervisorDecided.restart_type` and
    :attr:`~SupervisorDecided.requested`: a restart asked for, or a permanent agent's STOP;
    never a temporary agent's failure) against the agent's
    :class:`~trio_agents.RestartLimit`, exactly as the rules say: in consecutive mode a
    success (a request replied with a result) resets the count; in window mode a restart
    ``window`` seconds old no longer counts. A restart the limit does not allow must have
    been turned into an escalation with ``limit_exceeded``, and one it allows must have been
    carried out. The history starts afresh when an agent is spawned again after it ended.

    :param limits: the orchestrator, or a mapping from agent path to its limit.
    """
    name = "restart limits"
    table = restart_limits(limits) if isinstance(limits, AgentOrchestrator) else dict(limits)
    consecutive: dict[str, int] = {}
    times: dict[str, list[float]] = {}
    for index, event in enumerate(events):
        path = event.agent
        if isinstance(event, RequestReplied) and event.error is None:
            consecutive[path] = 0
        elif isinstance(event, AgentEnded):
            consecutive.pop(path, None)
            times.pop(path, None)
        elif isinstance(event, SupervisorDecided) and _restart_attempt(event):
            limit = table.get(path)
            if limit is None:
                raise InvalidArgumentError(
                    f"no restart limit given for agent {path!r} (event #{index}); "
                    f"limits has: {sorted(table)}"
                )
            if limit.window is None:
                count = consecutive.get(path, 0)
                allowed = count < limit.max_restarts
                rule = f"{count} consecutive restarts, limit {limit.max_restarts}"
            else:
                recent = [t for t in times.get(path, []) if event.time - t < limit.window]
                times[path] = recent
                allowed = len(recent) < limit.max_restarts
                rule = (
                    f"{len(recent)} restarts in the window ({event.time - limit.window:g}, "
                    f"{event.time:g}], limit {limit.max_restarts}"
                )
            if allowed and event.action != "restart":
                raise InvariantViolation(
                    name,
                    f"agent {path!r}: a restart within the limit was refused "
                    f"({event.action}; {rule})",
                    agent=path,
                    index=index,
                )
            if not allowed and (event.action != "escalate" or not event.limit_exceeded):
                raise InvariantViolation(
                    name,
                    f"agent {path!r}: a restart beyond the limit was not escalated with "
                    f"limit_exceeded ({event.action}, limit_exceeded={event.limit_exceeded}; "
                    f"{rule})",
                    agent=path,
                    index=index,
                )
            if allowed:
                consecutive[path] = consecutive.get(path, 0) + 1
                if limit.window is not None:
                    times[path].append(event.time)


# --------------------------------------------------------------------------- lifecycle order

_END_STATUSES = frozenset({"completed", "failed", "cancelled"})
_ACTIONS = frozenset({"restart", "stop", "escalate"})


def check_lifecycle(events: Sequence[Event]) -> None:
    """The lifecycle events of every agent come in a possible order.

    Holds for any log, complete or not:

    * times never go backwards;
    * an :class:`~trio_agents.AgentEnded` status is ``completed``, ``failed`` or ``cancelled``,
      and a :class:`~trio_agents.SupervisorDecided` action is ``restart``, ``stop`` or
      ``escalate``;
    * an agent is not spawned while it is up: between two ``AgentSpawned`` of one agent its
      incarnation went down (``AgentFailed``, ``AgentSuspended``, ``AgentRestarted`` or
      ``AgentEnded``);
    * a child is spawned only after its parent was (a restarted parent starts its children
      just before it reports its own new incarnation, so the parent's earlier spawn counts);
    * a request is received only while its agent is up (after its spawn, before it went
      down);
    * an agent ends with no received request left unreplied (its queue may be answered
      without being received, but what it took must be answered before ``AgentEnded``);
    * incarnations count up: each ``AgentSpawned`` of an agent has a higher ``incarnation``
      than the one before, an ``AgentRestarted`` announces a higher one than the agent's last
      spawn, and the spawn that follows it has the number it announced; ``restarts`` of the
      ``AgentRestarted`` events of one agent count 1, 2, 3, ….
    """
    name = "lifecycle order"
    last_time: float | None = None
    up: dict[str, int] = {}  # path -> index of the AgentSpawned of its running incarnation
    ever: set[str] = set()
    unreplied: dict[str, dict[int, int]] = {}  # path -> request number -> index received
    spawned: dict[str, int] = {}  # path -> incarnation of its latest AgentSpawned
    announced: dict[str, int] = {}  # path -> incarnation its pending AgentRestarted announced
    restarts: dict[str, int] = {}  # path -> AgentRestarted events so far
    for index, event in enumerate(events):
        path = event.agent
        if last_time is not None and event.time < last_time:
            raise InvariantViolation(
                name,
                f"time goes backwards: {_show(index, event)} comes after an event at "
                f"t={last_time:g}",
                agent=path,
                index=index,
            )
        last_time = event.time
        if isinstance(event, AgentSpawned):
            if path in up:
                raise InvariantViolation(
                    name,
                    f"agent {path!r} is spawned again while its incarnation spawned at "
                    f"#{up[path]} is up (no failure, suspension, restart or end between)",
                    agent=path,
                    index=index,
                )
            parent = _parent(path)
            if parent is not None and parent not in ever:
                raise InvariantViolation(
                    name,
                    f"agent {path!r} is spawned but its parent {parent!r} never was",
                    agent=path,
                    index=index,
                )
            previous = spawned.get(path, 0)
            expected = announced.pop(path, None)
            if event.incarnation <= previous or (
                expected is not None and event.incarnation != expected
            ):
                raise InvariantViolation(
                    name,
                    f"agent {path!r} is spawned as incarnation {event.incarnation!r} after "
                    f"incarnation {previous}"
                    + (f" and a restart announcing {expected}" if expected is not None else ""),
                    agent=path,
                    index=index,
                )
            spawned[path] = event.incarnation
            up[path] = index
            ever.add(path)
        elif isinstance(event, AgentRestarted):
            count = restarts.get(path, 0) + 1
            if event.restarts != count or event.incarnation <= spawned.get(path, 0):
                raise InvariantViolation(
                    name,
                    f"agent {path!r} is restarted as incarnation {event.incarnation!r} with "
                    f"restarts={event.restarts!r}; expected an incarnation above "
                    f"{spawned.get(path, 0)} and restarts={count}",
                    agent=path,
                    index=index,
                )
            restarts[path] = count
            announced[path] = event.incarnation
            up.pop(path, None)
        elif isinstance(event, AgentFailed | AgentSuspended):
            up.pop(path, None)
        elif isinstance(event, AgentEnded):
            if event.status not in _END_STATUSES:
                raise InvariantViolation(
                    name,
                    f"agent {path!r} ended with the unknown status {event.status!r} "
                    f"(allowed: {', '.join(sorted(_END_STATUSES))})",
                    agent=path,
                    index=index,
                )
            waiting = unreplied.pop(path, {})
            if waiting:
                number, at = min(waiting.items())
                raise InvariantViolation(
                    name,
                    f"agent {path!r} ended with request {number} (received at #{at}) never replied",
                    agent=path,
                    index=index,
                )
            up.pop(path, None)
            announced.pop(path, None)
        elif isinstance(event, SupervisorDecided):
            if event.action not in _ACTIONS or event.requested not in _ACTIONS:
                raise InvariantViolation(
                    name,
                    f"the supervisor of {path!r} decided the unknown action {event.action!r} "
                    f"(requested {event.requested!r}; allowed: {', '.join(sorted(_ACTIONS))})",
                    agent=path,
                    index=index,
                )
        elif isinstance(event, RequestReceived):
            if path not in up:
                raise InvariantViolation(
                    name,
                    f"agent {path!r} received request {event.request} while it was not up "
                    + (
                        "(before its first spawn)" if path not in ever else "(between incarnations)"
                    ),
                    agent=path,
                    index=index,
                )
            unreplied.setdefault(path, {})[event.request] = index
        elif isinstance(event, RequestReplied):
            unreplied.get(path, {}).pop(event.request, None)


def looks_complete(events: Sequence[Event]) -> bool:
    """Whether the log shows a closed system: something was spawned, and every agent spawned
    has ended since its last spawn (closing the system ends every agent)."""
    alive: set[str] = set()
    spawned = False
    for event in events:
        if isinstance(event, AgentSpawned):
            alive.add(event.agent)
            spawned = True
        elif isinstance(event, AgentEnded):
            alive.discard(event.agent)
    return spawned and not alive


# --------------------------------------------------------------------------- statuses


def _expected_statuses(events: Sequence[Event]) -> tuple[dict[str, AgentStatus], dict[str, int]]:
    status: dict[str, AgentStatus] = {}
    last: dict[str, int] = {}
    alive: set[str] = set()

    def suspend(path: str, index: int) -> None:
        for other in list(alive):
            if (other == path or _is_under(other, path)) and status.get(
                other
            ) is AgentStatus.RUNNING:
                status[other] = AgentStatus.RESTARTING
                last[other] = index

    for index, event in enumerate(events):
        path = event.agent
        if isinstance(event, AgentSpawned):
            status[path] = AgentStatus.RUNNING
            alive.add(path)
        elif isinstance(event, AgentFailed):
            suspend(path, index)
            status[path] = AgentStatus.RESTARTING
        elif isinstance(event, SupervisorDecided):
            if event.action == "restart":
                status[path] = AgentStatus.RESTARTING
                parent = _parent(path)
                for sibling in event.affected:
                    suspend(f"{parent}/{sibling}" if parent else sibling, index)
            elif event.action == "escalate":
                status[path] = AgentStatus.FAILED
        elif isinstance(event, AgentRestarted | AgentSuspended):
            status[path] = AgentStatus.RESTARTING
        elif isinstance(event, FailureEscalated):
            status[path] = AgentStatus.FAILED
        elif isinstance(event, AgentEnded):
            status[path] = AgentStatus(event.status)
            alive.discard(path)
        else:
            continue
        last[path] = index
    return status, last


def check_statuses(events: Sequence[Event], statuses: Mapping[str, AgentStatus | None]) -> None:
    """The status of every agent agrees with its lifecycle events.

    The status each agent must have is derived from the log: ``AgentSpawned`` → running;
    ``AgentFailed`` → restarting, with every running agent under it (torn down first);
    a decision to restart → restarting, with the affected siblings and their subtrees;
    ``AgentRestarted`` or ``AgentSuspended`` → restarting until the next ``AgentSpawned``; a
    decision to escalate
    or ``FailureEscalated`` → failed; ``AgentEnded`` → its status.

    :param statuses: the live statuses by agent path (``None`` or absent: never spawned).
    """
    name = "status agrees with the lifecycle events"
    expected, last = _expected_statuses(events)
    for path, live in statuses.items():
        want = expected.get(path)
        if live != want:
            where = last.get(path)
            shown = (
                f"its last lifecycle event is {_show(where, events[where])}"
                if (where is not None)
                else "it has no lifecycle event"
            )
            raise InvariantViolation(
                name,
                f"agent {path!r} is {live.value if live else 'never spawned'} but {shown}, "
                f"which means {want.value if want else 'never spawned'}",
                agent=path,
                index=where,
            )


# --------------------------------------------------------------------------- usage


def check_usage(events: Sequence[Event]) -> None:
    """Usage adds up from children to parents.

    * The usage in each run's :class:`~trio_agents.RunFinished` result is the sum of the usage
      of the model responses (:class:`~trio_agents.ModelResponded`) of that run.
    * The usage of each delegation (:class:`~trio_agents.DelegationFinished`, path ``P``) is
      the sum of the runs of ``P`` during it (every attempt) and of the delegations its
      specialist made in turn (their paths are directly under ``P``).

    Runs, or delegations, of two agents with the same path that overlap in time cannot be told
    apart and are skipped.
    """
    _check_run_usage(events)
    _check_delegation_usage(events)


def _check_delegation_usage(events: Sequence[Event]) -> None:
    from .._delegation import DelegationFinished, DelegationStarted

    name = "usage adds up"
    # path -> [start index, sum so far]; a path with two open delegations is ambiguous.
    open_: dict[str, list[tuple[int, Usage]]] = {}
    ambiguous: set[str] = set()
    for index, event in enumerate(events):
        path = event.agent
        if isinstance(event, DelegationStarted):
            frames = open_.setdefault(path, [])
            frames.append((index, Usage()))
            if len(frames) > 1:
                ambiguous.add(path)
        elif isinstance(event, RunFinished):
            frames = open_.get(path, [])
            if len(frames) == 1:
                start, total = frames[0]
                frames[0] = (start, total + event.result.usage)
        elif isinstance(event, DelegationFinished):
            frames = open_.get(path, [])
            if not frames:
                continue  # started before the log did
            start, total = frames.pop(0) if path in ambiguous else frames.pop()
            if path in ambiguous:
                if not frames:
                    ambiguous.discard(path)
            elif event.usage != total:
                raise InvariantViolation(
                    name,
                    f"delegation to {path!r} (started at #{start}) reports usage "
                    f"{event.usage} but its specialist's runs and its own delegations add up "
                    f"to {total}",
                    agent=path,
                    index=index,
                )
            parent = _parent(path)
            caller = open_.get(parent, []) if parent is not None else []
            if len(caller) == 1:
                caller_start, caller_total = caller[0]
                caller[0] = (caller_start, caller_total + event.usage)


def _check_run_usage(events: Sequence[Event]) -> None:
    name = "usage adds up"
    open_runs: dict[str, list[tuple[int, int, Usage]]] = {}  # path -> [(run, index, sum)]
    ambiguous: set[str] = set()
    for index, event in enumerate(events):
        path = event.agent
        if isinstance(event, RunStarted):
            runs = open_runs.setdefault(path, [])
            runs.append((event.run, index, Usage()))
            if len(runs) > 1:
                ambiguous.add(path)
        elif isinstance(event, ModelResponded):
            runs = open_runs.get(path, [])
            if len(runs) == 1:
                run, start, total = runs[0]
                runs[0] = (run, start, total + event.message.usage)
        elif isinstance(event, RunFinished):
            runs = open_runs.get(path, [])
            match = next((r for r in runs if r[0] == event.run), None)
            if match is None:
                if path not in ambiguous:
                    raise InvariantViolation(
                        name,
                        f"agent {path!r} finished run {event.run} that never started",
                        agent=path,
                        index=index,
                    )
                continue
            runs.remove(match)
            if path in ambiguous:
                if not runs:
                    ambiguous.discard(path)
                continue
            run, start, total = match
            if event.result.usage != total:
                raise InvariantViolation(
                    name,
                    f"agent {path!r} run {run} (started at #{start}) reports usage "
                    f"{event.result.usage} but its model responses add up to {total}",
                    agent=path,
                    index=index,
                )


# --------------------------------------------------------------------------- determinism


def check_same_events(first: Sequence[Event], second: Sequence[Event]) -> None:
    """The two logs are equal, event by event; the first difference is named."""
    name = "determinism"
    for index, (a, b) in enumerate(zip(first, second, strict=False)):
        if a != b:
            raise InvariantViolation(
                name,
                f"the runs differ at event #{index}: {a!r} != {b!r}",
                agent=a.agent,
                index=index,
            )
    if len(first) != len(second):
        shorter = min(len(first), len(second))
        longer = first if len(first) > len(second) else second
        raise InvariantViolation(
            name,
            f"one run has {len(first)} events and the other {len(second)}; the first extra "
            f"event is {longer[shorter]!r}",
            agent=longer[shorter].agent,
            index=shorter,
        )


def check_deterministic(run: Callable[[], Sequence[Event]], *, runs: int = 2) -> None:
    """Calling ``run`` ``runs`` times gives the same event log every time.

    ``run`` is typically ``lambda: replay(tree, commands, seed=seed).events``.
    """
    if runs < 2:
        raise InvalidArgumentError(f"runs must be >= 2 to compare anything; got {runs!r}")
    first = list(run())
    for _ in range(runs - 1):
        check_same_events(first, list(run()))


# --------------------------------------------------------------------------- all at once


def check_event_log(
    events: Sequence[Event],
    *,
    complete: bool = False,
    limits: AgentOrchestrator | Mapping[str, RestartLimit] | None = None,
    statuses: Mapping[str, AgentStatus | None] | None = None,
) -> None:
    """Run every checker that applies: replies, lifecycle order, lifetimes, cancelled
    subtrees, cancellation not counted, usage; restart limits when ``limits`` is given;
    statuses when ``statuses`` (live statuses by path) is given."""
    check_one_reply(events, complete=complete)
    check_lifecycle(events)
    check_no_serving_after_end(events, complete=complete)
    check_cancelled_subtrees(events)
    check_cancellation_not_failure(events)
    check_usage(events)
    if limits is not None:
        check_restart_limits(events, limits)
    if statuses is not None:
        check_statuses(events, statuses)
