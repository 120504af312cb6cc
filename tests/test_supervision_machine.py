"""The supervision state machine run on the project itself, its findings, and mutation checks.

``TestSupervisionMachine`` drives live random trees with hypothesis and compares them with the
reference model after every step (``trio_agents.testing.SupervisionMachine``). With the "ci"
profile it runs 1000 examples of 30 steps; "thorough" runs 10000 (``HYPOTHESIS_PROFILE=thorough``).

Each ``test_found_*`` test pins a fault the harness found while it was being built, replayed
as the command list the machine shrank it to. The mutation checks break one supervision rule
at a time and show that the machine notices.
"""

from __future__ import annotations

from collections import Counter

import pytest
from _fresh import in_fresh_interpreter
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import trio_agents._orchestrator as orchestrator_module
from trio_agents import (
    AgentStatus,
    AgentStopped,
    InvalidArgumentError,
    RestartStrategy,
    RestartType,
    SupervisorAction,
)
from trio_agents.testing import (
    AgentTree,
    Command,
    Op,
    SupervisionMachine,
    SupervisionReference,
    TreeNode,
    Work,
    check_event_log,
    replay,
)

# --------------------------------------------------------------------------- the machine in CI

_PROFILE = settings.default
# Five times the profile's budget for "ci" (1000 examples, about 30 s on a 2-core machine) and
# "thorough" (10000); the "dev" profile's 50 keep the local suite fast.
_EXAMPLES = _PROFILE.max_examples * (5 if _PROFILE.max_examples >= 200 else 1)


