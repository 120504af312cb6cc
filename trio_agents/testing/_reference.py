"""A reference model of supervision: pure Python, no trio, from the written semantics.

:class:`SupervisionReference` is an executable specification of what an
:class:`~trio_agents.AgentSystem` running an :class:`~trio_agents.testing.AgentTree` of
:func:`~trio_agents.testing.work_agent` agents must do. It is fed the same commands as the live
system (spawn, send, cancel, close, advance the clock, shut down) and predicts, after each, the
status, incarnation and restart count of every agent and the outcome of every request. This is
the approach of property-testing Erlang supervisors by predicting deaths: the supervision state
machine (:class:`~trio_agents.testing.SupervisionMachine`) compares the live tree with it after
every step.

It is written from the rules (the docs page "Supervision", ``DESIGN.md`` and the module
documentation of :mod:`trio_agents._supervision`), not from the orchestrator's code; in
particular it re-implements the restart limit, the backoff and the restart strategies instead
of calling :func:`~trio_agents.decide`, so a bug in either shows up as a disagreement.

The rules it encodes:

1. A request is served in order; ``ok`` succeeds at once, ``sleep N`` after ``N`` seconds,
   ``hang`` never; ``fail``/``fatal`` fail the agent's incarnation (a retryable
   ``ModelOverloaded`` / a non-retryable ``AuthenticationError``). The failing request gets
   that error as its reply. A success resets the consecutive restart count.
2. When an incarnation fails, its whole subtree is torn down first (rule 11), then the
   supervisor's policy is asked (``TreeNode.on_retryable`` / ``on_fatal``; an escalated child
   failure is not retryable) and the restart limit applied.
3. RESTART: the failed agent and the siblings its supervisor's strategy names (running ones
   only: all for one_for_all, the younger ones for rest_for_one) are torn down, and after the
   backoff the older affected siblings, the agent and the younger ones start again, each with
   its own children. Queued requests of torn-down agents are served by the new incarnation.
   Only the failed agent's history is charged (at decision time); its ``restarts`` count
   grows when it restarts.
4. STOP: the agent ends ``failed``; its descendants end ``failed`` too; every waiting request
   of the subtree is answered ``AgentStopped``.
5. ESCALATE: the agent is ``failed`` and its parent fails in turn (rule 2). At the root, the
   system fails: every agent ends (``cancelled``; the escalated chain ``failed``). Requests
   still queued at an agent whose failure escalated are answered ``AgentEscalated`` when it
   ends (instead of ``AgentStopped``).
6. Cancelling a handle ends that agent and its subtree ``cancelled`` at once, whatever they
   were doing (serving, waiting for a backoff, torn down): never a failure, never restarted.
   Waiting requests get ``AgentCancelled``. The siblings that were stopped to restart together
   with an agent cancelled during its backoff start again at once.
7. Closing a handle stops its queue: later sends get ``AgentStopped``; the queued requests are
   served; then its running children are closed the same way, youngest first, one after the
   other; then it ends ``completed``. Children of a closing agent that are not running when
   their turn comes are cancelled when it ends.
8. Children of an agent that ends ``failed`` by its own supervisor's STOP end ``failed``; the
   children of one that escalated, completed or was cancelled end ``cancelled``.
9. Sending to an agent that has ended answers at once with the error it ended with
   (``AgentStopped`` after completion); a new spawn of an ended agent starts afresh: new queue,
   fresh restart history, and no part in a sibling's restart still pending from its earlier
   life.
10. The policy is the tree's: each node's ``on_retryable``/``on_fatal`` when
    :attr:`~trio_agents.testing.AgentTree.supervisor` is ``None``;
    :class:`~trio_agents.DefaultSupervisor`'s written rule (retryable: restart, else stop);
    any other policy is asked with an error of the same type (one that raises or answers a
    non-action escalates). Then the restart type applies first: a temporary agent's failure
    is a stop (not counted, never escalated), a permanent agent's stop request is a restart;
    a temporary sibling taken down by a restart ends ``cancelled`` instead of coming back.
    Every decision is recorded (:attr:`SupervisionReference.decisions`).
11. Teardown: a request whose run is cut short by the tree -- an agent torn down with a failed
    parent, a restarting sibling or an escalation, or an agent whose own run a child's
    escalation interrupted -- is answered ``AgentCancelled`` at that moment, before any
    decision or backoff.
12. Timers due at the same instant (requests that finish, backoffs that end) have no order
    in the live system: trio wakes their tasks in one batch, in the scheduler's order. Each
    is applied whole, one after the other, in any order; :meth:`tick` takes the order set
    first unless told otherwise, and :meth:`SupervisionReference.tick_variants` gives every
    order, of which the live system must match one.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable

import attrs

from .._errors import AuthenticationError, ChildFailed, InvalidArgumentError, ModelOverloaded
from .._orchestrator import AgentStatus
from .._supervision import DefaultSupervisor, RestartStrategy, RestartType, SupervisorAction
from ._trees import AgentTree, TreeNode, Work

__all__ = ["ExpectedDecision", "ReferenceSnapshot", "SupervisionReference"]

# --------------------------------------------------------------------------- replies
# Every reply this model predicts for a request that did not succeed is named here, in one
# place, so that a change of the shell's reply rules is one edit.

REPLY_RETRYABLE = "ModelOverloaded"
"""The failing request of a ``fail`` order."""
REPLY_FATAL = "AuthenticationError"
"""The failing request of a ``fatal`` order."""
REPLY_INTERRUPTED = "AgentCancelled"
"""A request whose run the tree cut short (rule 11), answered at the teardown."""
REPLY_STOPPED = "AgentStopped"
"""Waiting requests of an agent its supervisor stopped (and of its subtree), and sends to a
closed or completed agent."""
REPLY_ESCALATED = "AgentEscalated"
"""Waiting requests of an agent whose failure escalated."""
REPLY_CANCELLED = "AgentCancelled"
"""Waiting requests of an agent cancelled by its handle, by its parent's end, by the end of
the system, or dropped (temporary) by a sibling's restart."""

