"""The supervision state machine, run as the only test of a mutant (``nox -s mutate``)."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from trio_agents.testing import SupervisionMachine
from trio_agents.testing.strategies import agent_trees

EXAMPLES = 150


class _Machine(SupervisionMachine):
    check_replay = False


class _SmallTrees(_Machine):
    tree = agent_trees(max_depth=2, max_children=3, max_agents=4)


class _FlatTrees(_Machine):
    tree = agent_trees(max_depth=1, max_children=4, max_agents=4)


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
