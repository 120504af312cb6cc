"""The pytest plugin of trio_agents, registered as the ``trio_agents`` ``pytest11`` entry point.

It is loaded by every pytest run in an environment where trio_agents is installed, so it
imports nothing but pytest at load time and changes nothing unless asked:

* fixtures ``agent_events`` (an event log whose invariants are checked after the test),
  ``agent_orchestrator`` (an :class:`~trio_agents.AgentOrchestrator` on trio's virtual clock
  that logs into ``agent_events``) and ``forbid_model_requests``;
* the ini option ``trio_agents_forbid_model_requests = true`` (or the command-line flag
  ``--trio-agents-forbid-model-requests``) makes every test run with real model requests
  forbidden; a test marked ``@pytest.mark.allow_model_requests`` is exempt.

Hypothesis is not needed by any of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .._events import Event
    from .._orchestrator import AgentOrchestrator

_INI = "trio_agents_forbid_model_requests"
_FLAG = "--trio-agents-forbid-model-requests"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ini option and the command-line flag."""
    parser.addini(
        _INI,
        type="bool",
        default=False,
        help="trio_agents: forbid real model requests in every test (providers raise "
        "ModelRequestsForbidden); mark a test allow_model_requests to exempt it",
    )
    group = parser.getgroup("trio_agents")
    group.addoption(
        _FLAG,
        action="store_true",
        default=False,
        help=f"forbid real model requests in every test (like the ini option {_INI} = true)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``allow_model_requests`` marker."""
    config.addinivalue_line(
        "markers",
        "allow_model_requests: let this test's real model providers send requests even when "
        f"{_INI} forbids them",
    )


def _override(allow: bool) -> Any:
    try:
        from trio_agents.models import override_allow_model_requests
    except ImportError as exc:  # pragma: no cover - a trio_agents without the switch
        raise pytest.UsageError(
            "trio_agents.models has no override_allow_model_requests(); this trio_agents "
            "cannot forbid real model requests"
        ) from exc
    return override_allow_model_requests(allow)


def _forbidden_by_config(config: pytest.Config) -> bool:
    return bool(config.getoption(_FLAG) or config.getini(_INI))


@pytest.fixture
def forbid_model_requests() -> Iterator[None]:
    """Forbid real model requests during the test: any real provider raises
    :class:`~trio_agents.models.ModelRequestsForbidden` instead of sending one."""
    with _override(False):
        yield


@pytest.fixture(autouse=True)
def _trio_agents_model_requests(request: pytest.FixtureRequest) -> Iterator[None]:
    if not _forbidden_by_config(request.config) or request.node.get_closest_marker(
        "allow_model_requests"
    ):
        yield
        return
    with _override(False):
        yield


@pytest.fixture
def agent_events(request: pytest.FixtureRequest) -> Iterator[list[Event]]:
    """A list to use as an ``event_sink`` (``event_sink=agent_events.append``).

    After the test, the log is checked with
    :func:`~trio_agents.testing.check_event_log`: the checks that hold at any moment, and the
    full set (``complete=True``) when the test closed the system, i.e. every agent it spawned
    has ended (:func:`~trio_agents.testing.looks_complete`). A violation makes the test
    error, naming the agent and the event. While it is in use (and so in every test using
    ``agent_orchestrator``), real model requests are forbidden unless the test is marked
    ``allow_model_requests``.
    """
    events: list[Event] = []
    if request.node.get_closest_marker("allow_model_requests"):
        yield events
    else:
        with _override(False):
            yield events
    from trio_agents.testing import check_event_log, looks_complete

    check_event_log(events, complete=looks_complete(events))


@pytest.fixture
async def agent_orchestrator(agent_events: list[Event]) -> AsyncIterator[AgentOrchestrator]:
    """An :class:`~trio_agents.AgentOrchestrator` with the
    :class:`~trio_agents.DefaultSupervisor`, a seeded ``rng`` (``random.Random(0)``) and
    ``agent_events`` as its event sink, for a test on trio's virtual clock.

    Register agents on it and open it in the test. The test must run on a
    :class:`trio.testing.MockClock`: add pytest-trio's ``autojump_clock`` fixture to its
    arguments (``mock_clock`` works too, if the test moves time itself). After the test the
    event log is also checked against the registered restart limits.
    """
    import random

    import trio
    import trio.testing

    from trio_agents import AgentOrchestrator, DefaultSupervisor

    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock):
        raise pytest.UsageError(
            "agent_orchestrator runs on trio's virtual clock: add the autojump_clock fixture "
            "(pytest-trio) to the test's arguments, e.g. "
            "async def test_x(agent_orchestrator, autojump_clock): ..."
        )
    orchestrator = AgentOrchestrator(
        supervisor=DefaultSupervisor(), event_sink=agent_events.append, rng=random.Random(0)
    )
    yield orchestrator
    from trio_agents.testing import check_restart_limits

    check_restart_limits(agent_events, orchestrator)
