"""Properties the benchmarks found to matter, pinned without timing anything.

* A failed run, and a failed incarnation of an orchestrated agent, are freed by reference
  counting: no reference cycle through the error's traceback keeps the agent alive until a
  full garbage collection (that made a restart ~35% slower, benchmarks scenario 4).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import trio.testing

from trio_agents import (
    Agent,
    AgentOrchestrator,
    AuthenticationError,
    Backoff,
    DefaultSupervisor,
    ModelOverloaded,
    RetryPolicy,
)
from trio_agents.testing import FunctionModel


def failing_model(error: type[Exception], then: str | None = None) -> FunctionModel:
    """Raises a fresh ``error`` (as a provider does), then answers ``then`` if given.

    Not ``ScriptedModel([fail(...)])``: raising the same stored instance ties its traceback
    to the script step, a cycle of the test double's own.
    """
    calls = [0]

    def respond(request: object) -> str:
        calls[0] += 1
        if then is None or calls[0] == 1:
            raise error("failed")
        return then

    return FunctionModel(respond)


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_cyclic_gc")
async def test_a_failed_run_is_freed_without_the_garbage_collector() -> None:
    agent = Agent(failing_model(AuthenticationError))
    ref = weakref.ref(agent)
    try:
        await agent.run("hi")
    except AuthenticationError:
        pass
    else:  # pragma: no cover
        pytest.fail("the run should have failed")
    del agent
    assert ref() is None


@pytest.mark.parametrize("how", ["send_message", "send_message_nowait"])
@pytest.mark.usefixtures("no_cyclic_gc")
async def test_a_restarted_agent_frees_its_failed_incarnation(how: str) -> None:
    built: list[weakref.ref[Agent]] = []
    model = failing_model(ModelOverloaded, then="fine")

    def factory() -> Agent:
        agent = Agent(model, retry=RetryPolicy(max_attempts=1))
        built.append(weakref.ref(agent))
        return agent

    orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor(), backoff=Backoff.none())
    orchestrator.add_agent("worker", factory)
    async with orchestrator.open() as system:
        handle = await system.spawn("worker")
        try:
            if how == "send_message":
                await handle.send_message("first")
            else:
                await handle.send_message_nowait("first").wait()
        except ModelOverloaded:
            pass  # the client got the error, with the agent's frames in its traceback
        else:  # pragma: no cover
            pytest.fail("the first request should have failed")
        assert (await handle.send_message("second")).final_text == "fine"
        await trio.testing.wait_all_tasks_blocked()
        assert len(built) == 2
        assert built[0]() is None  # the failed incarnation is gone
        assert built[1]() is not None  # the one serving is not
        system.cancel()