class TestSupervisionMachine(SupervisionMachine.TestCase):  # type: ignore[misc,name-defined]
    settings = settings(
        _PROFILE,
        max_examples=_EXAMPLES,
        stateful_step_count=30,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# --------------------------------------------------------------------------- helpers


def _run(tree: AgentTree, commands: list[Command], *, seed: int = 0) -> None:
    """Replay ``commands`` live and through the reference model; they must agree after every
    step, and the complete event log must pass every checker."""
    trace = replay(tree, commands, seed=seed)
    reference = SupervisionReference(tree)
    for command, observed in zip(commands, trace.observations, strict=False):
        if command.op is Op.SPAWN:
            assert observed.spawn_error == reference.spawn(command.agent), command
        elif command.op is Op.SEND:
            reference.send(command.agent, command.id, command.work, command.seconds)
        elif command.op is Op.CANCEL:
            reference.cancel(command.agent)
        elif command.op is Op.CLOSE:
            reference.close(command.agent, command.id)
        else:
            reference.tick(command.seconds)
        predicted = reference.snapshot()
        assert observed.statuses == predicted.statuses, command
        assert observed.incarnations == predicted.incarnations, command
        assert observed.restarts == predicted.restarts, command
        assert observed.outcomes == predicted.outcomes, command
        assert observed.system_error == predicted.system_error, command
    reference.shutdown()
    final = trace.final
    assert final.statuses == reference.snapshot().statuses
    assert final.outcomes == reference.snapshot().outcomes
    assert None not in final.outcomes.values()
    paths = {name: tree.path_of(name) for name in tree.names()}
    check_event_log(
        trace.events,
        complete=True,
        limits={tree.path_of(n.name): n.limit for n in tree.nodes()},
        statuses={paths[name]: status for name, status in final.statuses.items()},
    )


def spawn(name: str) -> Command:
    return Command(op=Op.SPAWN, agent=name)


def send(name: str, work: Work, id: int, seconds: float = 0.0) -> Command:
    return Command(op=Op.SEND, agent=name, work=work, id=id, seconds=seconds)


def cancel(name: str) -> Command:
    return Command(op=Op.CANCEL, agent=name)


def tick(seconds: float) -> Command:
    return Command(op=Op.TICK, seconds=seconds)


# --------------------------------------------------------------------------- findings


def test_found_a_respawned_agent_kept_its_old_restart_history() -> None:
    # Found by the machine: an agent that used up its restarts, was cancelled and spawned
    # again escalated at its first failure, taking the whole system down, because the new
    # life inherited the old restart count. A new spawn now starts a fresh history.
    tree = AgentTree(roots=(TreeNode(name="a"), TreeNode(name="b", max_restarts=2)))
    commands = [
        spawn("b"),
        send("b", Work.FAIL, 1),
        send("b", Work.FAIL, 2),
        cancel("b"),
        spawn("b"),
        send("b", Work.FAIL, 3),  # the first failure of the new life: restarted
        send("b", Work.OK, 4),
    ]
    _run(tree, commands)
    final = replay(tree, commands).final
    assert final.system_error is None
    assert final.outcomes[4] == "ok"
    assert final.restarts["b"] == 3


def test_found_timers_due_together_may_fire_in_either_order() -> None:
    # Found by the machine (a random run): a parent's request sleep and its child's restart
    # backoff ended at the same virtual instant while the parent was closing. The reference
    # applied the sleep first (the parent completes, the child waiting for its backoff is
    # cancelled); the live system restarted the child first (then closed it: completed).
    # Trio wakes both in one batch, in the scheduler's order: both are right, and the
    # reference now offers every order (rule 12), of which the live system must match one.
    tree = AgentTree(
        roots=(
            TreeNode(
                name="a",
                children=(
                    TreeNode(name="a1", backoff=0.5, restart=RestartType.TRANSIENT),
                    TreeNode(name="a2"),
                ),
            ),
        )
    )
    reference = SupervisionReference(tree)
    reference.spawn("a")
    reference.spawn("a1")
    reference.send("a", 1, Work.SLEEP, 0.5)
    reference.close("a", 2)
    reference.send("a1", 3, Work.FAIL)
    variants = reference.tick_variants(0.5)
    assert [v.snapshot().statuses["a1"] for v in variants] == [
        AgentStatus.CANCELLED,
        AgentStatus.COMPLETED,
    ]
    assert reference.now == 0.0  # the variants are copies
    commands = [
        spawn("a"),
        spawn("a1"),
        send("a", Work.SLEEP, 1, 0.5),
        Command(op=Op.CLOSE, agent="a", id=2),
        send("a1", Work.FAIL, 3),
        tick(0.5),
    ]
    for seed in range(3):
        observed = replay(tree, commands, seed=seed).observations[len(commands) - 1]
        assert any(
            observed.statuses == v.snapshot().statuses
            and observed.incarnations == v.snapshot().incarnations
            and observed.outcomes == v.snapshot().outcomes
            for v in variants
        ), seed


def test_found_the_reference_restarted_a_new_life_with_an_old_restart() -> None:
    # Found by the machine (10,000 random runs): under REST_FOR_ONE, b is stopped to restart
    # with a after a's backoff; b is cancelled and spawned again meanwhile. When a's restart
    # then happens (or is called off by cancelling a), the reference restarted the new b
    # too; the live system rightly leaves the new life alone. An ended life now leaves its
    # siblings' pending restarts.
    tree = AgentTree(
        roots=(TreeNode(name="a", backoff=1.0), TreeNode(name="b")),
        strategy=RestartStrategy.REST_FOR_ONE,
    )
    start = [spawn("a"), spawn("b"), send("a", Work.FAIL, 1), cancel("b"), spawn("b")]
    for end in (tick(1.0), cancel("a")):
        _run(tree, [*start, end])
        after = replay(tree, [*start, end]).observations[len(start)]  # after ``end``
        assert after.incarnations["b"] == 2
        assert after.statuses["b"] is AgentStatus.RUNNING


def test_found_cancel_during_backoff_stranded_the_siblings_of_a_restart() -> None:
    # Found by the machine (thorough profile): under ONE_FOR_ALL, a failed agent's siblings
    # are stopped to restart together with it after its backoff. Cancelling the failed agent
    # during the backoff called the restart off, and the siblings stayed "restarting" for
    # good: requests to them never got a reply. They now come back at once.
    tree = AgentTree(
        roots=(
            TreeNode(
                name="p",
                strategy=RestartStrategy.ONE_FOR_ALL,
                children=(TreeNode(name="a", backoff=1.0), TreeNode(name="b")),
            ),
        )
    )
    commands = [
        spawn("p"),
        spawn("a"),
        spawn("b"),
        send("b", Work.HANG, 1),
        send("a", Work.FAIL, 2),
        send("b", Work.OK, 3),  # queued while b waits for a's restart
        cancel("a"),
        tick(2.0),
    ]
    _run(tree, commands)
    final = replay(tree, commands).final
    assert final.outcomes[1] == "AgentCancelled"  # b's request in flight when it stopped
    assert final.outcomes[3] == "ok"
    assert final.incarnations["b"] == 2


def test_found_a_called_off_restart_was_remembered_by_the_next_incarnation() -> None:
    # Found by the machine (thorough profile) in the first fix of the fault above: when the
    # backoff was cut short by the parent's own failure rather than by the handle, the list of
    # siblings waiting for the restart was kept, and cancelling the agent later, after its
    # parent had brought it back, restarted a sibling that had nothing to do with it.
    tree = AgentTree(
        roots=(
            TreeNode(
                name="p",
                strategy=RestartStrategy.ONE_FOR_ALL,
                children=(TreeNode(name="a", backoff=0.5), TreeNode(name="b")),
            ),
        )
    )
    commands = [
        spawn("p"),
        spawn("a"),
        spawn("b"),
        send("a", Work.FAIL, 1),  # a waits 0.5 s; b is stopped to restart with it
        send("p", Work.FAIL, 2),  # p restarts at once and brings a and b back
        cancel("a"),  # must not touch b
    ]
    _run(tree, commands)
    final = replay(tree, commands).final
    assert final.incarnations["b"] == 2


# --------------------------------------------------------------------------- mutation checks


class _SmallTree(SupervisionMachine):
    """A tree where every rule matters soon: low limits, a strategy that restarts siblings."""

    tree = AgentTree(
        roots=(
            TreeNode(
                name="p",
                max_restarts=1,
                strategy=RestartStrategy.ONE_FOR_ALL,
                children=(TreeNode(name="a", max_restarts=1), TreeNode(name="b")),
            ),
            TreeNode(name="q", max_restarts=1, on_fatal=SupervisorAction.ESCALATE),
        )
    )
    check_replay = False


def _machine_fails() -> str:
    """Run the machine with a fixed budget and return the failure message (it must fail)."""
    with pytest.raises(AssertionError) as info:
        run_state_machine_as_test(
            _SmallTree,
            settings=settings(
                max_examples=300,
                stateful_step_count=30,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        )
    return str(info.value)


@in_fresh_interpreter
def test_mutation_no_reply_on_stop_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break rule "every request gets a reply": a STOP no longer answers waiting requests."""
    original = orchestrator_module.AgentSystem._reply

    def reply(self, cell, request, result, error):  # type: ignore[no-untyped-def]
        if isinstance(error, AgentStopped):
            return  # the mutation: requests of a stopped agent are dropped
        original(self, cell, request, result, error)

    monkeypatch.setattr(orchestrator_module.AgentSystem, "_reply", reply)
    # The request a child is serving is answered AgentCancelled at the teardown, so only the
    # requests queued behind it show a STOP's AgentStopped. A random run of the machine comes
    # across that (a child busy and holding a second request when its parent stops) too
    # rarely for a fixed budget; replay the shortest such run through the same comparison.
    commands = [
        spawn("p"),
        spawn("a"),
        send("a", Work.HANG, 1),
        send("a", Work.OK, 2),  # queued behind the hang
        send("p", Work.FATAL, 3),  # p's supervisor stops it, and a with it
    ]
    with pytest.raises(AssertionError) as info:
        _run(_SmallTree.tree, commands)
    message = str(info.value)
    assert "id=3" in message  # noticed at the stop
    assert "AgentStopped" in message  # the reply the queued request did not get


@in_fresh_interpreter
def test_mutation_one_restart_too_many_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break the restart limit: every agent gets one restart more than configured."""
    original = orchestrator_module.decide

    def decide(**kwargs):  # type: ignore[no-untyped-def]
        limit = kwargs["limit"]
        kwargs["limit"] = type(limit)(max_restarts=limit.max_restarts + 1, window=limit.window)
        return original(**kwargs)

    monkeypatch.setattr(orchestrator_module, "decide", decide)
    message = _machine_fails()
    assert "restart" in message


@in_fresh_interpreter
def test_mutation_stop_leaves_children_running_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Break "stopping an agent stops its subtree": the children of a stopped agent are
    forgotten instead of ended."""
    original = orchestrator_module.AgentSystem._finalize

    def finalize(self, cell, status, error):  # type: ignore[no-untyped-def]
        if status is AgentStatus.FAILED and cell.failure is None:
            children, cell.started_children = cell.started_children, []
            try:
                original(self, cell, status, error)
            finally:
                cell.started_children = children
            return
        original(self, cell, status, error)

    monkeypatch.setattr(orchestrator_module.AgentSystem, "_finalize", finalize)
    _machine_fails()


@in_fresh_interpreter
def test_mutation_policy_ignored_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break the policy: every failure is restarted, whatever the supervisor asked."""
    original = orchestrator_module.decide

    def decide(**kwargs):  # type: ignore[no-untyped-def]
        kwargs["requested"] = SupervisorAction.RESTART
        return original(**kwargs)

    monkeypatch.setattr(orchestrator_module, "decide", decide)
    _machine_fails()


def test_the_harness_passes_without_a_mutation() -> None:
    # The control for the mutation checks: the same budget, nothing broken, no failure.
    run_state_machine_as_test(
        _SmallTree,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )


# --------------------------------------------------------------------------- rule weights


def _ops_of(machine: type[SupervisionMachine], examples: int = 25) -> Counter[str]:
    """Run ``machine`` briefly (derandomized) and count the live commands of every example."""
    seen: Counter[str] = Counter()

    class Counting(machine):  # type: ignore[valid-type,misc]
        def _finish(self) -> None:
            if self.live is not None:
                seen.update(c.op.value for c in self.live.commands)
            super()._finish()

    run_state_machine_as_test(
        Counting,
        settings=settings(
            max_examples=examples,
            stateful_step_count=20,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    return seen


def test_rule_weights_copy_rules_and_zero_removes_them() -> None:
    class Weighted(_SmallTree):
        rule_weights = {"tick": 3, "cancel": 0, "close": 0}  # noqa: RUF012

    names = Counter(r.function.__name__ for r in Weighted.setup_state().rules)
    base = Counter(r.function.__name__ for r in _SmallTree.setup_state().rules)
    assert names["tick"] == 3 and base["tick"] == 1
    assert names["cancel"] == names["close"] == 0
    assert names["spawn"] == base["spawn"] == 1
    # A subclass of a weighted machine starts from the plain rules again.

    class Again(Weighted):
        rule_weights = {"spawn": 2}  # noqa: RUF012

    again = Counter(r.function.__name__ for r in Again.setup_state().rules)
    assert again["tick"] == 1 and again["cancel"] == 1 and again["spawn"] == 2


def test_a_rule_of_weight_zero_never_runs_and_weights_shift_the_mix() -> None:
    class NoCancel(_SmallTree):
        rule_weights = {"cancel": 0, "close": 0}  # noqa: RUF012

    class Ticky(_SmallTree):
        rule_weights = {"tick": 6}  # noqa: RUF012

    plain = _ops_of(_SmallTree)
    assert plain["cancel"] + plain["close"] > 0  # the budget does reach them
    never = _ops_of(NoCancel)
    assert never["cancel"] == never["close"] == 0
    ticky = _ops_of(Ticky)
    assert ticky["tick"] / sum(ticky.values()) > plain["tick"] / sum(plain.values())


def test_bad_rule_weights_are_named_when_the_class_is_defined() -> None:
    with pytest.raises(InvalidArgumentError, match=r"unknown rules \['explode'\]"):

        class Unknown(SupervisionMachine):
            rule_weights = {"explode": 1}  # noqa: RUF012

    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(InvalidArgumentError, match=r"rule_weights\['tick'\] must be an int"):

            class Bad(SupervisionMachine):
                rule_weights = {"tick": bad}  # noqa: RUF012
