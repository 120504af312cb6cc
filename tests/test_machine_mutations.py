"""The supervision state machine alone, on generated trees, catches broken supervision rules.

Each test breaks one rule (a single change of the decision core or of the orchestrator's code
that carries decisions out, applied with ``monkeypatch``), runs
:class:`~trio_agents.testing.SupervisionMachine` with its default generated trees and no other
test, and fails if the machine passes the mutant. The control test runs the unbroken code
and must pass.

Mutations the machine does not catch are listed, with the reason, on the docs page "Testing"
("What the machine does not see").
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from _fresh import in_fresh_interpreter
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import trio_agents._orchestrator as orchestrator_module
import trio_agents._supervision as supervision_module
from trio_agents import AgentStopped, DefaultSupervisor, RestartHistory, SupervisorAction
from trio_agents.testing import SupervisionMachine
from trio_agents.testing.strategies import agent_trees

EXAMPLES = 400
"""Examples each mutant gets; the machine stops at the first disagreement it finds."""


class _Machine(SupervisionMachine):
    """The machine with its default generated trees."""

    check_replay = False  # determinism is not what these mutations break


class _SmallTrees(_Machine):
    """Generated trees small enough that failures meet busy siblings and limits soon."""

    tree = agent_trees(max_depth=2, max_children=3, max_agents=4)


class _FlatTrees(_Machine):
    """One level of up to four agents: the strategies' sibling sets at their plainest."""

    tree = agent_trees(max_depth=1, max_children=4, max_agents=4)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=30,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def _machine_catches_it() -> str:
    """Run the machine on default trees, then on small ones, then on flat ones; it must fail
    on one of them. Returns its message."""
    for machine in (_Machine, _SmallTrees, _FlatTrees):
        try:
            run_state_machine_as_test(machine, settings=_settings(EXAMPLES))
        except AssertionError as exc:  # a disagreement or a broken invariant
            return str(exc)
    pytest.fail(f"the supervision machine passed the mutant in 3 x {EXAMPLES} examples")


def _mutant(function: Callable[..., Any], old: str, new: str) -> Callable[..., Any]:
    """``function`` with the one occurrence of ``old`` in its source replaced by ``new``,
    compiled in its module's namespace."""
    source = textwrap.dedent(inspect.getsource(function))
    assert source.count(old) == 1, f"{old!r} must occur once in {function.__qualname__}"
    namespace: dict[str, Any] = {}
    exec(
        compile(source.replace(old, new), inspect.getfile(function), "exec"),
        function.__globals__,
        namespace,
    )
    return namespace[function.__name__]  # type: ignore[no-any-return]


def _patch_decide(monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    monkeypatch.setattr(orchestrator_module, "decide", _mutant(supervision_module.decide, old, new))


# --------------------------------------------------------------------------- the control


@in_fresh_interpreter
def test_the_machine_passes_the_unbroken_code() -> None:
    for machine in (_Machine, _SmallTrees):
        run_state_machine_as_test(machine, settings=_settings(60))


# --------------------------------------------------------------------------- decision core


@in_fresh_interpreter
def test_window_boundary_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart exactly ``window`` seconds old still counts."""
    _patch_decide(monkeypatch, "if now - t < window", "if now - t <= window")
    _machine_catches_it()


@in_fresh_interpreter
def test_success_does_not_reset_the_consecutive_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RestartHistory, "record_success", lambda self: self)
    _machine_catches_it()


@in_fresh_interpreter
def test_backoff_step_counted_from_the_wrong_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backoff of restart ``n`` uses step ``n + 1``."""
    decide = _mutant(
        supervision_module.decide, "backoff.delay(restart, rng)", "backoff.delay(restart + 1, rng)"
    )
    monkeypatch.setattr(orchestrator_module, "decide", decide)
    _machine_catches_it()


@in_fresh_interpreter
def test_one_for_all_skips_a_sibling(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONE_FOR_ALL forgets the oldest sibling."""
    affected = _mutant(
        supervision_module._affected,
        "range(len(siblings) - 1, -1, -1)",
        "range(len(siblings) - 1, 0, -1)",
    )
    monkeypatch.setattr(supervision_module, "_affected", affected)
    _machine_catches_it()


@in_fresh_interpreter
def test_one_for_all_siblings_in_start_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONE_FOR_ALL lists (and so stops) the siblings oldest first."""
    affected = _mutant(
        supervision_module._affected, "range(len(siblings) - 1, -1, -1)", "range(len(siblings))"
    )
    monkeypatch.setattr(supervision_module, "_affected", affected)
    _machine_catches_it()


@in_fresh_interpreter
def test_rest_for_one_takes_the_older_siblings(monkeypatch: pytest.MonkeyPatch) -> None:
    affected = _mutant(
        supervision_module._affected,
        "range(len(siblings) - 1, index, -1)",
        "range(index - 1, -1, -1)",
    )
    monkeypatch.setattr(supervision_module, "_affected", affected)
    _machine_catches_it()


@in_fresh_interpreter
def test_a_temporary_agent_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_decide(monkeypatch, "if restart_type is RestartType.TEMPORARY:", "if False:")
    _machine_catches_it()


@in_fresh_interpreter
def test_a_permanent_agent_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_decide(monkeypatch, "wanted = SupervisorAction.RESTART", "wanted = requested")
    _machine_catches_it()


@in_fresh_interpreter
def test_a_temporary_sibling_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_decide(monkeypatch, "if n not in temporaries", "if n")
    _machine_catches_it()


# --------------------------------------------------------------------------- policy and shell


@in_fresh_interpreter
def test_default_policy_restarts_non_retryable_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        DefaultSupervisor, "on_agent_error", lambda self, name, error: SupervisorAction.RESTART
    )
    _machine_catches_it()


@in_fresh_interpreter
def test_no_reply_on_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    original = orchestrator_module.AgentSystem._reply

    def reply(self, cell, request, result, error):  # type: ignore[no-untyped-def]
        if isinstance(error, AgentStopped):
            return  # the mutation: requests of a stopped agent are dropped
        original(self, cell, request, result, error)

    monkeypatch.setattr(orchestrator_module.AgentSystem, "_reply", reply)
    _machine_catches_it()
