"""Regression tests for the bugs a review of the core modules found (each was fixed)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentOrchestrator,
    AgentSpec,
    AgentStatus,
    AlreadyRunningError,
    Backoff,
    Delegator,
    Event,
    InvalidArgumentError,
    ModelOverloaded,
    RestartStrategy,
    RetryPolicy,
    SupervisorAction,
    TextBlock,
    ToolResultMessage,
    UsageError,
    UserMessage,
)
from trio_agents._delegation import ModelRunner
from trio_agents.testing import FunctionModel, ScriptedModel, fail, text, tool_call


class Always:
    def __init__(self, action: SupervisorAction) -> None:
        self.action = action

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        return self.action


def _word(request: Any) -> str:
    last = request.messages[-1]
    assert isinstance(last, UserMessage)
    block = last.content[0]
    assert isinstance(block, TextBlock)
    return block.text


def echo_factory(name: str, built: list[str]) -> Callable[[], Agent]:
    def build() -> Agent:
        built.append(name)

        async def respond(request: Any) -> str:
            word = _word(request)
            if word == "fail":
                raise ModelOverloaded(f"{name} overloaded")
            if word == "slow-cleanup":
                # A model whose cancellation takes a while to unwind (e.g. an HTTP client
                # closing its connection in a shielded cleanup).
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(1)
            return f"{name}:{word}"

        return Agent(FunctionModel(respond), name=name, retry=RetryPolicy(max_attempts=1))

    return build


# --------------------------------------------------------------------------- orchestrator


async def test_cancel_during_sibling_teardown_does_not_orphan_siblings(
    autojump_clock: trio.abc.Clock,
) -> None:
    decided = trio.Event()

    def sink(event: Event) -> None:
        if event.kind == "supervisor_decided" and event.agent == "a":
            decided.set()

    built: list[str] = []
    orch = AgentOrchestrator(
        supervisor=Always(SupervisorAction.RESTART),
        strategy=RestartStrategy.ONE_FOR_ALL,
        backoff=Backoff.none(),
        event_sink=sink,
    )
    orch.add_agent("a", echo_factory("a", built))
    orch.add_agent("b", echo_factory("b", built))
    async with orch.open() as system:
        a = await system.spawn("a")
        b = await system.spawn("b")
        with trio.fail_after(60):
            await _cancel_a_while_it_waits_for_b(a, b, decided)
        assert a.status is AgentStatus.CANCELLED
        # b was stopped only to restart with a: it must come back and answer.
        with trio.fail_after(60):
            assert (await b.send_message("hello")).final_text == "b:hello"
        assert b.status is AgentStatus.RUNNING


async def _cancel_a_while_it_waits_for_b(a: Any, b: Any, decided: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        # b is busy with a request whose cancellation takes 1 s to unwind.
        nursery.start_soon(_swallow, b.send_message("slow-cleanup"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_swallow, a.send_message("fail"))
        await decided.wait()
        # a now waits (up to 1 s) for b to stop so that both restart together.
        await trio.testing.wait_all_tasks_blocked()
        a.cancel()  # the owner gives up on a: the restart is called off


async def _swallow(awaitable: Any) -> None:
    with contextlib.suppress(Exception):
        await awaitable


async def test_concurrent_spawn_of_one_name_is_rejected() -> None:
    built: list[str] = []
    orch = AgentOrchestrator(backoff=Backoff.none())
    orch.add_agent("a", echo_factory("a", built))
    errors: list[BaseException] = []

    async def spawn() -> None:
        try:
            await system.spawn("a")
        except InvalidArgumentError as exc:
            errors.append(exc)

    async with orch.open() as system:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(spawn)
            nursery.start_soon(spawn)
        assert len(errors) == 1, "the second spawn of a running name must be refused"
        assert built == ["a"]


# --------------------------------------------------------------------------- agent


async def test_run_started_sink_error_leaves_agent_usable() -> None:
    calls = 0

    def sink(event: Event) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("sink is broken once")

    agent = Agent(ScriptedModel([text("hi"), text("again")]), event_sink=sink)
    with pytest.raises(RuntimeError, match="sink is broken once"):
        await agent.run("first")
    assert not agent.running
    try:
        result = await agent.run("second")
    except AlreadyRunningError:
        pytest.fail("the agent is stuck 'running' after a failed run")
    assert result.final_text == "hi"


# --------------------------------------------------------------------------- delegation


async def test_fail_fast_executor_recovers_for_the_next_run() -> None:
    worker = AgentSpec(name="worker")
    delegator = Delegator(AgentSpec(name="lead"), [worker], failure_policy="fail_fast")
    answers = iter(["boom", "ok"])

    def respond(request: Any) -> Any:
        answer = next(answers)
        if answer == "boom":
            return fail(ModelOverloaded("worker down"))
        return answer

    runner = ModelRunner(FunctionModel(respond), retry=RetryPolicy(max_attempts=1))
    executor = delegator.executor(runner=runner)
    lead = Agent(
        ScriptedModel(
            [
                tool_call("delegate", {"specialist": "worker", "subtask": "one"}),
                # second run
                tool_call("delegate", {"specialist": "worker", "subtask": "two"}),
                text("done"),
            ]
        ),
        name="lead",
        tools=executor,
    )
    with pytest.raises(Exception, match="worker"):
        await lead.run("first task")
    result = await lead.run("second task")
    tool_results = [
        block.content
        for message in result.messages
        if isinstance(message, ToolResultMessage)
        for block in message.results
    ]
    assert tool_results == ["ok"], result.messages


async def test_bad_send_messages_argument_is_the_callers_error() -> None:
    built: list[str] = []
    orch = AgentOrchestrator(backoff=Backoff.none())  # no policy: failures escalate
    orch.add_agent("a", echo_factory("a", built))
    async with orch.open() as system:
        a = await system.spawn("a")
        with pytest.raises(UsageError, match="message"):
            await a.send_messages([])
        assert a.status is AgentStatus.RUNNING
        assert (await a.send_message("still here")).final_text == "a:still here"
        assert built == ["a"]


async def test_error_while_unwinding_a_cancel_is_not_a_failure(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen: list[str] = []

    def sink(event: Event) -> None:
        seen.append(event.kind)

    def build() -> Agent:
        async def respond(request: Any) -> str:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                # e.g. an SDK that reports its aborted connection as its own error
                raise ModelOverloaded("connection aborted") from None
            raise AssertionError("unreachable")

        return Agent(FunctionModel(respond), name="a", retry=RetryPolicy(max_attempts=1))

    orch = AgentOrchestrator(backoff=Backoff.none(), event_sink=sink)  # no policy: escalate
    orch.add_agent("a", build)
    async with orch.open() as system:
        a = await system.spawn("a")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_swallow, a.send_message("work"))
            await trio.testing.wait_all_tasks_blocked()
            a.cancel("owner gave up")
        assert await a.wait_done() is AgentStatus.CANCELLED
    assert "agent_failed" not in seen
    assert "failure_escalated" not in seen


async def test_a_policy_that_raises_escalates_the_failure_and_says_why() -> None:
    class Broken:
        def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
            raise KeyError("no rule for this")

    built: list[str] = []
    orch = AgentOrchestrator(supervisor=Broken(), backoff=Backoff.none())
    orch.add_agent("a", echo_factory("a", built))
    with pytest.raises(Exception) as info:
        async with orch.open() as system:
            a = await system.spawn("a")
            a.send_message_nowait("fail")
            await trio.sleep_forever()
    from trio_agents import ChildFailed

    assert isinstance(info.value, ChildFailed)
    assert info.value.path == "a"
    notes = getattr(info.value.original, "__notes__", [])
    assert any("supervisor policy raised KeyError" in note for note in notes)
