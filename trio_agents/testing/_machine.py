"""The supervision state machine: hypothesis drives a live tree and checks it after every step.

Hypothesis runs the rules of a ``RuleBasedStateMachine`` synchronously, so the live system runs
in its own ``trio.run`` in a background thread (:class:`~trio_agents.testing.LiveSystem`) on a
virtual clock that only the ``tick`` rule moves. After every rule the machine compares the live
tree with :class:`~trio_agents.testing.SupervisionReference` (statuses, incarnations, restart
counts, the outcome of every request and close, whether the system failed and where) and runs
the event-log invariants. At the end of each example it closes the system, checks the complete
log, and replays the same commands in a fresh ``trio.run`` with the same seed: the two event
logs must be equal.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from hypothesis import event, note, target
from hypothesis import strategies as st
from hypothesis.stateful import (
    RULE_MARKER,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from hypothesis.strategies import SearchStrategy

from .._agent import Agent
from .._errors import InvalidArgumentError
from .._orchestrator import AgentFailed, AgentStatus, FailureEscalated, SupervisorDecided
from ._driver import Command, LiveSystem, Observation, Op, Trace, replay
from ._invariants import check_event_log, check_same_events
from ._reference import ReferenceSnapshot, SupervisionReference
from ._trees import AgentTree, Work, work_agent

__all__ = ["SupervisionMachine"]

_INDEX = st.integers(min_value=0, max_value=63)


def _differences(live: Observation, model: ReferenceSnapshot, *, timed: bool) -> list[str]:
    out: list[str] = []
    if timed and live.time != model.time:
        out.append(f"time: live {live.time!r}, reference {model.time!r}")
    if live.system_error != model.system_error:
        out.append(f"system failure: live {live.system_error!r}, reference {model.system_error!r}")
    for name, want in model.statuses.items():
        got = live.statuses.get(name)
        if got != want:
            out.append(
                f"status of {name!r}: live {got.value if got else None}, "
                f"reference {want.value if want else None}"
            )
    for field in ("incarnations", "restarts"):
        got_map: dict[str, int] = getattr(live, field)
        want_map: dict[str, int] = getattr(model, field)
        for name, want_count in want_map.items():
            if got_map.get(name) != want_count:
                out.append(f"{field} of {name!r}: live {got_map.get(name)}, reference {want_count}")
    for id, want_outcome in model.outcomes.items():
        got_outcome = live.outcomes.get(id, "<missing>")
        if got_outcome != want_outcome:
            out.append(f"outcome of #{id}: live {got_outcome!r}, reference {want_outcome!r}")
    return out


def _bucket(count: int) -> str:
    if count < 5:
        return "0-4"
    if count < 10:
        return "5-9"
    return "10-19" if count < 20 else "20+"


_WEIGHT_ALIAS = "_weighted_copy_"


def _apply_weights(cls: type[SupervisionMachine]) -> None:
    """Carry out ``cls.rule_weights``: extra copies of a rule under other names for a weight
    above 1 (hypothesis samples the rules it collects, copies included), and the rule's name
    bound to its plain function, which hypothesis does not collect, for a weight of 0."""
    weights = cls.rule_weights
    if not isinstance(weights, Mapping):
        raise InvalidArgumentError(
            f"rule_weights must be a mapping from rule name to weight, got {weights!r}"
        )
    rules = {
        name: member
        for name, member in inspect.getmembers(SupervisionMachine)
        if getattr(member, RULE_MARKER, None) is not None
    }
    unknown = sorted(set(weights) - set(rules))
    if unknown:
        raise InvalidArgumentError(
            f"rule_weights names unknown rules {unknown}; the rules are: {sorted(rules)}"
        )
    for name, weight in weights.items():
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise InvalidArgumentError(
                f"rule_weights[{name!r}] must be an int >= 0, got {weight!r}"
            )
    # Start from the plain rules: copies a weighted base class made are not inherited.
    for name in dir(cls):
        if name.startswith(_WEIGHT_ALIAS):
            setattr(cls, name, None)
    for name, member in rules.items():
        weight = weights.get(name, 1)
        if name not in cls.__dict__ or weight != 1:
            # Weight 0: the name keeps working as a method but is no rule any more.
            plain = getattr(member, RULE_MARKER).function
            setattr(cls, name, member if weight else plain)
        for copy in range(1, weight):
            setattr(cls, f"{_WEIGHT_ALIAS}{name}_{copy}", member)


class SupervisionMachine(RuleBasedStateMachine):
    """A hypothesis state machine that drives a live supervision tree and checks it.

    Rules: ``spawn`` an agent, ``send`` it a request (answer now, after some seconds, or
    never), ``fail`` an idle agent (retryable or not), ``fail_again`` the agent that failed
    last (after its backoff, after a success, or queued behind a busy request), ``cancel`` or
    ``close`` it through its handle, ``tick`` the virtual clock, and ``tick_to_window_edge``
    (to the moment a restart leaves its window). After every rule the supervisor decisions
    must be the predicted ones too (:class:`~trio_agents.testing.ExpectedDecision`).
    After every rule the live tree must agree with
    :class:`~trio_agents.testing.SupervisionReference`, and the event log so far must pass
    :func:`~trio_agents.testing.check_event_log` (with the restart limits and the live
    statuses). At the end the system is closed, the complete log is checked, every request
    and close must have its one outcome, and a replay of the same commands with the same seed
    must produce the same events.

    Use it as is (``TestSupervision = SupervisionMachine.TestCase``) to test random trees, or
    subclass it:

    * set :attr:`tree` to your :class:`~trio_agents.testing.AgentTree` (or a strategy of
      trees);
    * override :meth:`build_agent` to run your own agents: return
      ``Agent(WorkModel(your_model, name=name), ..., retry=RetryPolicy(max_attempts=1))`` so
      the harness decides when each one fails, hangs or takes time;
    * change :attr:`tick_seconds`, :attr:`sleep_seconds` or :attr:`check_replay`;
    * set :attr:`rule_weights` to steer which rules hypothesis picks.
    """

    tree: ClassVar[AgentTree | SearchStrategy[AgentTree] | None] = None
    """The tree to test, a strategy of trees, or ``None`` for
    :func:`~trio_agents.testing.strategies.agent_trees` with its defaults."""
    tick_seconds: ClassVar[tuple[float, ...]] = (0.5, 1.0, 2.0, 5.0)
    """How far one ``tick`` may move the clock (binary fractions keep time arithmetic exact)."""
    sleep_seconds: ClassVar[tuple[float, ...]] = (0.5, 1.0, 3.0)
    """How long a ``sleep`` request may take."""
    check_replay: ClassVar[bool] = True
    """Replay every example at its end and require the same event log (determinism)."""
    timeout: ClassVar[float] = 30.0
    """Real seconds a step may take before the live system is declared stuck."""
    rule_weights: ClassVar[Mapping[str, int]] = {}
    """Relative weights of the rules, by name (a rule not named weighs 1). At each step
    hypothesis picks uniformly among the enabled rules; a rule of weight ``k`` counts ``k``
    times in that choice, and a rule of weight 0 is never picked. For example
    ``{"fail": 3, "fail_again": 3, "reopen": 0}`` spends more steps on failures and never
    reopens a closed system. Checked when the subclass is defined: an unknown rule name or a
    weight that is not an int >= 0 raises :class:`~trio_agents.InvalidArgumentError`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _apply_weights(cls)

    def __init__(self) -> None:
        super().__init__()
        self.live: LiveSystem | None = None
        self.reference: SupervisionReference | None = None
        self.agent_tree: AgentTree | None = None
        self.seed = 0
        self._ids = 0
        self._limits: dict[str, Any] = {}
        self._paths: dict[str, str] = {}
        self._failed = False
        self._focus: str | None = None
        self._decisions_seen = 0
        self._most_restarts = 0

    def build_agent(self, name: str) -> Agent:
        """Build the agent called ``name`` (called at every spawn and restart).

        The default is :func:`~trio_agents.testing.work_agent`. An override must return an
        agent on a :class:`~trio_agents.testing.WorkModel` with ``max_attempts=1`` retries,
        and its model must answer ``ok`` requests without waiting on the clock.
        """
        return work_agent(name)

    # ------------------------------------------------------------------ setup

    @initialize(data=st.data(), seed=st.integers(min_value=0, max_value=2**32 - 1))
    def open_system(self, data: st.DataObject, seed: int) -> None:
        """Draw (or take) the tree and a seed, and open the live system."""
        tree = type(self).tree
        if tree is None:
            from ._strategies import agent_trees

            tree = data.draw(agent_trees(), label="tree")
        elif not isinstance(tree, AgentTree):
            tree = data.draw(tree, label="tree")
        if not isinstance(tree, AgentTree):
            raise InvalidArgumentError(
                f"{type(self).__name__}.tree must be an AgentTree or a strategy of them; "
                f"got {tree!r}"
            )
        self.agent_tree = tree
        self._paths = {name: tree.path_of(name) for name in tree.names()}
        self._limits = {tree.path_of(n.name): n.limit for n in tree.nodes()}
        self._start(seed)
        # Start with a live tree: the first agents in depth-first order (parents first).
        count = data.draw(st.integers(min_value=0, max_value=len(tree.names())), label="spawn")
        for name in tree.names()[:count]:
            self._spawn(name)

    def _start(self, seed: int) -> None:
        assert self.agent_tree is not None
        self.seed = seed
        self.reference = SupervisionReference(self.agent_tree)
        self._focus = None
        self._decisions_seen = 0
        self.live = LiveSystem(
            self.agent_tree, seed=seed, build_agent=self.build_agent, timeout=self.timeout
        )

    def _name(self, index: int) -> str:
        assert self.agent_tree is not None
        names = self.agent_tree.names()
        return names[index % len(names)]

    def _spawned(self, index: int) -> str | None:
        """A spawned agent: one still alive unless ``index`` is a multiple of 8 (an ended
        one then, to check that handles of ended agents behave)."""
        assert self.agent_tree is not None
        assert self.reference is not None
        reference = self.reference
        spawned = [n for n in self.agent_tree.names() if reference.spawned(n)]
        alive = [n for n in spawned if not reference.ended(n)]
        # Agents between incarnations are rare and short-lived: weigh them up.
        alive += [n for n in alive if not reference.idle(n)] * 2
        alive += [n for n in alive if reference.status(n) is not AgentStatus.RUNNING] * 3
        names = alive if alive and index % 8 else spawned
        return names[index % len(names)] if names else None

    def _open(self) -> bool:
        return self.reference is not None and not self.reference.closed

    def _run(self, command: Command, expected_spawn_error: str | None = None) -> None:
        assert self.live is not None
        assert self.reference is not None
        observation = self.live.execute(command)
        problems = self._problems(observation, self.reference, expected_spawn_error)
        if problems:
            self._fail_with(command, problems)

    def _tick(self, seconds: float) -> None:
        """Let ``seconds`` pass in both systems. Timers due at the same instant have no
        order (reference rule 12): the live system must match the reference after one of
        the orders they can take."""
        assert self.live is not None
        assert self.reference is not None
        variants = self.reference.tick_variants(seconds)
        command = Command(op=Op.TICK, seconds=seconds)
        observation = self.live.execute(command)
        if len(variants) > 1:
            event("timers due at the same instant")
        first: list[str] = []
        for variant in variants:
            problems = self._problems(observation, variant, None)
            if not problems:
                self.reference = variant
                return
            first = first or problems
        self.reference = variants[0]
        if len(variants) > 1:
            first.append(f"(none of the {len(variants)} orders of simultaneous timers matched)")
        self._fail_with(command, first)

    def _problems(
        self,
        observation: Observation,
        reference: SupervisionReference,
        expected_spawn_error: str | None,
    ) -> list[str]:
        problems = _differences(observation, reference.snapshot(), timed=True)
        if observation.spawn_error != expected_spawn_error:
            problems.insert(
                0,
                f"spawn raised {observation.spawn_error!r}, reference expects "
                f"{expected_spawn_error!r}",
            )
        problems += self._decision_differences(reference)
        problems += self._failure_differences(reference)
        return problems

    def _fail_with(self, command: Command, problems: list[str]) -> None:
        self._failed = True
        raise AssertionError(
            f"after {command} (seed {self.seed}) the live system disagrees with the "
            "reference model:\n  " + "\n  ".join(problems)
        )

    def _decision_differences(self, reference: SupervisionReference) -> list[str]:
        """The supervisor decisions so far against the predicted ones: action, request,
        siblings in stop order, the backoff delay (which the clock checks too), whether the
        limit was exceeded, the restart type, and the reason word for word."""
        assert self.live is not None
        assert self.reference is not None
        fields = (
            "agent",
            "action",
            "requested",
            "affected",
            "delay",
            "limit_exceeded",
            "restart_type",
            "reason",
        )
        live = [
            (
                e.agent,
                e.action,
                e.requested,
                tuple(e.affected),
                e.delay,
                e.limit_exceeded,
                e.restart_type,
                e.reason,
            )
            for e in self.live.events
            if isinstance(e, SupervisorDecided)
        ]
        want = [
            (
                d.agent,
                d.action,
                d.requested,
                d.affected,
                d.delay,
                d.limit_exceeded,
                d.restart_type,
                d.reason,
            )
            for d in reference.decisions
        ]
        if live == want:
            return []
        for index, (got, expected) in enumerate(zip(live, want, strict=False)):
            if got != expected:
                wrong = [
                    f"{name}: live {g!r}, reference {e!r}"
                    for name, g, e in zip(fields, got, expected, strict=True)
                    if g != e
                ]
                return [f"decision #{index} of {got[0]!r}: " + "; ".join(wrong)]
        return [f"decisions: live made {len(live)}, reference predicts {len(want)}"]

    def _failure_differences(self, reference: SupervisionReference) -> list[str]:
        """The failures and escalations so far against the predicted ones: which agent, and
        the type of the error the event carries."""
        assert self.live is not None
        assert self.reference is not None
        problems = []
        for kind, wanted in (
            (AgentFailed, reference.failures),
            (FailureEscalated, reference.escalations),
        ):
            got = [
                (e.agent, getattr(e.error, "type", None))
                for e in self.live.events
                if isinstance(e, kind)
            ]
            if got != wanted:
                index = next(
                    (i for i, (g, w) in enumerate(zip(got, wanted, strict=False)) if g != w),
                    min(len(got), len(wanted)),
                )
                problems.append(
                    f"{kind.__name__} events differ from #{index}: live "
                    f"{got[index : index + 2]!r}, reference {wanted[index : index + 2]!r} "
                    f"(live {len(got)}, reference {len(wanted)})"
                )
        return problems

    def _state(self, name: str) -> str:
        assert self.reference is not None
        status = self.reference.status(name)
        return status.value if status is not None else "never spawned"

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # ------------------------------------------------------------------ rules

    @precondition(_open)
    @rule(index=_INDEX)
    def spawn(self, index: int) -> None:
        """Spawn an agent (refused if it is alive or its parent is not running)."""
        assert self.reference is not None
        self._spawn(self._name(index))

    def _spawn(self, name: str) -> None:
        assert self.reference is not None
        if not self.reference.supports_spawn(name):
            note(f"skip spawn({name}): its parent is closing its children")
            return
        expected = self.reference.spawn(name)
        self._run(Command(op=Op.SPAWN, agent=name), expected)

    @precondition(_open)
    @rule(
        index=_INDEX,
        work=st.sampled_from([Work.OK, Work.SLEEP, Work.OK, Work.SLEEP, Work.HANG]),
        choice=st.integers(min_value=0, max_value=15),
    )
    def send(self, index: int, work: Work, choice: int) -> None:
        """Send a request that answers now, after some seconds, or never."""
        assert self.reference is not None
        name = self._spawned(index)
        if name is None:
            return
        seconds = self.sleep_seconds[choice % len(self.sleep_seconds)] if work is Work.SLEEP else 0
        id = self._next_id()
        self.reference.send(name, id, work, seconds)
        self._run(Command(op=Op.SEND, agent=name, work=work, seconds=seconds, id=id))

    @precondition(_open)
    @rule(index=_INDEX, fatal=st.booleans())
    def fail(self, index: int, fatal: bool) -> None:
        """Make an idle agent fail (retryable ``ModelOverloaded`` or fatal
        ``AuthenticationError``); its supervisor decides."""
        assert self.reference is not None
        assert self.agent_tree is not None
        idle = [name for name in self.agent_tree.names() if self.reference.idle(name)]
        if not idle:
            return
        name = idle[index % len(idle)]
        work = Work.FATAL if fatal else Work.FAIL
        id = self._next_id()
        self.reference.send(name, id, work)
        event(f"a failure leaves the agent {self._state(name)}")
        self._run(Command(op=Op.SEND, agent=name, work=work, id=id))
        self._focus = name
        self._record_restarts()

    @precondition(lambda self: self._open() and self._focus is not None)
    @rule(
        fatal=st.booleans(),
        ok_first=st.booleans(),
        busy=st.sampled_from([Work.OK, Work.OK, Work.SLEEP, Work.HANG]),
    )
    def fail_again(self, fatal: bool, ok_first: bool, busy: Work) -> None:
        """Fail the agent that failed last once more, so that long fail/ok/fail sequences
        reach restart limits: right away, after a success (which resets the consecutive
        count), or behind a request it is busy with (the failure waits in its queue)."""
        assert self.reference is not None
        name = self._focus
        assert name is not None
        due = self.reference.restart_due(name)
        if due is not None:  # wait out its backoff first
            seconds = due - self.reference.now
            self._tick(seconds)
            if not self._open():
                return
        if self.reference.ended(name) or self.reference.status(name) is not AgentStatus.RUNNING:
            return
        if ok_first or not self.reference.idle(name):
            seconds = self.sleep_seconds[0] if busy is Work.SLEEP else 0
            first = busy if not self.reference.idle(name) or not ok_first else Work.OK
            if first is not Work.OK:
                event("a failure queued behind a busy request")
            id = self._next_id()
            self.reference.send(name, id, first, seconds)
            self._run(Command(op=Op.SEND, agent=name, work=first, seconds=seconds, id=id))
            if self.reference.closed or self.reference.ended(name):
                return
        work = Work.FATAL if fatal else Work.FAIL
        id = self._next_id()
        self.reference.send(name, id, work)
        event(f"fail again leaves the agent {self._state(name)}")
        self._run(Command(op=Op.SEND, agent=name, work=work, id=id))
        self._record_restarts()

    @precondition(lambda self: self._open() and bool(self.reference.window_edges()))
    @rule()
    def tick_to_window_edge(self) -> None:
        """Move the clock exactly to the moment a restart leaves its window (the boundary of
        a sliding-window limit)."""
        assert self.reference is not None
        seconds = self.reference.window_edges()[0] - self.reference.now
        event("tick to a restart window's edge")
        self._tick(seconds)

    def _record_restarts(self) -> None:
        assert self.reference is not None
        assert self.agent_tree is not None
        most = max((self.reference.restarts(n) for n in self.agent_tree.names()), default=0)
        self._most_restarts = max(self._most_restarts, most)
        for decision in self.reference.decisions[self._decisions_seen :]:
            event(f"decision {decision.action} (asked {decision.requested})")
            if decision.affected:
                event("a restart took siblings with it")
            if decision.delay > 0:
                event("a restart waited a backoff")
        self._decisions_seen = len(self.reference.decisions)

    @precondition(_open)
    @rule(index=_INDEX)
    def cancel(self, index: int) -> None:
        """Cancel an agent through its handle (never a failure)."""
        assert self.reference is not None
        name = self._spawned(index)
        if name is None:
            return
        event(f"cancel a {self._state(name)} agent")
        self.reference.cancel(name)
        self._run(Command(op=Op.CANCEL, agent=name))

    @precondition(_open)
    @rule(index=_INDEX)
    def close(self, index: int) -> None:
        """Close an agent gracefully through its handle."""
        assert self.reference is not None
        name = self._spawned(index)
        if name is None:
            return
        event(f"close a {self._state(name)} agent")
        id = self._next_id()
        self.reference.close(name, id)
        self._run(Command(op=Op.CLOSE, agent=name, id=id))

    @rule(choice=st.integers(min_value=0, max_value=15))
    def tick(self, choice: int) -> None:
        """Move the virtual clock (requests finish, backoffs end)."""
        if not self._open():
            return
        assert self.reference is not None
        seconds = self.tick_seconds[choice % len(self.tick_seconds)]
        self._tick(seconds)

    @precondition(lambda self: self.reference is not None and self.reference.closed)
    @rule()
    def reopen(self) -> None:
        """After a failure reached the root: check the ended system, then open a new one."""
        event("the system failed and was reopened")
        self._finish()
        self._start(self.seed + 1)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def event_log_is_consistent(self) -> None:
        """The event log so far passes every checker, and the statuses agree with it."""
        if self.live is None or self.reference is None:
            return
        snapshot = self.reference.snapshot()
        statuses = {self._paths[name]: status for name, status in snapshot.statuses.items()}
        check_event_log(
            self.live.events,
            complete=self.reference.closed,
            limits=self._limits,
            statuses=statuses,
        )

    def teardown(self) -> None:
        """Close the system, check the complete log and the outcomes, then replay."""
        # Steer the search towards long restart sequences (hypothesis' targeted search).
        target(float(self._most_restarts), label="restarts of one agent")
        self._finish()

    def _finish(self) -> None:
        live, reference, tree = self.live, self.reference, self.agent_tree
        if live is None or reference is None or tree is None:
            return
        self.live = None
        event(f"commands per system: {_bucket(len(live.commands))}")
        event(f"agents spawned: {sum(1 for n in tree.names() if reference.spawned(n))}")
        trace: Trace = live.close()
        if self._failed:
            return  # a step already failed: that is the error to report
        reference.shutdown()
        final = trace.final
        problems = _differences(final, reference.snapshot(), timed=False)
        if problems:
            raise AssertionError(
                f"after closing the system (seed {self.seed}) the live system disagrees with "
                "the reference model:\n  " + "\n  ".join(problems)
            )
        waiting = sorted(id for id, outcome in final.outcomes.items() if outcome is None)
        if waiting:
            raise AssertionError(f"requests or closes {waiting} never got their outcome")
        statuses = {self._paths[name]: status for name, status in final.statuses.items()}
        check_event_log(trace.events, complete=True, limits=self._limits, statuses=statuses)
        if self.check_replay:
            again = replay(tree, live.commands, seed=self.seed, build_agent=self.build_agent)
            check_same_events(trace.events, again.events)
            if again.observations != trace.observations:
                raise AssertionError("the replay observed different states than the live run")
