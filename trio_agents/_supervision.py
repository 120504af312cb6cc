"""The supervision decision core: pure, synchronous, no I/O.

When a supervised agent fails, its supervisor's *policy* (:class:`SupervisorPolicy`) looks at
the agent's name and the error and asks for an action (:class:`SupervisorAction`). :func:`decide`
then applies the supervisor's restart limit (:class:`RestartLimit`), its restart strategy
(:class:`RestartStrategy`) and its backoff (:class:`Backoff`) and returns a :class:`Decision`:
what to do, to which siblings, after how long, and the failed child's new
:class:`RestartHistory`. The trio shell (the orchestrator) only carries decisions out; nothing in
this module awaits, sleeps, reads a clock or touches trio.

Rules
-----

1. **Outside cancellation is never a failure.** The shell filters it out: ``trio.Cancelled``
   and a stop ordered by the agent's owner are never passed to a policy or to :func:`decide`,
   so they are never counted and never restarted.
2. **STOP and ESCALATE pass through.** The decision has the requested action,
   ``affected == ()``, ``delay == 0``, ``limit_exceeded is False``, and the history is
   returned unchanged.
3. **RESTART, consecutive mode** (``RestartLimit(window=None)``, the default, as in the
   original orchestrator): the restart is allowed iff ``history.consecutive < max_restarts``.
   An allowed restart adds one to ``consecutive`` and to ``total``. A success
   (:meth:`RestartHistory.record_success`) resets ``consecutive`` to 0. So ``max_restarts=3``
   allows three restarts in a row, the fourth consecutive failure escalates, and
   ``max_restarts=0`` escalates at the first failure.
4. **RESTART, window mode** (``RestartLimit(window=T)``, Erlang/OTP intensity and period): first
   the restart times ``t`` with ``now - t >= T`` are dropped, so a restart exactly ``T``
   seconds ago no longer counts and one ``T - ε`` seconds ago still does (the window is the
   half-open interval ``(now - T, now]``). The restart is allowed iff fewer than
   ``max_restarts`` times remain; an allowed restart appends ``now`` to the remaining times and
   adds one to ``consecutive`` and ``total``. Successes do not reset the window. At most
   ``max_restarts`` restarts happen within any ``T`` seconds. ``T`` may be ``math.inf``: then
   ``max_restarts`` is a limit over the child's whole life.
5. **Past the limit the failure escalates.** A RESTART the limit refuses becomes
   ``action == ESCALATE`` with ``limit_exceeded is True``; ``affected == ()``, ``delay == 0``
   and the history is unchanged.
6. **Backoff.** An allowed restart waits ``backoff.delay(n, rng)``, where ``n`` is the new
   ``consecutive`` count (consecutive mode) or the number of restarts inside the window,
   this one included (window mode). ``n`` starts at 1.
7. **Strategy.** Only an allowed restart affects siblings. ``ONE_FOR_ONE`` restarts the failed
   child alone (``affected == ()``); ``ONE_FOR_ALL`` also restarts every other running
   sibling; ``REST_FOR_ONE`` also restarts the siblings started after the failed one.
   ``affected`` never contains the failed child and lists the siblings in **reverse start
   order**, the order in which the shell stops them; the shell then starts the failed child and
   the affected siblings again in start order. The affected siblings' histories are not
   charged: only the failed child's restart counts against its limit.
8. **Restart types** (:class:`RestartType`, Erlang/OTP's ``restart`` of a child spec). The
   failed child's type changes the request before rules 2-7 apply:

   * ``TRANSIENT`` (the default): the request is used as it is.
   * ``PERMANENT``: the child is always supervised, so a STOP request is carried out as a
     RESTART (``requested`` still says STOP): it counts, waits its backoff, brings the
     strategy's siblings back, and past the limit escalates like any refused restart. An
     ESCALATE request escalates.
   * ``TEMPORARY``: never restarted; its failure is reported and dropped. Whatever was
     requested, the action is STOP, nothing is counted (the history is returned unchanged),
     nothing escalates and no sibling is affected.

   Siblings named in ``temporary`` are never started again: when an allowed restart's strategy
   takes them down they are listed in :attr:`Decision.dropped` instead of
   :attr:`Decision.affected` (they end for good, as OTP terminates a temporary child that a
   sibling's restart took down). ``affected + dropped`` is every sibling the strategy stops.
9. **Errors.** :func:`decide` raises :class:`~trio_agents.InvalidArgumentError` when ``failed``
   is not among ``siblings`` (which must be the supervisor's running children, ``failed``
   included, in start order, with no duplicates), when ``requested`` is not a
   :class:`SupervisorAction`, ``strategy`` not a :class:`RestartStrategy` or
   ``restart_type`` not a :class:`RestartType` or ``temporary`` not a collection of names,
   and when ``now`` is not a finite number. These checks happen before anything else,
   whatever the action. Every other input gives a decision.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Collection, Sequence
from typing import Any, Protocol, TypeGuard, runtime_checkable

import attrs

from ._errors import InvalidArgumentError
from ._jitter import backoff_delay

# --------------------------------------------------------------------------- validation

# Argument checking (rule 9) is excluded from mutation testing (``nox -s mutate``): the
# supervision state machine only ever builds valid trees, so it cannot see a weaker check.
# tests/test_supervision.py pins every error message instead (docs/testing.rst).
# pragma: no mutate start


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _owner(instance: object, attribute: attrs.Attribute[Any]) -> str:
    return f"{type(instance).__name__}.{attribute.name}"


def _non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(
            f"{_owner(instance, attribute)} must be an int >= 0; got {value!r}"
        )


def _non_negative_finite(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(
            f"{_owner(instance, attribute)} must be a finite number >= 0; got {value!r}"
        )


def _factor(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not _is_number(value) or not math.isfinite(value) or value < 1:
        raise InvalidArgumentError(
            f"{_owner(instance, attribute)} must be a finite number >= 1 "
            f"(1 keeps the delay constant); got {value!r}"
        )


def _bool(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidArgumentError(
            f"{_owner(instance, attribute)} must be True or False; got {value!r}"
        )


def _window(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not _is_number(value) or math.isnan(value) or value <= 0:
        raise InvalidArgumentError(
            f"{_owner(instance, attribute)} must be None (count consecutive failures) or a "
            f"number of seconds > 0 (sliding window); got {value!r}"
        )


def _times(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not all(_is_number(t) for t in value):
        raise InvalidArgumentError(
            f"{_owner(instance, attribute)} must be a tuple of restart times (numbers), "
            f"oldest first; got {value!r}"
        )


# pragma: no mutate end
# --------------------------------------------------------------------------- actions and policies


class SupervisorAction(enum.Enum):
    """What a supervisor does about a failed child."""

    RESTART = "restart"
    """Rebuild the child from its factory (it keeps its address), within the restart limit."""
    STOP = "stop"
    """Stop the child (and its subtree) for good; its supervisor keeps running."""
    ESCALATE = "escalate"
    """Raise the failure into the supervisor, which fails in turn and is decided about by its own
    supervisor."""


class RestartStrategy(enum.Enum):
    """Which siblings restart together with a failed child (Erlang/OTP's restart strategies)."""

    ONE_FOR_ONE = "one_for_one"
    """Only the failed child restarts."""
    ONE_FOR_ALL = "one_for_all"
    """Every running child of the supervisor restarts."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and the children started after it restart."""


class RestartType(enum.Enum):
    """When a supervised agent is started again (Erlang/OTP's restart types).

    Set per registration (``AgentOrchestrator.add_agent(..., restart=...)``). In every type an
    agent closed on purpose (its handle's ``aclose``, or its parent ending) ends for good, as a
    child terminated by its supervisor does in OTP; the types differ in what a *failure* does.
    """

    PERMANENT = "permanent"
    """Always supervised: restarted after any failure the policy does not escalate (a STOP
    request restarts it too), within its restart limit."""
    TRANSIENT = "transient"
    """Restarted when the policy asks for it; stopped when it asks for that (the default)."""
    TEMPORARY = "temporary"
    """Never restarted: a failure ends it (reported, its requests answered) and is dropped:
    not counted, not escalated, no sibling affected. Taken down by a sibling's restart, it
    ends too instead of coming back."""


@runtime_checkable
class SupervisorPolicy(Protocol):
    """Chooses what to do about a failed agent.

    Called synchronously by the shell, never with outside cancellation. The answer is a request:
    :func:`decide` may turn a :attr:`~SupervisorAction.RESTART` into an
    :attr:`~SupervisorAction.ESCALATE` when the restart limit is reached.
    """

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        """Return the action for agent ``name`` that failed with ``error``."""
        ...


@attrs.frozen
class DefaultSupervisor:
    """The default policy: restart retryable errors, stop the rest.

    An error is retryable when it has a true ``retryable`` attribute, as every
    :class:`~trio_agents.AgentError` subclass declares (throttling, overload, network: yes;
    authentication, bad request, budget exhausted, misuse: no). Any other exception stops the
    agent.
    """

    max_restarts: int = attrs.field(default=3, validator=_non_negative_int)
    """Restart limit the orchestrator uses for the agents that do not set their own."""

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        """:attr:`~SupervisorAction.RESTART` if ``error`` is retryable, else
        :attr:`~SupervisorAction.STOP`."""
        if getattr(error, "retryable", False):
            return SupervisorAction.RESTART
        return SupervisorAction.STOP


# --------------------------------------------------------------------------- limits and backoff


@attrs.frozen(kw_only=True)
class Backoff:
    """Exponential backoff with full jitter between restarts.

    The delay before restart ``n`` (1-based) is drawn from ``[0, cap]`` with
    ``cap = min(max_delay, initial * factor ** (n - 1))``, or is ``cap`` itself without jitter.
    """

    initial: float = attrs.field(default=0.1, validator=_non_negative_finite)
    """Cap of the first restart's delay, in seconds."""
    factor: float = attrs.field(default=2.0, validator=_factor)
    """Growth of the cap per restart (>= 1)."""
    max_delay: float = attrs.field(default=30.0, validator=_non_negative_finite)
    """Upper bound of every delay, in seconds."""
    jitter: bool = attrs.field(default=True, validator=_bool)
    """Draw the delay uniformly from ``[0, cap]`` (full jitter) instead of waiting ``cap``."""

    @classmethod
    def none(cls) -> Backoff:
        """A backoff that never waits."""
        return cls(initial=0.0, jitter=False)

    def delay(self, restart: int, rng: random.Random) -> float:
        """Seconds to wait before restart number ``restart`` (1 = the first restart).

        Uses ``rng`` only when jittering a non-zero cap, so a seeded ``rng`` gives the same
        delays every time.
        """
        # pragma: no mutate start
        if isinstance(restart, bool) or not isinstance(restart, int) or restart < 1:
            raise InvalidArgumentError(
                f"restart must be an int >= 1 (1 = the first restart); got {restart!r}"
            )
        # pragma: no mutate end
        return backoff_delay(
            restart,
            initial=self.initial,
            factor=self.factor,
            max_delay=self.max_delay,
            jitter=self.jitter,
            rng=rng,
        )


@attrs.frozen(kw_only=True)
class RestartLimit:
    """How many restarts a child gets before its failure escalates."""

    max_restarts: int = attrs.field(default=3, validator=_non_negative_int)
    """Restarts allowed: in a row (``window=None``) or within any ``window`` seconds."""
    window: float | None = attrs.field(default=None, validator=_window)
    """``None``: count consecutive failures, a success resets the count. A number of seconds
    ``T``: at most ``max_restarts`` restarts within any ``T`` seconds (restarts exactly ``T``
    seconds old no longer count)."""


@attrs.frozen(kw_only=True)
class RestartHistory:
    """The restart record of one supervised child. Immutable: methods return a new one.

    ``RestartHistory()`` is the state of a child that never restarted.
    """

    consecutive: int = attrs.field(default=0, validator=_non_negative_int)
    """Restarts since the last success (the count consecutive mode limits)."""
    times: tuple[float, ...] = attrs.field(default=(), validator=_times)
    """Times of the restarts still inside the window, oldest first (window mode only)."""
    total: int = attrs.field(default=0, validator=_non_negative_int)
    """Restarts ever."""

    def record_success(self) -> RestartHistory:
        """The history after the child handled a request successfully: ``consecutive`` is 0."""
        if self.consecutive == 0:
            return self
        return RestartHistory(consecutive=0, times=self.times, total=self.total)


# --------------------------------------------------------------------------- decisions


@attrs.frozen(kw_only=True)
class Decision:
    """What the shell must do about one failure, as computed by :func:`decide`."""

    action: SupervisorAction
    """The action to carry out, after the restart limit was applied."""
    requested: SupervisorAction
    """The action the policy asked for."""
    failed: str
    """Name of the failed child."""
    affected: tuple[str, ...]
    """The other siblings to restart with it, in the order to stop them (reverse start order);
    empty unless :attr:`action` is :attr:`~SupervisorAction.RESTART`."""
    dropped: tuple[str, ...] = ()
    """The temporary siblings the strategy stops that are not started again (they end), in
    reverse start order; empty unless :attr:`action` is :attr:`~SupervisorAction.RESTART`."""
    delay: float
    """Seconds to wait before restarting (0 unless :attr:`action` is
    :attr:`~SupervisorAction.RESTART`)."""
    history: RestartHistory
    """The failed child's new history (changed only when :attr:`action` is
    :attr:`~SupervisorAction.RESTART`)."""
    limit_exceeded: bool
    """True when a restart was requested but the limit turned it into an escalation."""
    reason: str
    """One human sentence explaining the decision."""


def _check_siblings(failed: str, siblings: Sequence[str]) -> int:
    if isinstance(siblings, str):  # pragma: no mutate
        raise InvalidArgumentError(
            f"siblings must be a sequence of agent names, not a single string; got {siblings!r}"
        )
    try:
        index = siblings.index(failed)
    except ValueError:
        raise InvalidArgumentError(
            f"failed={failed!r} is not among siblings={list(siblings)!r}; pass the supervisor's "
            "running children, the failed one included, in start order"
        ) from None
    if len(set(siblings)) != len(siblings):  # pragma: no mutate
        raise InvalidArgumentError(
            f"siblings={list(siblings)!r} names a child more than once; names must be unique"
        )
    return index


def _check_names(value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Collection):  # pragma: no mutate
        raise InvalidArgumentError(
            f"temporary must be a collection of sibling names, not {value!r}"
        )
    return frozenset(value)


def _affected(strategy: RestartStrategy, siblings: Sequence[str], index: int) -> tuple[str, ...]:
    if strategy is RestartStrategy.ONE_FOR_ONE:
        return ()
    if strategy is RestartStrategy.ONE_FOR_ALL:
        return tuple(siblings[i] for i in range(len(siblings) - 1, -1, -1) if i != index)
    return tuple(siblings[i] for i in range(len(siblings) - 1, index, -1))


def _limit_text(limit: RestartLimit) -> str:
    if limit.window is None:
        return "(consecutive failures)"
    return f"within {float(limit.window)} s"


def decide(
    *,
    failed: str,
    requested: SupervisorAction,
    history: RestartHistory,
    limit: RestartLimit,
    backoff: Backoff,
    strategy: RestartStrategy,
    siblings: Sequence[str],
    now: float,
    rng: random.Random,
    restart_type: RestartType = RestartType.TRANSIENT,
    temporary: Collection[str] = (),
) -> Decision:
    """Decide what a supervisor does about the failure of its child ``failed``.

    :param failed: name of the child that failed.
    :param requested: what the supervisor's policy asked for.
    :param history: the failed child's restart history so far.
    :param limit: the failed child's restart limit.
    :param backoff: the backoff between restarts.
    :param strategy: which siblings restart with the failed child.
    :param siblings: the supervisor's running children, ``failed`` included, in start order.
    :param now: the current time in seconds (trio's clock).
    :param rng: source of the backoff jitter.
    :param restart_type: the failed child's :class:`RestartType` (rule 8).
    :param temporary: the siblings whose restart type is ``TEMPORARY`` (rule 8).
    :raises ~trio_agents.InvalidArgumentError: see rule 9 of the module documentation.

    The rules are in the module documentation (:mod:`trio_agents._supervision`).
    """
    # pragma: no mutate start
    if not isinstance(requested, SupervisorAction):
        raise InvalidArgumentError(
            f"requested must be a SupervisorAction (RESTART, STOP or ESCALATE); got {requested!r}"
        )
    if not isinstance(strategy, RestartStrategy):
        raise InvalidArgumentError(
            "strategy must be a RestartStrategy (ONE_FOR_ONE, ONE_FOR_ALL or REST_FOR_ONE); "
            f"got {strategy!r}"
        )
    if not _is_number(now) or not math.isfinite(now):
        raise InvalidArgumentError(f"now must be a finite number of seconds; got {now!r}")
    if not isinstance(restart_type, RestartType):
        raise InvalidArgumentError(
            "restart_type must be a RestartType (PERMANENT, TRANSIENT or TEMPORARY); "
            f"got {restart_type!r}"
        )
    # pragma: no mutate end
    temporaries = _check_names(temporary)
    index = _check_siblings(failed, siblings)

    if restart_type is RestartType.TEMPORARY:
        return Decision(
            action=SupervisorAction.STOP,
            requested=requested,
            failed=failed,
            affected=(),
            delay=0.0,
            history=history,
            limit_exceeded=False,
            reason=f"a temporary agent is never restarted: its failure is dropped "
            f"(the policy asked to {requested.value})",
        )
    wanted = requested
    if restart_type is RestartType.PERMANENT and requested is SupervisorAction.STOP:
        wanted = SupervisorAction.RESTART

    if wanted is not SupervisorAction.RESTART:
        verb = "stop the agent" if requested is SupervisorAction.STOP else "escalate the failure"
        return Decision(
            action=requested,
            requested=requested,
            failed=failed,
            affected=(),
            delay=0.0,
            history=history,
            limit_exceeded=False,
            reason=f"the policy chose to {verb}",
        )

    if limit.window is None:
        allowed = history.consecutive < limit.max_restarts
        restart = history.consecutive + 1
        times = history.times
    else:
        window = limit.window
        recent = tuple(t for t in history.times if now - t < window)
        allowed = len(recent) < limit.max_restarts
        restart = len(recent) + 1
        times = (*recent, now)

    if not allowed:
        return Decision(
            action=SupervisorAction.ESCALATE,
            requested=requested,
            failed=failed,
            affected=(),
            delay=0.0,
            history=history,
            limit_exceeded=True,
            reason=f"restart limit {limit.max_restarts} {_limit_text(limit)} exceeded: escalating",
        )

    stopped = _affected(strategy, siblings, index)
    permanent = " (a permanent agent restarts when stopped)" if wanted is not requested else ""
    return Decision(
        action=SupervisorAction.RESTART,
        requested=requested,
        failed=failed,
        affected=tuple(n for n in stopped if n not in temporaries),
        dropped=tuple(n for n in stopped if n in temporaries),
        delay=backoff.delay(restart, rng),
        history=RestartHistory(
            consecutive=history.consecutive + 1, times=times, total=history.total + 1
        ),
        limit_exceeded=False,
        reason=f"restart {restart} of {limit.max_restarts} {_limit_text(limit)}{permanent}",
    )
