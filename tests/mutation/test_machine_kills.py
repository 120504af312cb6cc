"""The supervision state machine, run as the only test of a mutant (``nox -s mutate``)."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from trio_agents import RestartStrategy, SupervisorAction
from trio_agents.testing import AgentTree, SupervisionMachine, TreeNode
from trio_agents.testing.strategies import agent_trees

EXAMPLES = 150


class _Machine(SupervisionMachine):
    check_replay = False


class _SmallTrees(_Machine):
    tree = agent_trees(max_depth=2, max_children=3, max_agents=4)


class _FlatTrees(_Machine):
    tree = agent_trees(max_depth=1, max_children=4, max_agents=4)


class _SiblingsAndWindows(_Machine):
    """A fixed tree where every strategy has three children to take down and the restart
    windows are short enough for the clock to cross them: generated trees reach both
    rarely."""

    tree = AgentTree(
        roots=(
            TreeNode(
                name="p",
                strategy=RestartStrategy.ONE_FOR_ALL,
                max_restarts=6,
                children=(
                    TreeNode(name="a", restart_window=1.0, max_restarts=1),
                    TreeNode(name="b"),
                    TreeNode(name="c", restart_window=2.0, max_restarts=2),
                ),
            ),
            TreeNode(
                name="q",
                strategy=RestartStrategy.REST_FOR_ONE,
                children=(TreeNode(name="x"), TreeNode(name="y"), TreeNode(name="z")),
            ),
            # An escalating child comes back with its restarted parent and fails again.
            TreeNode(
                name="r",
                on_fatal=SupervisorAction.RESTART,
                children=(TreeNode(name="e", max_restarts=1, on_fatal=SupervisorAction.ESCALATE),),
            ),
        )
    )
    rule_weights = {"fail": 3, "fail_again": 3, "tick": 2, "cancel": 0, "close": 0}  # noqa: RUF012


class _LateWindows(_Machine):
    """Restarts late enough in the run that ``now - t`` and ``now + t`` disagree inside a
    window (at the start of the clock they agree: a generated tree rarely tells them apart)."""

    tree = AgentTree(
        roots=(
            TreeNode(name="a", restart_window=4.0, max_restarts=1),
            TreeNode(name="b", restart_window=8.0, max_restarts=2),
        )
    )
    tick_seconds = (0.5, 1.0, 2.0)
    rule_weights = {"fail": 3, "fail_again": 3, "tick": 3, "cancel": 0, "close": 0}  # noqa: RUF012


def _settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        stateful_step_count=30,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def test_machine_default_trees() -> None:
    run_state_machine_as_test(_Machine, settings=_settings())


def test_machine_small_trees() -> None:
    run_state_machine_as_test(_SmallTrees, settings=_settings())


def test_machine_flat_trees() -> None:
    run_state_machine_as_test(_FlatTrees, settings=_settings())


def test_machine_siblings_and_windows() -> None:
    run_state_machine_as_test(_SiblingsAndWindows, settings=_settings())


def test_machine_late_windows() -> None:
    run_state_machine_as_test(_LateWindows, settings=_settings())