_RUNNING = AgentStatus.RUNNING
_RESTARTING = AgentStatus.RESTARTING
_COMPLETED = AgentStatus.COMPLETED
_FAILED = AgentStatus.FAILED
_CANCELLED = AgentStatus.CANCELLED
_TEMPORARY = RestartType.TEMPORARY

OK = "ok"
"""The outcome of a request answered with a result."""


@attrs.define(eq=False)
class _Request:
    id: int
    work: Work
    seconds: float


class _Agent:
    def __init__(self, node: TreeNode | None, name: str, parent: _Agent | None, path: str):
        self.node = node
        self.name = name
        self.parent = parent
        self.path = path
        self.started: list[_Agent] = []  # start order
        self.status: AgentStatus | None = None
        self.wanted = False
        self.done = False
        self.queue: deque[_Request] = deque()
        self.current: _Request | None = None
        self.closing = False
        self.close_waiters: list[int] = []
        self.stopping = False  # graceful end: closing its children one by one
        self.stop_index = -1
        self.waiting_on: _Agent | None = None
        self.escalated = False
        self.end_error: str | None = None
        self.consecutive = 0
        self.times: tuple[float, ...] = ()
        self.total = 0
        self.incarnation = 0
        self.restarts = 0
        self.timer: tuple[float, int] | None = None  # due, sequence
        self.affected: list[_Agent] = []
        self.restart_after: list[_Agent] = []

    @property
    def running(self) -> bool:
        return self.status is _RUNNING


