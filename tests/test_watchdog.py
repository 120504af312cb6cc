"""The orchestrator's two hooks for agents that depend on something outside the process:
:meth:`Agent.watchdog` (fail an idle incarnation, fail a spawn) and
:meth:`Agent.incarnation_ended` (release what it holds when its incarnation ends)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentFailed,
    AgentOrchestrator,
    AgentStatus,
    Backoff,
    DefaultSupervisor,
    Event,
    ModelOverloaded,
    RetryPolicy,
    SupervisorAction,
)
from trio_agents._agent import Watchdog
from trio_agents.testing import FunctionModel, hang


class Outside:
    """Something outside the process the agents depend on (a server, a host)."""

    def __init__(self) -> None:
        self.lost = trio.Event()
        self.refuse_start: BaseException | None = None
        self.block_start = False
        self.ended: list[int] = []
        self.built = 0


class Watched(Agent):
    def __init__(self, outside: Outside) -> None:
        outside.built += 1
        self.number = outside.built

        def respond(request):  # type: ignore[no-untyped-def]
            word = request.messages[-1].content[0].text
            if word == "hang":
                return hang()
            return f"{word} from incarnation {self.number}"

        super().__init__(FunctionModel(respond), name="w", retry=RetryPolicy(max_attempts=1))
        self.outside = outside

    def watchdog(self) -> Watchdog:
        return self._watch

    async def _watch(self, task_status: trio.TaskStatus[None]) -> None:
        if self.outside.block_start:
            await trio.sleep_forever()
        if self.outside.refuse_start is not None:
            raise self.outside.refuse_start
        task_status.started()
        await self.outside.lost.wait()
        self.outside.lost = trio.Event()  # the next incarnation waits for a new loss
        raise ModelOverloaded(f"lost what incarnation {self.number} depended on")

    def incarnation_ended(self) -> None:
        self.outside.ended.append(self.number)


def system_of(outside: Outside, **kwargs: object) -> AgentOrchestrator:
    kwargs.setdefault("supervisor", DefaultSupervisor())
    orchestrator = AgentOrchestrator(backoff=Backoff.none(), **kwargs)  # type: ignore[arg-type]
    orchestrator.add_agent("w", lambda: Watched(outside))
    return orchestrator


async def test_a_failure_seen_while_idle_restarts_the_agent_without_a_request() -> None:
    outside = Outside()
    events: list[Event] = []
    async with system_of(outside, event_sink=events.append).open() as system:
        handle = await system.spawn("w")
        assert (await handle.send_message("a")).final_text == "a from incarnation 1"
        outside.lost.set()
        await trio.testing.wait_all_tasks_blocked()
        assert outside.built == 2
        assert outside.ended == [1]
        assert handle.statistics().restarts == 1
        failed = [e for e in events if isinstance(e, AgentFailed)]
        assert [e.error.message for e in failed] == ["lost what incarnation 1 depended on"]
        assert (await handle.send_message("b")).final_text == "b from incarnation 2"


async def test_a_failure_seen_during_a_request_lets_that_request_answer_first() -> None:
    outside = Outside()
    async with system_of(outside, channel_buffer=4).open() as system:
        handle = await system.spawn("w")
        first = handle.send_message_nowait("hang")
        queued = [handle.send_message_nowait(f"q{i}") for i in range(2)]
        await trio.testing.wait_all_tasks_blocked()
        outside.lost.set()
        await trio.testing.wait_all_tasks_blocked()
        assert not first.done  # the running request is not cut short by the watchdog
        handle.agent.abort("done waiting")  # type: ignore[union-attr]
        assert (await first.wait()).stop_reason.value == "aborted"
        # Then the incarnation fails; the queued requests stay for the next one.
        assert [(await q.wait()).final_text for q in queued] == [
            "q0 from incarnation 2",
            "q1 from incarnation 2",
        ]
        assert outside.ended == [1]
        assert handle.statistics().restarts == 1


async def test_stop_as_the_decision_ends_the_idle_agent() -> None:
    outside = Outside()

    class Stop:
        max_restarts = 3

        def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
            return SupervisorAction.STOP

    async with system_of(outside, supervisor=Stop()).open() as system:
        handle = await system.spawn("w")
        outside.lost.set()
        assert await handle.wait_done() is AgentStatus.FAILED
        assert outside.ended == [1]
        assert outside.built == 1


async def test_a_watchdog_that_cannot_start_fails_the_spawn_and_the_system_goes_on() -> None:
    outside = Outside()
    outside.refuse_start = ModelOverloaded("the server is not there")
    async with system_of(outside).open() as system:
        with pytest.raises(ModelOverloaded, match="the server is not there"):
            await system.spawn("w")
        assert system.status("w") is None
        assert outside.ended == [1]  # what it built is released
        outside.refuse_start = None
        handle = await system.spawn("w")
        assert (await handle.send_message("x")).final_text == "x from incarnation 2"


async def test_incarnation_ended_is_called_once_for_every_way_an_incarnation_ends() -> None:
    outside = Outside()
    async with system_of(outside).open() as system:
        handle = await system.spawn("w")
        await handle.aclose()  # completed
        assert outside.ended == [1]
        handle = await system.spawn("w")
        handle.cancel()  # cancelled by its handle
        await handle.wait_done()
        assert outside.ended == [1, 2]
        handle = await system.spawn("w")
    # the system closed
    assert outside.ended == [1, 2, 3]


async def test_outside_cancellation_of_a_spawn_whose_watchdog_has_not_started_is_bare() -> None:
    outside = Outside()
    outside.block_start = True
    async with system_of(outside).open() as system:
        with trio.CancelScope() as scope:
            scope.cancel()  # the spawn is cut off while its watchdog has not started
            with pytest.raises(trio.Cancelled) as caught:
                await system.spawn("w")
        assert type(caught.value) is trio.Cancelled  # bare, not in a group
        assert outside.ended == [1]
        assert system.status("w") is None  # it never served: it can be spawned again
        outside.block_start = False
        handle = await system.spawn("w")
        assert (await handle.send_message("x")).final_text == "x from incarnation 2"
