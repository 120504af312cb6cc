"""The invariant checkers over event logs, the replay driver, and the strategies that feed them."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_agents import (
    AgentEnded,
    AgentFailed,
    AgentRestarted,
    AgentSpawned,
    AgentStatus,
    AgentSuspended,
    Budget,
    ErrorInfo,
    Event,
    ModelRunner,
    RequestReceived,
    RequestReplied,
    RestartLimit,
    RetryPolicy,
    RunFinished,
    RunStarted,
    SupervisorDecided,
    Usage,
)
from trio_agents import AgentResult as Result
from trio_agents.testing import (
    AgentTree,
    Command,
    DelegationPlan,
    InvariantViolation,
    Op,
    TreeNode,
    Work,
    check_cancellation_not_failure,
    check_cancelled_subtrees,
    check_deterministic,
    check_event_log,
    check_lifecycle,
    check_no_serving_after_end,
    check_one_reply,
    check_restart_limits,
    check_same_events,
    check_statuses,
    check_usage,
    looks_complete,
    replay,
    restart_limits,
)
from trio_agents.testing.strategies import agent_trees, commands, delegation_plans

ERR = ErrorInfo(type="ModelOverloaded", message="busy", retryable=True)


def spawned(agent: str, t: float = 0.0, incarnation: int = 1) -> AgentSpawned:
    return AgentSpawned(time=t, agent=agent, incarnation=incarnation)


def ended(agent: str, status: str = "cancelled", t: float = 0.0) -> AgentEnded:
    return AgentEnded(time=t, agent=agent, status=status)


def received(agent: str, n: int) -> RequestReceived:
    return RequestReceived(time=0.0, agent=agent, request=n)


def replied(agent: str, n: int, error: ErrorInfo | None = None) -> RequestReplied:
    return RequestReplied(time=0.0, agent=agent, request=n, error=error)


def decided(agent: str, action: str, t: float = 0.0, **kw: object) -> SupervisorDecided:
    fields: dict[str, object] = {
        "requested": "restart",
        "reason": "",
        "delay": 0.0,
        "affected": (),
        "limit_exceeded": False,
    }
    fields.update(kw)
    return SupervisorDecided(time=t, agent=agent, action=action, **fields)  # type: ignore[arg-type]


def failed(agent: str, t: float = 0.0, error: ErrorInfo = ERR) -> AgentFailed:
    return AgentFailed(time=t, agent=agent, error=error)


def violation(check, *args, **kwargs) -> InvariantViolation:  # type: ignore[no-untyped-def]
    with pytest.raises(InvariantViolation) as info:
        check(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- each checker


def test_one_reply_per_request() -> None:
    good = [spawned("a"), received("a", 1), replied("a", 1), replied("a", 2)]
    check_one_reply(good, complete=True)  # a queued request replied without being received
    twice = violation(check_one_reply, [*good, replied("a", 1)])
    assert twice.agent == "a"
    assert twice.index == 4
    assert "replied to request 1 twice (first at #2)" in str(twice)
    lost = violation(check_one_reply, [spawned("a"), received("a", 1)], complete=True)
    assert "never replied" in str(lost)
    assert lost.index == 1
    check_one_reply([spawned("a"), received("a", 1)])  # fine while the system runs


def test_lifecycle_an_agent_may_not_end_with_a_received_request_unreplied() -> None:
    log: list[Event] = [spawned("a"), received("a", 1), ended("a", "completed")]
    found = violation(check_lifecycle, log)  # no complete=True needed: the agent ended
    assert (found.agent, found.index) == ("a", 2)
    assert "ended with request 1 (received at #1) never replied" in str(found)
    with pytest.raises(InvariantViolation, match="never replied"):
        check_event_log(log)
    check_lifecycle([spawned("a"), received("a", 1), replied("a", 1), ended("a")])
    check_lifecycle([spawned("a"), replied("a", 1), ended("a")])  # queued, answered at the end
    check_lifecycle([spawned("a"), received("a", 1)])  # still serving: fine


def test_lifecycle_no_second_spawn_while_up() -> None:
    found = violation(check_lifecycle, [spawned("a"), spawned("a", 1.0, 2)])
    assert (found.agent, found.index) == ("a", 1)
    assert "spawned again while its incarnation spawned at #0 is up" in str(found)
    for down in (
        failed("a"),
        ended("a"),
        AgentSuspended(time=0.0, agent="a", reason="sibling"),
        AgentRestarted(time=0.0, agent="a", incarnation=2, restarts=1),
    ):
        check_lifecycle([spawned("a"), down, spawned("a", incarnation=2)])


def test_lifecycle_incarnations_count_up() -> None:
    down = failed("a")
    again = violation(check_lifecycle, [spawned("a", incarnation=2), down, spawned("a")])
    assert "'a' is spawned as incarnation 1 after incarnation 2" in str(again)
    restarted = AgentRestarted(time=0.0, agent="a", incarnation=3, restarts=1)
    skipped = violation(check_lifecycle, [spawned("a"), down, restarted, spawned("a", 0.0, 2)])
    assert "incarnation 2 after incarnation 1 and a restart announcing 3" in str(skipped)
    assert skipped.index == 3
    back = AgentRestarted(time=0.0, agent="a", incarnation=1, restarts=1)
    found = violation(check_lifecycle, [spawned("a"), down, back])
    assert "restarted as incarnation 1 with restarts=1; expected an incarnation above 1" in str(
        found
    )
    second = AgentRestarted(time=0.0, agent="a", incarnation=3, restarts=1)
    log = [spawned("a"), down, restarted, spawned("a", 0.0, 3), failed("a"), second]
    miscounted = violation(check_lifecycle, log)
    assert "restarts=1; expected an incarnation above 3 and restarts=2" in str(miscounted)
    # A restart whose factory failed is announced again, with the next number.
    retried = AgentRestarted(time=0.0, agent="a", incarnation=4, restarts=2)
    check_lifecycle([spawned("a"), down, restarted, failed("a"), retried, spawned("a", 0, 4)])


def test_lifecycle_a_child_needs_a_spawned_parent() -> None:
    found = violation(check_lifecycle, [spawned("p/c")])
    assert "'p/c' is spawned but its parent 'p' never was" in str(found)
    # A restarted parent starts its children before it reports its new incarnation.
    suspended = AgentSuspended(time=0.0, agent="p/c", reason="its supervisor tree was torn down")
    check_lifecycle(
        [
            spawned("p"),
            spawned("p/c"),
            suspended,
            failed("p"),
            spawned("p/c", incarnation=2),
            spawned("p", incarnation=2),
        ]
    )


def test_lifecycle_requests_are_received_only_while_up() -> None:
    before = violation(check_lifecycle, [received("a", 1)])
    assert "received request 1 while it was not up (before its first spawn)" in str(before)
    between = violation(check_lifecycle, [spawned("a"), failed("a"), received("a", 1)])
    assert between.index == 2
    assert "(between incarnations)" in str(between)


def test_lifecycle_time_never_goes_backwards() -> None:
    found = violation(check_lifecycle, [spawned("a", 2.0), ended("a", t=1.5)])
    assert found.index == 1
    assert "time goes backwards" in str(found)
    check_lifecycle([spawned("a", 1.0), ended("a", t=1.0)])  # equal times are fine


def test_lifecycle_unknown_statuses_and_actions() -> None:
    found = violation(check_lifecycle, [spawned("a"), ended("a", "exploded")])
    assert "unknown status 'exploded' (allowed: cancelled, completed, failed)" in str(found)
    bad = violation(check_lifecycle, [spawned("a"), failed("a"), decided("a", "reboot")])
    assert "unknown action 'reboot'" in str(bad)
    with pytest.raises(InvariantViolation, match="unknown action"):
        check_lifecycle([spawned("a"), failed("a"), decided("a", "stop", requested="nap")])


def test_looks_complete() -> None:
    assert not looks_complete([])
    assert not looks_complete([spawned("a"), spawned("b"), ended("a")])
    assert looks_complete([spawned("a"), spawned("b"), ended("a"), ended("b")])
    assert not looks_complete([spawned("a"), ended("a"), spawned("a")])


def test_no_serving_after_the_supervisor_ended() -> None:
    log: list[Event] = [spawned("p"), spawned("p/c"), ended("p"), ended("p/c"), received("p/c", 1)]
    found = violation(check_no_serving_after_end, log)
    assert found.agent == "p/c"
    assert found.index == 4
    assert "after its supervisor 'p' ended at #2" in str(found) or "after it ended" in str(found)
    respawned: list[Event] = [spawned("a"), ended("a"), spawned("a"), received("a", 1)]
    check_no_serving_after_end(respawned)
    left = violation(check_no_serving_after_end, [spawned("a")], complete=True)
    assert "never ended" in str(left)


def test_a_cancelled_subtree_has_no_running_member() -> None:
    good: list[Event] = [
        spawned("p"),
        spawned("p/c"),
        ended("p"),
        replied("p/c", 1, ERR),
        ended("p/c"),
        spawned("q"),
    ]
    check_cancelled_subtrees(good)
    bad: list[Event] = [spawned("p"), spawned("p/c"), ended("p"), spawned("q"), ended("p/c")]
    found = violation(check_cancelled_subtrees, bad)
    assert found.agent == "p/c"
    assert "still alive after its ancestor 'p' was cancelled at #2" in str(found)
    completed: list[Event] = [spawned("p"), spawned("p/c"), ended("p"), ended("p/c", "completed")]
    assert "completed although" in str(violation(check_cancelled_subtrees, completed))


def test_outside_cancellation_is_not_a_failure() -> None:
    cancelled = ErrorInfo(type="AgentCancelled", message="cancelled")
    found = violation(check_cancellation_not_failure, [spawned("a"), failed("a", error=cancelled)])
    assert found.agent == "a"
    assert found.index == 1
    no_decision = violation(check_cancellation_not_failure, [decided("a", "restart")])
    assert "with no failure" in str(no_decision)
    restarted = violation(
        check_cancellation_not_failure,
        [spawned("a"), AgentRestarted(time=0.0, agent="a", incarnation=2, restarts=1)],
    )
    assert "without a decision" in str(restarted)
    check_cancellation_not_failure(
        [
            spawned("a"),
            failed("a"),
            decided("a", "restart"),
            AgentRestarted(time=0.0, agent="a", incarnation=2, restarts=1),
            spawned("a"),
        ]
    )


def test_restart_limits_are_exact() -> None:
    limits = {"a": RestartLimit(max_restarts=2)}
    ok: list[Event] = [
        failed("a"),
        decided("a", "restart"),
        failed("a"),
        decided("a", "restart"),
        replied("a", 1),  # a success resets the consecutive count
        failed("a"),
        decided("a", "restart"),
        failed("a"),
        decided("a", "restart"),
        failed("a"),
        decided("a", "escalate", limit_exceeded=True),
    ]
    check_restart_limits(ok, limits)
    too_many = [*ok[:4], failed("a"), decided("a", "restart")]
    found = violation(check_restart_limits, too_many, limits)
    assert found.index == 5
    assert "beyond the limit" in str(found)
    refused = [failed("a"), decided("a", "escalate", limit_exceeded=True)]
    assert "within the limit was refused" in str(violation(check_restart_limits, refused, limits))


def test_restart_limits_read_the_restart_type_on_the_decision() -> None:
    limits = {"a": RestartLimit(max_restarts=1)}
    # A permanent agent's STOP is a restart attempt: carried out as a stop within the limit,
    # it is a refused restart (the checker used to guess from the action and miss this).
    stopped = [failed("a"), decided("a", "stop", requested="stop", restart_type="permanent")]
    assert "within the limit was refused" in str(violation(check_restart_limits, stopped, limits))
    check_restart_limits(
        [failed("a"), decided("a", "restart", requested="stop", restart_type="permanent")], limits
    )
    # The same decision of a transient agent is a plain stop; a temporary agent's failure
    # never counts, whatever was asked.
    check_restart_limits(
        [failed("a"), decided("a", "stop", requested="stop", restart_type="transient")], limits
    )
    temporary = [
        failed("a"),
        decided("a", "stop", requested="restart", restart_type="temporary"),
        failed("a"),
        decided("a", "stop", requested="restart", restart_type="temporary"),
    ]
    check_restart_limits(temporary, limits)


async def test_decisions_carry_the_agents_restart_type() -> None:
    from trio_agents import (
        Agent,
        AgentOrchestrator,
        Backoff,
        DefaultSupervisor,
        ModelOverloaded,
        RestartType,
        RetryPolicy,
    )
    from trio_agents.testing import ScriptedModel, fail

    events: list[Event] = []
    orchestrator = AgentOrchestrator(
        supervisor=DefaultSupervisor(), backoff=Backoff.none(), event_sink=events.append
    )
    for name, kind in (("p", RestartType.PERMANENT), ("t", RestartType.TEMPORARY)):
        orchestrator.add_agent(
            name,
            lambda: Agent(
                ScriptedModel([fail(ModelOverloaded("busy"))]), retry=RetryPolicy(max_attempts=1)
            ),
            restart=kind,
        )
    async with orchestrator.open() as system:
        for name in ("p", "t"):
            handle = await system.spawn(name)
            with pytest.raises(ModelOverloaded):
                await handle.send_message("go")
            # The reply comes before the supervisor's decision: let the decision be made.
            await trio.testing.wait_all_tasks_blocked()
        system.cancel()
    types = {e.agent: e.restart_type for e in events if isinstance(e, SupervisorDecided)}
    assert types == {"p": "permanent", "t": "temporary"}
    check_restart_limits(events, orchestrator)


def test_restart_window_boundary() -> None:
    limits = {"a": RestartLimit(max_restarts=1, window=10.0)}
    # A restart exactly T seconds ago no longer counts ...
    check_restart_limits([decided("a", "restart", 0.0), decided("a", "restart", 10.0)], limits)
    # ... one T - epsilon ago still does.
    log = [decided("a", "restart", 0.0), decided("a", "restart", 9.999)]
    assert "beyond the limit" in str(violation(check_restart_limits, log, limits))


def test_statuses_agree_with_the_last_lifecycle_event() -> None:
    log: list[Event] = [
        spawned("p"),
        spawned("p/c"),
        failed("p"),
        decided("p", "restart"),
        AgentRestarted(time=0.0, agent="p", incarnation=2, restarts=1),
    ]
    check_statuses(log, {"p": AgentStatus.RESTARTING, "p/c": AgentStatus.RESTARTING, "q": None})
    found = violation(check_statuses, log, {"p/c": AgentStatus.RUNNING})
    assert found.agent == "p/c"
    assert "restarting" in str(found)
    suspended = [spawned("a"), AgentSuspended(time=0.0, agent="a", reason="sibling")]
    check_statuses(suspended, {"a": AgentStatus.RESTARTING})


def test_usage_adds_up() -> None:
    from trio_agents import AssistantMessage, ModelResponded, StopReason, TextBlock

    def response(tokens: int) -> ModelResponded:
        message = AssistantMessage(
            content=(TextBlock("x"),),
            usage=Usage(requests=1, output_tokens=tokens),
            stop_reason=StopReason.STOP,
        )
        return ModelResponded(time=0.0, agent="a", message=message)

    def finished(tokens: int) -> RunFinished:
        result = Result(usage=Usage(requests=2, output_tokens=tokens))
        return RunFinished(time=0.0, agent="a", run=1, result=result)

    start = RunStarted(time=0.0, agent="a", run=1)
    check_usage([start, response(3), response(4), finished(7)])
    found = violation(check_usage, [start, response(3), response(4), finished(8)])
    assert found.agent == "a"
    assert found.index == 3


def test_same_events_names_the_first_difference() -> None:
    check_same_events([spawned("a")], [spawned("a")])
    found = violation(check_same_events, [spawned("a"), ended("a")], [spawned("a"), spawned("b")])
    assert found.index == 1
    assert "one run has 1 events" in str(violation(check_same_events, [spawned("a")], []))


def test_restart_limits_of_an_orchestrator() -> None:
    tree = AgentTree(roots=(TreeNode(name="p", children=(TreeNode(name="c", max_restarts=5),)),))
    orchestrator = tree.build(lambda name: pytest.fail("not built"))
    assert restart_limits(orchestrator) == {
        "p": RestartLimit(max_restarts=3),
        "p/c": RestartLimit(max_restarts=5),
    }


# --------------------------------------------------------------------------- on real runs


def _limits(tree: AgentTree) -> dict[str, RestartLimit]:
    return {tree.path_of(node.name): node.limit for node in tree.nodes()}


@settings(max_examples=60)
@given(agent_trees(max_agents=5), st.data(), st.integers(min_value=0, max_value=2**16))
def test_any_command_list_keeps_every_invariant_and_is_deterministic(
    tree: AgentTree, data: st.DataObject, seed: int
) -> None:
    # Free-form commands: failures may fire while other agents are busy, which the reference
    # model does not cover; the invariants of the log hold all the same.
    steps = data.draw(commands(tree, max_size=15), label="commands")
    trace = replay(tree, steps, seed=seed)
    final = trace.final
    assert None not in final.outcomes.values(), "every request and close got its outcome"
    statuses = {tree.path_of(name): status for name, status in final.statuses.items()}
    check_event_log(trace.events, complete=True, limits=_limits(tree), statuses=statuses)
    check_deterministic(lambda: replay(tree, steps, seed=seed).events)


@settings(max_examples=40)
@given(delegation_plans())
def test_delegation_plans_produce_the_planned_records_and_consistent_usage(
    plan: DelegationPlan,
) -> None:
    async def main() -> None:
        events: list[Event] = []
        budget = Budget()
        runner = ModelRunner(plan.model(), retry=RetryPolicy(max_attempts=1))
        result = await plan.delegator().run(
            "go", runner=runner, event_sink=events.append, budget=budget
        )
        records = [(r.specialist, r.depth, r.path, r.success) for r in result.delegations]
        assert records == plan.expected()
        check_event_log(events, complete=True)
        assert result.total_usage == budget.usage

    trio.run(main)


def test_replay_observes_every_step() -> None:
    tree = AgentTree(roots=(TreeNode(name="a", backoff=1.0),))
    steps = [
        Command(op=Op.SPAWN, agent="a"),
        Command(op=Op.SEND, agent="a", work=Work.FAIL, id=1),
        Command(op=Op.SEND, agent="a", work=Work.SLEEP, seconds=2.0, id=2),
        Command(op=Op.TICK, seconds=0.5),
        Command(op=Op.TICK, seconds=3.0),
    ]
    trace = replay(tree, steps)
    assert len(trace.observations) == len(steps) + 1
    assert trace.observations[1].statuses["a"] is AgentStatus.RESTARTING
    assert trace.observations[3].outcomes[2] is None
    assert trace.observations[4].time == 3.5
    assert trace.observations[4].outcomes == {1: "ModelOverloaded", 2: "ok"}
    assert trace.final.statuses["a"] is AgentStatus.CANCELLED