@attrs.frozen(kw_only=True)
class ReferenceSnapshot:
    """What :class:`SupervisionReference` predicts at one moment."""

    time: float
    """The virtual time."""
    statuses: dict[str, AgentStatus | None]
    """Status of every agent by name (``None``: never spawned)."""
    incarnations: dict[str, int]
    """Incarnations started so far, by name."""
    restarts: dict[str, int]
    """Restarts carried out so far, by name."""
    outcomes: dict[int, str | None]
    """Outcome of every request and close by id: ``"ok"``, an error class name, or ``None``
    while it waits."""
    system_error: str | None
    """Path of the agent whose escalated failure ended the system, if one did."""


@attrs.frozen(kw_only=True)
class ExpectedDecision:
    """A supervisor decision the model predicts; compare with
    :class:`~trio_agents.SupervisorDecided` events."""

    agent: str
    """Path of the failed agent."""
    action: str
    """The action carried out (``"restart"``, ``"stop"``, ``"escalate"``)."""
    requested: str
    """The action the policy asked for."""
    affected: tuple[str, ...]
    """Siblings restarted with it, in stop order (reverse start order)."""
    delay: float
    """The backoff delay before the restart."""
    limit_exceeded: bool = False
    """Whether the restart limit turned a restart into an escalation."""
    reason: str = ""
    """The decision's reason, word for word (:class:`~trio_agents.Decision` ``reason``)."""
    restart_type: str = "transient"
    """The failed agent's restart type (``"permanent"``, ``"transient"``, ``"temporary"``)."""


def _limit_text(max_restarts: int, window: float | None) -> str:
    """How a reason names the restart limit."""
    per = "(consecutive failures)" if window is None else f"within {float(window)} s"
    return f"{max_restarts} {per}"


# The error each kind of failure carries: the work model's retryable and fatal errors, and
# the orchestrator's wrapper of an escalated child failure.
_ERROR_TYPES = {
    "retryable": ModelOverloaded.__name__,
    "fatal": AuthenticationError.__name__,
    "child": ChildFailed.__name__,
}


