"""The pytest plugin (entry point ``trio_agents``): fixtures, the forbid switch, no hypothesis.

Each test runs pytest in a subprocess on a scratch directory, as a user's project would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

USER_TESTS = """
import pytest
import trio

from trio_agents import Agent, AgentStatus, RetryPolicy
from trio_agents.models import ModelRequestsForbidden, check_model_requests_allowed
from trio_agents.testing import FunctionModel


def worker():
    return Agent(FunctionModel(lambda r: "done"), name="w", retry=RetryPolicy(max_attempts=1))


async def test_orchestrator_on_the_virtual_clock(agent_orchestrator, agent_events, autojump_clock):
    agent_orchestrator.add_agent("w", worker)
    async with agent_orchestrator.open() as system:
        handle = await system.spawn("w")
        await trio.sleep(3600)  # an hour of virtual time, at once
        assert (await handle.send_message("go")).final_text == "done"
    assert handle.status is AgentStatus.CANCELLED
    assert [e.kind for e in agent_events][:1] == ["agent_spawned"]
    with pytest.raises(ModelRequestsForbidden):  # forbidden by default with these fixtures
        check_model_requests_allowed("openai:gpt-4o-mini")


async def test_orchestrator_without_a_mock_clock_is_refused(agent_orchestrator):
    pass


def test_forbid_fixture(forbid_model_requests):
    with pytest.raises(ModelRequestsForbidden):
        check_model_requests_allowed("openai:gpt-4o-mini")


def test_switch_from_the_command_line():
    check_model_requests_allowed("openai:gpt-4o-mini")  # fails only with the flag


@pytest.mark.allow_model_requests
def test_marked_tests_are_exempt():
    check_model_requests_allowed("openai:gpt-4o-mini")


def test_a_broken_log_is_reported(agent_events):
    from trio_agents import AgentSpawned, RequestReceived, AgentEnded
    agent_events.extend([
        AgentSpawned(time=0.0, agent="a", incarnation=1),
        AgentEnded(time=0.0, agent="a", status="cancelled"),
        RequestReceived(time=0.0, agent="a", request=1),
    ])
"""

RUNNER = """
import sys


class NoHypothesis:
    def find_spec(self, name, path=None, target=None):
        if name == "hypothesis" or name.startswith("hypothesis."):
            raise ImportError("hypothesis is not installed here")
        return None


if sys.argv[1] == "no-hypothesis":
    sys.meta_path.insert(0, NoHypothesis())  # any import of hypothesis now fails
    import trio_agents.testing
    assert "hypothesis" not in sys.modules
import pytest
sys.exit(pytest.main(sys.argv[2:]))
"""


def _run(tmp_path: Path, mode: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(USER_TESTS, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n", encoding="utf-8")
    (tmp_path / "runner.py").write_text(textwrap.dedent(RUNNER), encoding="utf-8")
    options = ["-p", "no:cacheprovider", "-q", "-rA", "-W", "ignore::DeprecationWarning"]
    if mode == "no-hypothesis":
        options += ["-p", "no:hypothesispytest"]
    return subprocess.run(
        [sys.executable, "runner.py", mode, *options, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _outcomes(output: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in output.splitlines():
        for word in ("PASSED", "FAILED", "ERROR"):
            if line.startswith(word + " "):
                found[line.split("::")[-1].split(" ")[0]] = word
    return found


@pytest.mark.parametrize("mode", ["default", "no-hypothesis"])
def test_fixtures_work_with_and_without_hypothesis(tmp_path: Path, mode: str) -> None:
    done = _run(tmp_path, mode)
    outcomes = _outcomes(done.stdout)
    assert outcomes == {
        "test_orchestrator_on_the_virtual_clock": "PASSED",
        # an async fixture runs inside the test, so its error fails the test
        "test_orchestrator_without_a_mock_clock_is_refused": "FAILED",
        "test_forbid_fixture": "PASSED",
        "test_switch_from_the_command_line": "PASSED",
        "test_marked_tests_are_exempt": "PASSED",
        "test_a_broken_log_is_reported": "ERROR",
    }, done.stdout + done.stderr
    assert "add the autojump_clock fixture" in done.stdout
    # The invariant names the agent and the event; every agent ended, so the fixture ran the
    # full set of checks (complete=True), which looks for unreplied requests first.
    assert "request 1 of agent 'a' was received but never replied" in done.stdout


def test_the_forbid_switch(tmp_path: Path) -> None:
    done = _run(
        tmp_path, "default", "--trio-agents-forbid-model-requests", "-k", "switch or exempt"
    )
    outcomes = _outcomes(done.stdout)
    assert outcomes == {
        "test_switch_from_the_command_line": "FAILED",
        "test_marked_tests_are_exempt": "PASSED",
    }, done.stdout + done.stderr
    assert "ModelRequestsForbidden" in done.stdout
