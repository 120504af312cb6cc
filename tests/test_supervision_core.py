"""Tests of the pure supervision decision core (trio_agents._supervision)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import trio_agents
from trio_agents import (
    AuthenticationError,
    Backoff,
    Decision,
    DefaultSupervisor,
    InvalidArgumentError,
    ModelThrottled,
    RestartHistory,
    RestartLimit,
    RestartStrategy,
    RestartType,
    SupervisorAction,
    SupervisorPolicy,
    decide,
)

RESTART = SupervisorAction.RESTART
STOP = SupervisorAction.STOP
ESCALATE = SupervisorAction.ESCALATE

SIBLINGS = ("a", "b", "c", "d", "e")


def run(
    *,
    failed: str = "c",
    requested: Any = RESTART,
    history: RestartHistory | None = None,
    limit: RestartLimit | None = None,
    backoff: Backoff | None = None,
    strategy: Any = RestartStrategy.ONE_FOR_ONE,
    siblings: Sequence[str] = SIBLINGS,
    now: float = 0.0,
    rng: random.Random | None = None,
    restart_type: Any = RestartType.TRANSIENT,
    temporary: Any = (),
) -> Decision:
    return decide(
        restart_type=restart_type,
        temporary=temporary,
        failed=failed,
        requested=requested,
        history=RestartHistory() if history is None else history,
        limit=RestartLimit() if limit is None else limit,
        backoff=Backoff.none() if backoff is None else backoff,
        strategy=strategy,
        siblings=siblings,
        now=now,
        rng=random.Random(0) if rng is None else rng,
    )


# --------------------------------------------------------------------------- exports


def test_public_names_are_exported() -> None:
    for name in (
        "Backoff",
        "Decision",
        "DefaultSupervisor",
        "RestartHistory",
        "RestartLimit",
        "RestartStrategy",
        "RestartType",
        "SupervisorAction",
        "SupervisorPolicy",
        "decide",
    ):
        assert trio_agents.__all__.count(name) == 1
        assert getattr(trio_agents, name).__doc__


# --------------------------------------------------------------------------- DefaultSupervisor


def test_default_supervisor_restarts_retryable_and_stops_the_rest() -> None:
    policy = DefaultSupervisor()
    assert policy.max_restarts == 3
    assert isinstance(policy, SupervisorPolicy)
    assert ModelThrottled.retryable
    assert not AuthenticationError.retryable
    assert policy.on_agent_error("w", ModelThrottled("slow down")) is RESTART
    assert policy.on_agent_error("w", AuthenticationError("bad key")) is STOP
    assert policy.on_agent_error("w", ValueError("boom")) is STOP
    assert policy.on_agent_error("w", KeyboardInterrupt()) is STOP


def test_default_supervisor_max_restarts() -> None:
    assert DefaultSupervisor(5).max_restarts == 5
    assert DefaultSupervisor(max_restarts=0).max_restarts == 0
    for bad in (-1, True, 1.5, "3"):
        with pytest.raises(InvalidArgumentError, match=r"DefaultSupervisor\.max_restarts"):
            DefaultSupervisor(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Backoff


def test_backoff_without_jitter_is_exact() -> None:
    backoff = Backoff(initial=0.5, factor=2.0, max_delay=5.0, jitter=False)
    rng = random.Random(0)
    delays = [backoff.delay(n, rng) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert Backoff(initial=1.5, factor=1.0, jitter=False).delay(10, rng) == 1.5
    defaults = Backoff(jitter=False)
    assert defaults.delay(1, rng) == 0.1
    assert defaults.delay(2, rng) == 0.2
    assert defaults.delay(100, rng) == 30.0


def test_backoff_huge_restart_numbers_are_capped_not_overflowing() -> None:
    rng = random.Random(0)
    assert Backoff(jitter=False).delay(10**6, rng) == 30.0
    assert Backoff(factor=10.0, jitter=False).delay(10**20, rng) == 30.0
    assert 0.0 <= Backoff().delay(10**6, rng) <= 30.0


def test_backoff_initial_above_max_delay_is_capped() -> None:
    assert Backoff(initial=10.0, max_delay=2.0, jitter=False).delay(1, random.Random()) == 2.0


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_backoff_full_jitter_is_within_cap_and_seeded(seed: int) -> None:
    backoff = Backoff(initial=0.5, factor=2.0, max_delay=5.0)
    rng = random.Random(seed)
    expected_rng = random.Random(seed)
    for n in range(1, 12):
        cap = min(5.0, 0.5 * 2.0 ** (n - 1))
        d = backoff.delay(n, rng)
        assert 0.0 <= d <= cap
        assert d == expected_rng.uniform(0.0, cap)
    one, two = random.Random(seed), random.Random(seed)
    assert [backoff.delay(n, one) for n in range(1, 12)] == [
        backoff.delay(n, two) for n in range(1, 12)
    ]


def test_backoff_none_never_waits_and_leaves_rng_alone() -> None:
    rng = random.Random(7)
    state = rng.getstate()
    none = Backoff.none()
    assert [none.delay(n, rng) for n in (1, 2, 50)] == [0.0, 0.0, 0.0]
    assert rng.getstate() == state
    # A zero cap with jitter on does not consume randomness either.
    assert Backoff(initial=0.0).delay(3, rng) == 0.0
    assert Backoff(max_delay=0.0).delay(3, rng) == 0.0
    assert rng.getstate() == state


@pytest.mark.parametrize("restart", [0, -1, True, 1.0, "1"])
def test_backoff_rejects_bad_restart_numbers(restart: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="restart must be an int >= 1"):
        Backoff().delay(restart, random.Random())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("initial", -0.1),
        ("initial", math.nan),
        ("initial", math.inf),
        ("initial", "1"),
        ("factor", 0.5),
        ("factor", 0),
        ("factor", math.inf),
        ("factor", math.nan),
        ("max_delay", -1.0),
        ("max_delay", math.inf),
        ("max_delay", True),
        ("jitter", 1),
        ("jitter", None),
    ],
)
def test_backoff_validation(field: str, value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"Backoff\.{field} must be"):
        Backoff(**{field: value})


def test_backoff_accepts_boundaries() -> None:
    Backoff(initial=0, factor=1, max_delay=0, jitter=False)
    Backoff(initial=0.0, factor=1.0, max_delay=0.0)


# --------------------------------------------------------------------------- limits, histories


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_restarts": -1}, "max_restarts"),
        ({"max_restarts": 2.0}, "max_restarts"),
        ({"max_restarts": False}, "max_restarts"),
        ({"window": 0}, "window"),
        ({"window": -1.0}, "window"),
        ({"window": math.nan}, "window"),
        ({"window": "10"}, "window"),
    ],
)
def test_restart_limit_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"RestartLimit\.{field} must be"):
        RestartLimit(**kwargs)


def test_restart_limit_accepts_boundaries() -> None:
    assert RestartLimit() == RestartLimit(max_restarts=3, window=None)
    RestartLimit(max_restarts=0, window=1e-9)
    RestartLimit(window=math.inf)
    RestartLimit(window=10)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"consecutive": -1}, "consecutive"),
        ({"total": -1}, "total"),
        ({"total": 1.0}, "total"),
        ({"times": [1.0]}, "times"),
        ({"times": ("1",)}, "times"),
    ],
)
def test_restart_history_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"RestartHistory\.{field} must be"):
        RestartHistory(**kwargs)


def test_record_success_resets_only_the_consecutive_count() -> None:
    history = RestartHistory(consecutive=2, times=(1.0, 2.0), total=5)
    assert history.record_success() == RestartHistory(consecutive=0, times=(1.0, 2.0), total=5)
    assert history == RestartHistory(consecutive=2, times=(1.0, 2.0), total=5)
    fresh = RestartHistory()
    assert fresh.record_success() == fresh


# --------------------------------------------------------------------------- pass-through


@pytest.mark.parametrize("action", [STOP, ESCALATE])
@pytest.mark.parametrize("strategy", list(RestartStrategy))
def test_stop_and_escalate_pass_through(
    action: SupervisorAction, strategy: RestartStrategy
) -> None:
    history = RestartHistory(consecutive=1, times=(0.5,), total=4)
    decision = run(
        requested=action,
        history=history,
        strategy=strategy,
        backoff=Backoff(jitter=False),
        now=1.0,
    )
    assert decision == Decision(
        action=action,
        requested=action,
        failed="c",
        affected=(),
        delay=0.0,
        history=history,
        limit_exceeded=False,
        reason=decision.reason,
    )
    assert decision.history is history
    word = "stop" if action is STOP else "escalate"
    assert word in decision.reason


# --------------------------------------------------------------------------- consecutive mode


def test_consecutive_three_restarts_then_the_fourth_escalates() -> None:
    limit = RestartLimit(max_restarts=3)
    history = RestartHistory()
    for n in (1, 2, 3):
        decision = run(history=history, limit=limit)
        assert decision.action is RESTART
        assert not decision.limit_exceeded
        assert decision.history == RestartHistory(consecutive=n, total=n)
        assert decision.reason == f"restart {n} of 3 (consecutive failures)"
        history = decision.history
    fourth = run(history=history, limit=limit)
    assert fourth.action is ESCALATE
    assert fourth.requested is RESTART
    assert fourth.limit_exceeded
    assert fourth.history is history
    assert fourth.affected == ()
    assert fourth.delay == 0.0
    assert fourth.reason == "restart limit 3 (consecutive failures) exceeded: escalating"


def test_consecutive_success_resets_the_count() -> None:
    limit = RestartLimit(max_restarts=3)
    history = RestartHistory()
    for _ in range(3):
        history = run(history=history, limit=limit).history
    history = history.record_success()
    for n in (1, 2, 3):
        decision = run(history=history, limit=limit)
        assert decision.action is RESTART
        assert decision.history.consecutive == n
        assert decision.history.total == 3 + n
        history = decision.history
    assert run(history=history, limit=limit).limit_exceeded


def test_consecutive_zero_restarts_escalates_at_once() -> None:
    decision = run(limit=RestartLimit(max_restarts=0))
    assert decision.action is ESCALATE
    assert decision.limit_exceeded
    assert decision.history == RestartHistory()


def test_consecutive_mode_ignores_times() -> None:
    history = RestartHistory(consecutive=0, times=(0.0, 0.0, 0.0, 0.0), total=4)
    decision = run(history=history, limit=RestartLimit(max_restarts=1), now=0.0)
    assert decision.action is RESTART
    assert decision.history.times == history.times


def test_consecutive_over_the_limit_escalates() -> None:
    # A history above the limit (the limit was lowered) is legal and escalates.
    decision = run(history=RestartHistory(consecutive=9, total=9), limit=RestartLimit())
    assert decision.action is ESCALATE
    assert decision.limit_exceeded


# --------------------------------------------------------------------------- window mode


def test_window_three_restarts_then_the_fourth_escalates() -> None:
    limit = RestartLimit(max_restarts=3, window=10.0)
    history = RestartHistory()
    for n, now in enumerate((0.0, 1.0, 2.0), start=1):
        decision = run(history=history, limit=limit, now=now)
        assert decision.action is RESTART
        assert decision.reason == f"restart {n} of 3 within 10.0 s"
        history = decision.history
    assert history == RestartHistory(consecutive=3, times=(0.0, 1.0, 2.0), total=3)
    fourth = run(history=history, limit=limit, now=3.0)
    assert fourth.action is ESCALATE
    assert fourth.limit_exceeded
    assert fourth.history is history
    assert fourth.reason == "restart limit 3 within 10.0 s exceeded: escalating"


def test_window_boundary_exactly_t_no_longer_counts() -> None:
    limit = RestartLimit(max_restarts=3, window=10.0)
    history = RestartHistory(consecutive=3, times=(0.0, 1.0, 2.0), total=3)
    at_t = run(history=history, limit=limit, now=10.0)
    assert at_t.action is RESTART
    assert at_t.history == RestartHistory(consecutive=4, times=(1.0, 2.0, 10.0), total=4)
    assert at_t.reason == "restart 3 of 3 within 10.0 s"


def test_window_boundary_t_minus_epsilon_still_counts() -> None:
    limit = RestartLimit(max_restarts=3, window=10.0)
    history = RestartHistory(consecutive=3, times=(0.0, 1.0, 2.0), total=3)
    for now in (math.nextafter(10.0, 0.0), 9.999, 5.0):
        decision = run(history=history, limit=limit, now=now)
        assert decision.action is ESCALATE, now
        assert decision.limit_exceeded


def test_window_success_does_not_reset_the_window() -> None:
    limit = RestartLimit(max_restarts=2, window=10.0)
    history = RestartHistory(consecutive=2, times=(0.0, 1.0), total=2).record_success()
    decision = run(history=history, limit=limit, now=2.0)
    assert decision.action is ESCALATE


def test_window_drops_every_expired_time() -> None:
    limit = RestartLimit(max_restarts=2, window=5.0)
    history = RestartHistory(consecutive=0, times=(0.0, 1.0, 2.0, 3.0), total=4)
    decision = run(history=history, limit=limit, now=7.5)
    assert decision.action is RESTART
    assert decision.history.times == (3.0, 7.5)
    assert decision.reason == "restart 2 of 2 within 5.0 s"


def test_window_zero_restarts_escalates_at_once() -> None:
    decision = run(limit=RestartLimit(max_restarts=0, window=1.0), now=100.0)
    assert decision.action is ESCALATE
    assert decision.limit_exceeded


def test_infinite_window_is_a_lifetime_limit() -> None:
    limit = RestartLimit(max_restarts=2, window=math.inf)
    history = RestartHistory(times=(0.0, 1.0), total=2)
    assert run(history=history, limit=limit, now=1e12).action is ESCALATE


# --------------------------------------------------------------------------- backoff in decisions


def test_delay_uses_the_consecutive_restart_number() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, max_delay=100.0, jitter=False)
    limit = RestartLimit(max_restarts=5)
    history = RestartHistory()
    delays = []
    for _ in range(5):
        decision = run(history=history, limit=limit, backoff=backoff)
        delays.append(decision.delay)
        history = decision.history
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert run(history=history.record_success(), limit=limit, backoff=backoff).delay == 1.0


def test_delay_uses_the_restarts_inside_the_window() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, max_delay=100.0, jitter=False)
    limit = RestartLimit(max_restarts=5, window=10.0)
    history = RestartHistory(consecutive=4, times=(0.0, 1.0, 2.0, 3.0), total=4)
    assert run(history=history, limit=limit, backoff=backoff, now=4.0).delay == 16.0
    assert run(history=history, limit=limit, backoff=backoff, now=12.0).delay == 2.0
    assert run(history=history, limit=limit, backoff=backoff, now=50.0).delay == 1.0


def test_jittered_delay_in_a_decision_is_seeded() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, max_delay=3.0)
    history = RestartHistory(consecutive=2, total=2)
    decision = run(history=history, backoff=backoff, rng=random.Random(3))
    assert decision.delay == random.Random(3).uniform(0.0, 3.0)
    assert decision == run(history=history, backoff=backoff, rng=random.Random(3))


# --------------------------------------------------------------------------- strategies


@pytest.mark.parametrize(
    ("strategy", "failed", "expected"),
    [
        (RestartStrategy.ONE_FOR_ONE, "a", ()),
        (RestartStrategy.ONE_FOR_ONE, "c", ()),
        (RestartStrategy.ONE_FOR_ONE, "e", ()),
        (RestartStrategy.ONE_FOR_ALL, "a", ("e", "d", "c", "b")),
        (RestartStrategy.ONE_FOR_ALL, "c", ("e", "d", "b", "a")),
        (RestartStrategy.ONE_FOR_ALL, "e", ("d", "c", "b", "a")),
        (RestartStrategy.REST_FOR_ONE, "a", ("e", "d", "c", "b")),
        (RestartStrategy.REST_FOR_ONE, "c", ("e", "d")),
        (RestartStrategy.REST_FOR_ONE, "e", ()),
    ],
)
def test_strategy_selects_siblings_in_stop_order(
    strategy: RestartStrategy, failed: str, expected: tuple[str, ...]
) -> None:
    decision = run(failed=failed, strategy=strategy)
    assert decision.action is RESTART
    assert decision.failed == failed
    assert decision.affected == expected


@pytest.mark.parametrize("strategy", list(RestartStrategy))
def test_strategy_with_a_lone_child(strategy: RestartStrategy) -> None:
    assert run(failed="x", siblings=["x"], strategy=strategy).affected == ()


@pytest.mark.parametrize("strategy", list(RestartStrategy))
def test_no_siblings_are_affected_when_the_limit_escalates(strategy: RestartStrategy) -> None:
    decision = run(strategy=strategy, limit=RestartLimit(max_restarts=0))
    assert decision.action is ESCALATE
    assert decision.affected == ()


def test_siblings_may_be_any_sequence() -> None:
    decision = run(siblings=list(SIBLINGS), strategy=RestartStrategy.REST_FOR_ONE)
    assert decision.affected == ("e", "d")


# --------------------------------------------------------------------------- decide errors


@pytest.mark.parametrize("requested", [STOP, ESCALATE, RESTART])
def test_failed_must_be_among_siblings(requested: SupervisorAction) -> None:
    with pytest.raises(InvalidArgumentError, match=r"failed='z' is not among siblings"):
        run(failed="z", requested=requested)
    with pytest.raises(InvalidArgumentError, match="is not among siblings"):
        run(failed="a", siblings=[], requested=requested)


def test_siblings_must_not_be_a_string() -> None:
    with pytest.raises(InvalidArgumentError, match="not a single string"):
        run(failed="a", siblings="abc")


def test_siblings_must_be_unique() -> None:
    with pytest.raises(InvalidArgumentError, match="more than once"):
        run(failed="a", siblings=["a", "b", "b"])


@pytest.mark.parametrize("requested", ["restart", None, 1, RestartStrategy.ONE_FOR_ONE])
def test_requested_must_be_an_action(requested: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="requested must be a SupervisorAction"):
        run(requested=requested)


@pytest.mark.parametrize("strategy", ["one_for_one", None, RESTART])
def test_strategy_must_be_a_strategy(strategy: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="strategy must be a RestartStrategy"):
        run(strategy=strategy)


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf, "1", True])
def test_now_must_be_finite(now: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="now must be a finite number"):
        run(now=now)


# --------------------------------------------------------------------------- totality


# --------------------------------------------------------------------------- restart types


@pytest.mark.parametrize("requested", list(SupervisorAction))
@pytest.mark.parametrize("strategy", list(RestartStrategy))
def test_temporary_failure_is_dropped(
    requested: SupervisorAction, strategy: RestartStrategy
) -> None:
    history = RestartHistory(consecutive=3, times=(0.5,), total=7)  # at the limit, too
    decision = run(
        requested=requested,
        history=history,
        strategy=strategy,
        restart_type=RestartType.TEMPORARY,
        now=1.0,
    )
    assert decision.action is STOP  # never restarted, never escalated
    assert decision.requested is requested
    assert decision.history is history  # not counted
    assert (decision.affected, decision.dropped, decision.delay) == ((), (), 0.0)
    assert not decision.limit_exceeded
    assert "temporary" in decision.reason


def test_permanent_restarts_what_the_policy_would_stop_and_counts_it() -> None:
    limit = RestartLimit(max_restarts=2)
    history = RestartHistory()
    for n in (1, 2):
        decision = run(
            requested=STOP, history=history, limit=limit, restart_type=RestartType.PERMANENT
        )
        assert (decision.action, decision.requested) == (RESTART, STOP)
        assert decision.history.consecutive == n
        assert "permanent" in decision.reason
        history = decision.history
    refused = run(requested=STOP, history=history, limit=limit, restart_type=RestartType.PERMANENT)
    assert refused.action is ESCALATE
    assert refused.limit_exceeded
    escalated = run(requested=ESCALATE, restart_type=RestartType.PERMANENT)
    assert escalated.action is ESCALATE  # an explicit escalation is not overridden
    assert not escalated.limit_exceeded


def test_transient_is_the_default_and_follows_the_policy() -> None:
    assert run(requested=STOP).action is STOP
    assert run(requested=STOP, restart_type=RestartType.TRANSIENT).action is STOP
    assert run(requested=RESTART, restart_type=RestartType.TRANSIENT).action is RESTART


@pytest.mark.parametrize(
    ("strategy", "affected", "dropped"),
    [
        (RestartStrategy.ONE_FOR_ONE, (), ()),
        (RestartStrategy.ONE_FOR_ALL, ("e", "b", "a"), ("d",)),
        (RestartStrategy.REST_FOR_ONE, ("e",), ("d",)),
    ],
)
def test_temporary_siblings_are_dropped_not_restarted(
    strategy: RestartStrategy, affected: tuple[str, ...], dropped: tuple[str, ...]
) -> None:
    decision = run(failed="c", strategy=strategy, temporary={"d"})
    assert (decision.affected, decision.dropped) == (affected, dropped)


@pytest.mark.parametrize("restart_type", ["permanent", None, RestartStrategy.ONE_FOR_ALL])
def test_restart_type_must_be_a_restart_type(restart_type: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="PERMANENT, TRANSIENT or TEMPORARY"):
        run(restart_type=restart_type)


@pytest.mark.parametrize("temporary", ["abc", 3, None])
def test_temporary_must_be_a_collection_of_names(temporary: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="temporary must be a collection"):
        run(temporary=temporary)


T = 5.0
REQUESTED: list[Any] = [*SupervisorAction, "restart", None]
STRATEGIES: list[Any] = [*RestartStrategy, "one_for_all"]
LIMITS = [RestartLimit(max_restarts=m, window=w) for m in (0, 1, 3) for w in (None, T)]
FAILED = ["a", "c", "e", "zz"]
NOW = 100.0
BACKOFFS = [Backoff(), Backoff(initial=1.0, factor=3.0, max_delay=4.0, jitter=False)]


def histories(limit: RestartLimit) -> list[RestartHistory]:
    """Histories just below, at and above the limit, in both counting modes."""
    m = limit.max_restarts
    counts = sorted({max(0, m - 1), m, m + 1})
    out = [RestartHistory()]
    for k in counts:
        out.append(RestartHistory(consecutive=k, total=k + 2))
        recent = tuple(NOW - 1.0 - i * 0.5 for i in reversed(range(k)))
        out.append(RestartHistory(consecutive=k, times=recent, total=k))
        # oldest exactly T old (expired) and just inside the window
        out.append(RestartHistory(consecutive=0, times=(NOW - T, *recent), total=k + 1))
        inside = math.nextafter(NOW - T, NOW)
        out.append(RestartHistory(consecutive=k, times=(inside, *recent), total=k + 1))
        out.append(RestartHistory(consecutive=0, times=(NOW - 3 * T,) * k, total=k + 9))
    return out


def expected_affected(
    strategy: RestartStrategy, failed: str, siblings: tuple[str, ...]
) -> tuple[str, ...]:
    i = siblings.index(failed)
    if strategy is RestartStrategy.ONE_FOR_ONE:
        return ()
    if strategy is RestartStrategy.ONE_FOR_ALL:
        return tuple(reversed(siblings[:i] + siblings[i + 1 :]))
    return tuple(reversed(siblings[i + 1 :]))


def check_legal(
    decision: Decision,
    *,
    failed: str,
    requested: SupervisorAction,
    strategy: RestartStrategy,
    history: RestartHistory,
    limit: RestartLimit,
    backoff: Backoff,
    now: float,
    siblings: tuple[str, ...] = SIBLINGS,
    restart_type: RestartType = RestartType.TRANSIENT,
    temporary: frozenset[str] = frozenset(),
) -> None:
    assert isinstance(decision, Decision)
    assert decision.failed == failed
    assert decision.requested is requested
    assert isinstance(decision.reason, str)
    assert decision.reason
    assert "\n" not in decision.reason
    assert decision.history.total >= history.total
    assert 0.0 <= decision.delay <= backoff.max_delay
    # Rule 8: the restart type turns the request into the action wanted.
    if restart_type is RestartType.TEMPORARY:
        wanted = STOP
    elif restart_type is RestartType.PERMANENT and requested is STOP:
        wanted = RESTART
    else:
        wanted = requested
    if decision.limit_exceeded:
        assert wanted is RESTART
        assert decision.action is ESCALATE
        assert "exceeded" in decision.reason
    else:
        assert decision.action is wanted
    if decision.action is not RESTART:
        assert decision.affected == ()
        assert decision.dropped == ()
        assert decision.delay == 0.0
        assert decision.history is history
        return
    every = expected_affected(strategy, failed, siblings)
    assert decision.affected == tuple(n for n in every if n not in temporary)
    assert decision.dropped == tuple(n for n in every if n in temporary)
    assert failed not in decision.affected
    new = decision.history
    assert new.total == history.total + 1
    assert new.consecutive == history.consecutive + 1
    if limit.window is None:
        assert history.consecutive < limit.max_restarts
        assert new.times == history.times
    else:
        assert new.times[-1] == now
        assert len(new.times) <= limit.max_restarts
        assert all(now - t < limit.window for t in new.times)


def _limit_should_refuse(history: RestartHistory, limit: RestartLimit, now: float) -> bool:
    if limit.window is None:
        return history.consecutive >= limit.max_restarts
    recent = [t for t in history.times if now - t < limit.window]
    return len(recent) >= limit.max_restarts


RESTART_TYPES: list[Any] = [*RestartType, "permanent"]
TEMPORARY_SETS = [frozenset(), frozenset({"a", "d"})]


@pytest.mark.parametrize(
    ("requested", "strategy", "limit", "restart_type"),
    list(itertools.product(REQUESTED, STRATEGIES, LIMITS, RESTART_TYPES)),
)
def test_totality(requested: Any, strategy: Any, limit: RestartLimit, restart_type: Any) -> None:
    """Every input either gives a legal decision or raises the documented error."""
    cases = 0
    for history, failed, backoff, seed, temporary in itertools.product(
        histories(limit), FAILED, BACKOFFS, (0, 1), TEMPORARY_SETS
    ):
        cases += 1
        invalid = (
            not isinstance(requested, SupervisorAction)
            or not isinstance(strategy, RestartStrategy)
            or not isinstance(restart_type, RestartType)
            or failed not in SIBLINGS
        )
        try:
            decision = decide(
                failed=failed,
                requested=requested,
                history=history,
                limit=limit,
                backoff=backoff,
                strategy=strategy,
                siblings=SIBLINGS,
                now=NOW,
                rng=random.Random(seed),
                restart_type=restart_type,
                temporary=temporary,
            )
        except InvalidArgumentError:
            assert invalid
            continue
        assert not invalid
        check_legal(
            decision,
            failed=failed,
            requested=requested,
            strategy=strategy,
            history=history,
            limit=limit,
            backoff=backoff,
            now=NOW,
            restart_type=restart_type,
            temporary=temporary,
        )
        restarts = requested is RESTART or (
            requested is STOP and restart_type is RestartType.PERMANENT
        )
        if restarts and restart_type is not RestartType.TEMPORARY:
            assert decision.limit_exceeded == _limit_should_refuse(history, limit, NOW)
    assert cases > 0


# --------------------------------------------------------------------------- properties

Event = tuple[float, bool, SupervisorAction]  # (time advance, failed?, requested on failure)

advances = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0, 10.0]),
    st.floats(min_value=0.0, max_value=20.0, allow_nan=False, allow_infinity=False),
)
events = st.lists(
    st.tuples(
        advances,
        st.booleans(),
        st.sampled_from([RESTART, RESTART, RESTART, STOP, ESCALATE]),
    ),
    max_size=60,
)
limits = st.builds(
    RestartLimit,
    max_restarts=st.integers(min_value=0, max_value=4),
    window=st.one_of(st.none(), st.sampled_from([1.0, 2.5, 5.0, 10.0])),
)
backoffs = st.builds(
    Backoff,
    initial=st.sampled_from([0.0, 0.1, 1.0]),
    factor=st.sampled_from([1.0, 2.0, 3.0]),
    max_delay=st.sampled_from([0.0, 0.5, 30.0]),
    jitter=st.booleans(),
)


def simulate(
    script: list[Event],
    limit: RestartLimit,
    backoff: Backoff,
    seed: int,
    strategy: RestartStrategy = RestartStrategy.ONE_FOR_ONE,
) -> list[tuple[float, bool, Decision | None]]:
    """Feed a script of failures and successes of child "b" through decide."""
    rng = random.Random(seed)
    siblings = ("a", "b", "c")
    history = RestartHistory()
    now = 0.0
    trace: list[tuple[float, bool, Decision | None]] = []
    for advance, is_failure, requested in script:
        now += advance
        if not is_failure:
            history = history.record_success()
            trace.append((now, False, None))
            continue
        before = history
        decision = decide(
            failed="b",
            requested=requested,
            history=history,
            limit=limit,
            backoff=backoff,
            strategy=strategy,
            siblings=siblings,
            now=now,
            rng=rng,
        )
        check_legal(
            decision,
            failed="b",
            requested=requested,
            strategy=strategy,
            history=before,
            limit=limit,
            backoff=backoff,
            now=now,
            siblings=siblings,
        )
        history = decision.history
        trace.append((now, True, decision))
    return trace


@given(script=events, limit=limits, backoff=backoffs, seed=st.integers(0, 2**32 - 1))
def test_restart_limit_is_never_exceeded(
    script: list[Event], limit: RestartLimit, backoff: Backoff, seed: int
) -> None:
    trace = simulate(script, limit, backoff, seed)
    restarts = [now for now, _, d in trace if d is not None and d.action is RESTART]
    last = next((d.history for _, _, d in reversed(trace) if d is not None), RestartHistory())
    assert last.total == len(restarts)

    if limit.window is not None:
        window = limit.window
        # Safety: within any window (t - T, t], at most max_restarts restarts.
        for i, t in enumerate(restarts):
            assert sum(1 for s in restarts[: i + 1] if t - s < window) <= limit.max_restarts
        # Liveness: a requested restart is refused only when the window is full.
        so_far: list[float] = []
        for now, _, d in trace:
            if d is None:
                continue
            if d.requested is RESTART:
                inside = [s for s in so_far if now - s < window]
                assert d.limit_exceeded == (len(inside) >= limit.max_restarts)
            if d.action is RESTART:
                so_far.append(now)
    else:
        # Safety and liveness: between successes, exactly min(requests, max) restarts.
        in_a_row = 0
        for _, is_failure, d in trace:
            if not is_failure:
                in_a_row = 0
                continue
            assert d is not None
            if d.requested is RESTART:
                assert d.limit_exceeded == (in_a_row >= limit.max_restarts)
            if d.action is RESTART:
                in_a_row += 1
            assert in_a_row <= limit.max_restarts


@given(
    script=events,
    limit=limits,
    backoff=backoffs,
    strategy=st.sampled_from(list(RestartStrategy)),
    seed=st.integers(0, 2**32 - 1),
)
def test_decisions_are_deterministic(
    script: list[Event],
    limit: RestartLimit,
    backoff: Backoff,
    strategy: RestartStrategy,
    seed: int,
) -> None:
    first = simulate(script, limit, backoff, seed, strategy)
    second = simulate(script, limit, backoff, seed, strategy)
    assert first == second


@pytest.mark.parametrize(
    ("options", "action"),
    [
        ({"restart_type": RestartType.TEMPORARY}, "stop"),
        ({"requested": SupervisorAction.STOP}, "stop"),
        ({"requested": SupervisorAction.ESCALATE}, "escalate"),
        ({"limit": RestartLimit(max_restarts=0)}, "escalate"),
        ({}, "restart"),
    ],
)
def test_every_branch_names_the_failed_child_and_keeps_its_history(
    options: dict[str, Any], action: str
) -> None:
    # (The orchestrator reads neither Decision.failed nor RestartHistory.total, so the state
    # machine cannot check them: docs/testing.rst, "Mutation testing".)
    history = RestartHistory(consecutive=0, times=(), total=7)
    decision = run(failed="d", history=history, **options)
    assert decision.action.value == action
    assert decision.failed == "d"
    if action == "restart":
        assert decision.history == RestartHistory(consecutive=1, total=8)
    else:
        assert decision.history is history