class SupervisionReference:
    """Predicts a supervision tree of :func:`~trio_agents.testing.work_agent` agents.

    :param tree: the tree; the system is open and no agent is spawned.

    Feed it the commands the live system gets, in the same order, and compare. Requests and
    closes carry ids chosen by the caller; their outcomes are ``"ok"``, the name of the error
    class (``"ModelOverloaded"``, ``"AuthenticationError"``, ``"AgentCancelled"``,
    ``"AgentStopped"``), or ``None`` while they wait.
    """

    def __init__(self, tree: AgentTree) -> None:
        self.tree = tree
        self.now = 0.0
        """The virtual time (seconds since the system opened)."""
        self.system_error: str | None = None
        """Path of the agent whose escalated failure ended the system, if any."""
        self.closed = False
        """Whether the system has ended (shut down or failed)."""
        self._root = _Agent(None, "", None, "")
        self._root.status = _RUNNING
        self._agents: dict[str, _Agent] = {}
        for node in tree.nodes():
            parent_name = tree.parent_of(node.name)
            parent = self._root if parent_name is None else self._agents[parent_name]
            self._agents[node.name] = _Agent(node, node.name, parent, tree.path_of(node.name))
        self._outcomes: dict[int, str | None] = {}
        self.decisions: list[ExpectedDecision] = []
        """Every supervisor decision so far, in order."""
        self.failures: list[tuple[str, str]] = []
        """Every failure so far, in order: the agent's path and the type of its error
        (``AgentFailed``)."""
        self.escalations: list[tuple[str, str]] = []
        """Every escalated failure so far, in order: the agent's path and the type of its
        error (``FailureEscalated``)."""
        self._sequence = 0
        self._resume: list[_Agent] = []

    # ------------------------------------------------------------------ queries

    def status(self, name: str) -> AgentStatus | None:
        """The predicted status of ``name`` (``None``: never spawned)."""
        return self._agent(name).status

    def incarnation(self, name: str) -> int:
        """Incarnations of ``name`` started so far."""
        return self._agent(name).incarnation

    def restarts(self, name: str) -> int:
        """Restarts of ``name`` carried out so far."""
        return self._agent(name).restarts

    def outcome(self, id: int) -> str | None:
        """The outcome of request or close ``id`` (``None`` while it waits)."""
        return self._outcomes[id]

    def idle(self, name: str) -> bool:
        """Whether ``name`` is running with nothing to do, so a request would be served now."""
        agent = self._agent(name)
        return (
            not self.closed
            and agent.running
            and agent.current is None
            and not agent.queue
            and not agent.closing
            and not agent.stopping
        )

    def restart_due(self, name: str) -> float | None:
        """When ``name``'s pending restart happens (it waits out a backoff), else ``None``."""
        agent = self._agent(name)
        if agent.timer is None or agent.current is not None or agent.done:
            return None
        return agent.timer[0]

    def window_edges(self) -> list[float]:
        """Future moments at which a restart of an agent in window mode becomes exactly one
        window old (the boundary of its restart limit), soonest first."""
        edges: set[float] = set()
        for agent in self._agents.values():
            window = agent.node.restart_window if agent.node is not None else None
            if window is None or window == float("inf") or agent.done:
                continue
            edges.update(t + window for t in agent.times if t + window > self.now)
        return sorted(edges)

    def spawned(self, name: str) -> bool:
        """Whether ``name`` was ever spawned (so it has a handle)."""
        return self._agent(name).status is not None

    def ended(self, name: str) -> bool:
        """Whether ``name`` has ended for good (completed, failed or cancelled)."""
        return self._agent(name).done

    def supports_spawn(self, name: str) -> bool:
        """False where this model does not define the outcome of ``spawn(name)``: spawning a
        child of an agent that is closing its children (the live system allows it, but then
        the order in which the children are closed depends on the list being changed)."""
        agent = self._agent(name)
        return agent.parent is None or not agent.parent.stopping

    def snapshot(self) -> ReferenceSnapshot:
        """Everything this model predicts now."""
        agents = self._agents.values()
        return ReferenceSnapshot(
            time=self.now,
            statuses={a.name: a.status for a in agents},
            incarnations={a.name: a.incarnation for a in agents},
            restarts={a.name: a.restarts for a in agents},
            outcomes=dict(self._outcomes),
            system_error=self.system_error,
        )

    def _agent(self, name: str) -> _Agent:
        try:
            return self._agents[name]
        except KeyError:
            raise InvalidArgumentError(
                f"no agent {name!r} in the tree (agents: {list(self._agents)})"
            ) from None

    # ------------------------------------------------------------------ commands

    def spawn(self, name: str) -> str | None:
        """Spawn ``name``; returns the name of the error ``spawn`` raises, or ``None``."""
        self._check_open()
        agent = self._agent(name)
        if agent.status is not None and not agent.done:
            return "InvalidArgumentError"  # already running / restarting
        parent = agent.parent
        assert parent is not None
        if not parent.running:
            return "InvalidArgumentError"  # its parent is not running
        agent.queue = deque()
        agent.closing = False
        agent.close_waiters = []
        agent.wanted = True
        agent.done = False
        agent.escalated = False
        agent.end_error = None
        agent.consecutive, agent.times, agent.total = 0, (), 0
        if agent in parent.started:
            parent.started.remove(agent)
        parent.started.append(agent)
        self._start(agent)
        self._settle()
        return None

    def send(self, name: str, id: int, work: Work, seconds: float = 0.0) -> None:
        """Send request ``id`` to the spawned agent ``name``."""
        self._check_open()
        if id in self._outcomes:
            raise InvalidArgumentError(f"request id {id} was used before")
        agent = self._agent(name)
        if agent.status is None:
            raise InvalidArgumentError(f"agent {name!r} was never spawned; it has no handle")
        self._outcomes[id] = None
        if agent.done:
            self._outcomes[id] = agent.end_error or REPLY_STOPPED
            return
        if agent.closing:
            self._outcomes[id] = REPLY_STOPPED
            return
        agent.queue.append(_Request(id, work, seconds))
        self._serve(agent)
        self._settle()

    def cancel(self, name: str) -> None:
        """Cancel the spawned agent ``name`` through its handle."""
        self._check_open()
        agent = self._agent(name)
        if agent.status is None or agent.done:
            return
        pending = agent.affected if agent.timer is not None and not agent.running else []
        self._finalize(agent, _CANCELLED, REPLY_CANCELLED)
        parent = agent.parent
        assert parent is not None
        for sibling in sorted(pending, key=parent.started.index):
            # Stopped only to restart with it: they come back now (rule 6).
            if parent.running and sibling.wanted and not sibling.done:
                self._start(sibling)
        self._settle()

    def close(self, name: str, id: int) -> None:
        """Close the spawned agent ``name`` gracefully; ``id`` identifies the close's outcome
        (``"ok"`` when it completed, else the error it ended with)."""
        self._check_open()
        if id in self._outcomes:
            raise InvalidArgumentError(f"close id {id} was used before")
        agent = self._agent(name)
        if agent.status is None:
            raise InvalidArgumentError(f"agent {name!r} was never spawned; it has no handle")
        self._outcomes[id] = None
        if agent.done:
            self._outcomes[id] = OK if agent.status is _COMPLETED else agent.end_error
            return
        agent.close_waiters.append(id)
        agent.closing = True
        self._serve(agent)
        self._settle()

    def tick(self, seconds: float, *, choose: Callable[[list[str]], int] | None = None) -> None:
        """Let ``seconds`` pass: requests finish and backoffs end, in time order.

        :param choose: for timers due at the same instant (rule 12), given the names of
            their agents in the order they were set, returns the index of the one that goes
            first; by default the one set first.
        """
        if seconds < 0:
            raise InvalidArgumentError(f"seconds must be >= 0; got {seconds!r}")
        target = self.now + seconds
        while not self.closed:
            due = [a for a in self._agents.values() if a.timer is not None]
            if not due:
                break
            agent = min(due, key=lambda a: a.timer)  # type: ignore[arg-type, return-value]
            assert agent.timer is not None
            when = agent.timer[0]
            if when > target:
                break
            tied = sorted(
                (a for a in due if a.timer is not None and a.timer[0] == when),
                key=lambda a: a.timer,  # type: ignore[arg-type, return-value]
            )
            if choose is not None and len(tied) > 1:
                agent = tied[choose([a.name for a in tied])]
            self.now = when
            agent.timer = None
            if agent.current is not None:  # a sleep request finished
                request, agent.current = agent.current, None
                self._succeed(agent, request)
                self._serve(agent)
            else:  # the backoff ended
                self._restart(agent)
            self._settle()
        self.now = target

    def tick_variants(self, seconds: float, *, limit: int = 24) -> list[SupervisionReference]:
        """Copies of this reference, each after :meth:`tick` with another order of the timers
        that fall due at the same instant (rule 12): the default order first. With no such
        tie, one copy. At most ``limit`` orders are explored."""
        variants: list[SupervisionReference] = []
        pending: list[list[int]] = [[]]
        while pending and len(variants) < limit:
            prefix = pending.pop(0)
            made: list[tuple[int, int]] = []  # (index chosen, tied timers) per choice

            def choose(
                tied: list[str],
                prefix: list[int] = prefix,
                made: list[tuple[int, int]] = made,
            ) -> int:
                k = len(made)
                index = prefix[k] if k < len(prefix) else 0
                made.append((index, len(tied)))
                return index

            variant = copy.deepcopy(self, {id(self.tree): self.tree})  # the tree is shared
            variant.tick(seconds, choose=choose)
            variants.append(variant)
            for k in range(len(prefix), len(made)):
                chosen = [index for index, _ in made[:k]]
                pending.extend([*chosen, other] for other in range(1, made[k][1]))
        return variants

    def shutdown(self) -> None:
        """Leave the system's ``async with`` block: every agent still alive is cancelled."""
        if self.closed:
            return
        self._end_system()

    # ------------------------------------------------------------------ rules

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidArgumentError("the system has ended; no more commands")

    def _reply(self, request: _Request, outcome: str) -> None:
        assert self._outcomes.get(request.id, None) is None, f"request {request.id} replied twice"
        self._outcomes[request.id] = outcome

    def _schedule(self, agent: _Agent, delay: float) -> None:
        self._sequence += 1
        agent.timer = (self.now + delay, self._sequence)

    def _start(self, agent: _Agent) -> None:
        """A new incarnation: bring the children back, serve."""
        agent.incarnation += 1
        agent.escalated = False
        for child in list(agent.started):
            if child.wanted and not child.done:
                self._start(child)
        agent.status = _RUNNING
        if agent.restart_after:
            younger, agent.restart_after = agent.restart_after, []
            parent = agent.parent
            assert parent is not None
            for sibling in younger:
                if parent.running and sibling.wanted and not sibling.done:
                    self._start(sibling)
        self._serve(agent)

    def _serve(self, agent: _Agent) -> None:
        while agent.running and agent.current is None and not agent.stopping:
            if not agent.queue:
                if agent.closing:
                    agent.stopping = True
                    agent.stop_index = len(agent.started) - 1
                    self._continue_stopping(agent)
                return
            request = agent.queue.popleft()
            if request.work is Work.OK or (request.work is Work.SLEEP and request.seconds <= 0):
                self._succeed(agent, request)
            elif request.work is Work.SLEEP:
                agent.current = request
                self._schedule(agent, request.seconds)
            elif request.work is Work.HANG:
                agent.current = request
            else:
                retryable = request.work is Work.FAIL
                self._reply(request, REPLY_RETRYABLE if retryable else REPLY_FATAL)
                self._fail(agent, kind="retryable" if retryable else "fatal", origin=agent.path)
                return

    def _succeed(self, agent: _Agent, request: _Request) -> None:
        self._reply(request, OK)
        agent.consecutive = 0

    def _continue_stopping(self, agent: _Agent) -> None:
        """Rule 7: close the running children youngest first, one at a time, then complete."""
        while agent.stop_index >= 0:
            child = agent.started[agent.stop_index]
            agent.stop_index -= 1
            if not child.running:
                continue
            child.closing = True
            self._serve(child)
            if not child.done:
                agent.waiting_on = child
                return
        agent.waiting_on = None
        for child in agent.started:  # the rest are cancelled with its nursery
            self._teardown(child)
        self._finalize(agent, _COMPLETED, None)

    def _teardown(self, agent: _Agent) -> None:
        """Cancel an agent's task and its subtree's from outside: their runs are answered now,
        their queues wait for their fate (rule 11)."""
        if agent.done or agent.status is None:
            return
        for child in agent.started:
            self._teardown(child)
        if agent.current is not None:
            self._reply(agent.current, REPLY_INTERRUPTED)
            agent.current = None
        agent.timer = None
        agent.stopping = False
        agent.waiting_on = None
        agent.affected = []
        if agent.running:
            agent.status = _RESTARTING

    def _requested(self, agent: _Agent, kind: str, origin: str) -> SupervisorAction:
        """What the tree's policy asks for. ``kind``: ``"retryable"``, ``"fatal"`` or
        ``"child"`` (an escalated child failure, which is not retryable)."""
        node = agent.node
        assert node is not None
        policy = self.tree.supervisor
        if policy is None:
            return node.on_retryable if kind == "retryable" else node.on_fatal
        if type(policy) is DefaultSupervisor:
            # Written from its rule, not called: restart retryable errors, stop the rest.
            return SupervisorAction.RESTART if kind == "retryable" else SupervisorAction.STOP
        # A user's policy is the oracle for itself: asked with an error of the same type.
        error: BaseException
        if kind == "retryable":
            error = ModelOverloaded(f"{agent.name}: injected overload")
        else:
            fatal = AuthenticationError(f"{agent.name}: injected fatal error")
            error = fatal if kind == "fatal" else ChildFailed(origin, fatal)
        try:
            answer: object = policy.on_agent_error(agent.name, error)
        except Exception:
            return SupervisorAction.ESCALATE  # a policy that raises fails closed
        return answer if isinstance(answer, SupervisorAction) else SupervisorAction.ESCALATE

    def _fail(self, agent: _Agent, *, kind: str, origin: str) -> None:
        """Rule 2: the incarnation of ``agent`` failed."""
        error = _ERROR_TYPES[kind]
        self.failures.append((agent.path, error))
        for child in agent.started:
            self._teardown(child)
        if agent.current is not None:  # a child's failure interrupted its own request
            self._reply(agent.current, REPLY_INTERRUPTED)
            agent.current = None
        agent.timer = None
        agent.stopping = False
        agent.waiting_on = None
        node = agent.node
        assert node is not None
        parent = agent.parent
        assert parent is not None
        requested = self._requested(agent, kind, origin)
        action = requested
        if node.restart is RestartType.TEMPORARY:
            action = SupervisorAction.STOP  # never restarted, never escalated, not counted
        elif node.restart is RestartType.PERMANENT and requested is SupervisorAction.STOP:
            action = SupervisorAction.RESTART
        limit_exceeded = False
        if action is SupervisorAction.RESTART:
            window = node.restart_window
            if window is None:
                allowed = agent.consecutive < node.max_restarts
                number = agent.consecutive + 1
                times = agent.times
            else:
                recent = tuple(t for t in agent.times if self.now - t < window)
                allowed = len(recent) < node.max_restarts
                number = len(recent) + 1
                times = (*recent, self.now)
            if allowed:
                agent.consecutive += 1
                agent.total += 1
                agent.times = times
                self._restart_later(agent, parent, number, requested)
                return
            action = SupervisorAction.ESCALATE
            limit_exceeded = True
        if node.restart is RestartType.TEMPORARY:
            reason = (
                "a temporary agent is never restarted: its failure is dropped "
                f"(the policy asked to {requested.value})"
            )
        elif limit_exceeded:
            limit = _limit_text(node.max_restarts, node.restart_window)
            reason = f"restart limit {limit} exceeded: escalating"
        elif requested is SupervisorAction.STOP:
            reason = "the policy chose to stop the agent"
        else:
            reason = "the policy chose to escalate the failure"
        self.decisions.append(
            ExpectedDecision(
                agent=agent.path,
                action=action.value,
                requested=requested.value,
                affected=(),
                delay=0.0,
                limit_exceeded=limit_exceeded,
                reason=reason,
                restart_type=node.restart.value,
            )
        )
        if action is SupervisorAction.STOP:
            agent.status = _RESTARTING  # between incarnations until finalized
            self._finalize(agent, _FAILED, REPLY_STOPPED)
            return
        agent.escalated = True
        agent.status = _FAILED
        self.escalations.append((agent.path, error))
        if parent is self._root:
            self.system_error = origin
            self._end_system()
        else:
            self._fail(parent, kind="child", origin=origin)

    def _restart_later(
        self, agent: _Agent, parent: _Agent, number: int, requested: SupervisorAction
    ) -> None:
        agent.status = _RESTARTING
        node = agent.node
        assert node is not None
        strategy = parent.node.strategy if parent.node is not None else self.tree.strategy
        siblings = [c for c in parent.started if c.running or c is agent]
        index = siblings.index(agent)
        if strategy is RestartStrategy.ONE_FOR_ALL:
            affected = [c for c in siblings if c is not agent]
        elif strategy is RestartStrategy.REST_FOR_ONE:
            affected = siblings[index + 1 :]
        else:
            affected = []
        for sibling in reversed(affected):  # stop order: youngest first
            self._teardown(sibling)
        dropped = [s for s in affected if s.node is not None and s.node.restart is _TEMPORARY]
        affected = [s for s in affected if s not in dropped]
        agent.affected = affected
        delay = 0.0
        if node.backoff > 0 and node.max_backoff > 0:
            delay = min(node.max_backoff, node.backoff * 2.0 ** (number - 1))
        permanent = (
            " (a permanent agent restarts when stopped)"
            if requested is SupervisorAction.STOP
            else ""
        )
        limit = _limit_text(node.max_restarts, node.restart_window)
        self.decisions.append(
            ExpectedDecision(
                agent=agent.path,
                action="restart",
                requested=requested.value,
                affected=tuple(s.name for s in reversed(affected)),
                delay=delay,
                reason=f"restart {number} of {limit}{permanent}",
                restart_type=node.restart.value,
            )
        )
        for sibling in dropped:  # temporary: stopped with the others, then ended
            self._finalize(sibling, _CANCELLED, REPLY_CANCELLED)
        if delay > 0:
            self._schedule(agent, delay)
        else:
            self._restart(agent)

    def _restart(self, agent: _Agent) -> None:
        parent = agent.parent
        assert parent is not None
        agent.restarts += 1
        affected, agent.affected = agent.affected, []
        order = parent.started
        mine = order.index(agent)
        ordered = sorted(affected, key=order.index)
        for sibling in ordered:
            older = order.index(sibling) < mine
            if older and parent.running and sibling.wanted and not sibling.done:
                self._start(sibling)
        agent.restart_after = [s for s in ordered if order.index(s) > mine]
        self._start(agent)

    def _finalize(self, agent: _Agent, status: AgentStatus, error: str | None) -> None:
        """End ``agent`` and its subtree for good, answering every waiting request (rule 8)."""
        stack: list[tuple[_Agent, AgentStatus, str | None]] = [(agent, status, error)]
        while stack:
            node, node_status, node_error = stack.pop()
            if node.done or node.status is None:
                continue
            stopped = node_status is _FAILED and not node.escalated
            if node.escalated:
                node_status, node_error = _FAILED, REPLY_ESCALATED
            node.status = node_status
            node.end_error = node_error
            node.wanted = False
            node.done = True
            if node.parent is not None:
                # A sibling's pending restart no longer takes this life along: a new spawn
                # of the agent is a new life, which that restart must not touch.
                for sibling in node.parent.started:
                    if node in sibling.affected:
                        sibling.affected.remove(node)
                    if node in sibling.restart_after:
                        sibling.restart_after.remove(node)
            reply = node_error or REPLY_STOPPED
            for request in (node.current, *node.queue):
                if request is not None:
                    self._reply(request, reply)
            node.current = None
            node.queue.clear()
            node.timer = None
            node.stopping = False
            node.waiting_on = None
            node.affected = []
            for waiter in node.close_waiters:
                self._outcomes[waiter] = OK if node_status is _COMPLETED else node_error
            node.close_waiters = []
            child_status = _FAILED if stopped else _CANCELLED
            child_error = REPLY_STOPPED if stopped else REPLY_CANCELLED
            for child in node.started:
                stack.append((child, child_status, child_error))
            parent = node.parent
            if parent is not None and parent.waiting_on is node:
                parent.waiting_on = None
                self._resume.append(parent)

    def _settle(self) -> None:
        while self._resume:
            parent = self._resume.pop(0)
            if parent.stopping and parent.running and parent.waiting_on is None:
                self._continue_stopping(parent)

    def _end_system(self) -> None:
        for agent in self._root.started:
            self._teardown(agent)
        for agent in self._root.started:
            self._finalize(agent, _CANCELLED, REPLY_CANCELLED)
        self._resume.clear()
        self._root.status = _CANCELLED
        self.closed = True
