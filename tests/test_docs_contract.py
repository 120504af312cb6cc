"""Rules stated on the narrative docs pages (agents, supervision, cancellation) that no other
test pinned. Each test names the rule it pins; the pages name the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentCancelled,
    AgentError,
    AgentOrchestrator,
    AgentStatus,
    AgentStopped,
    AlreadyRunningError,
    AssistantMessage,
    AuthenticationError,
    Backoff,
    BadRequestError,
    Budget,
    BudgetExhausted,
    ChildFailed,
    ContentFiltered,
    ContextWindowExceeded,
    DefaultSupervisor,
    Event,
    InvalidArgumentError,
    MaxTurnsExceeded,
    ModelOverloaded,
    ModelRequest,
    ModelThrottled,
    ModelTimeout,
    NetworkError,
    RestartStrategy,
    RetryPolicy,
    RetryScheduled,
    RunTimeout,
    StopReason,
    StreamDone,
    StreamEvent,
    SupervisorAction,
    TextBlock,
    TextDelta,
    ToolResultMessage,
    Usage,
    UsageError,
    UsageLimits,
    UserMessage,
    tool,
)
from trio_agents.testing import FunctionModel, ScriptedModel, fail, hang, text, tool_call


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def echo_factory(name: str, built: list[str] | None = None) -> Callable[[], Agent]:
    """An agent that raises ModelOverloaded on "fail", hangs on "hang", else echoes."""

    def build() -> Agent:
        if built is not None:
            built.append(name)

        def respond(request):  # type: ignore[no-untyped-def]
            last = request.messages[-1]
            assert isinstance(last, UserMessage)
            block = last.content[0]
            assert isinstance(block, TextBlock)
            if block.text == "fail":
                raise ModelOverloaded(f"{name} overloaded")
            if block.text == "hang":
                return hang()
            return f"{name}:{block.text}"

        return Agent(FunctionModel(respond), name=name, retry=RetryPolicy(max_attempts=1))

    return build


# --------------------------------------------------------------------------- agents.rst


async def test_a_response_past_a_token_limit_is_kept_and_the_next_call_fails() -> None:
    model = ScriptedModel(
        [tool_call("add", {"a": 1, "b": 2}, id="c1"), text("3")],
    )
    agent = Agent(model, tools=[add], limits=UsageLimits(total_tokens=5))
    with pytest.raises(BudgetExhausted, match="total_tokens") as info:
        await agent.run("one plus two")
    partial = info.value.result
    assert partial is not None
    # the first response (over the limit) is kept and its tool calls ran; no second call
    assert partial.turns == 1
    assert isinstance(partial.messages[-1], ToolResultMessage)
    assert partial.messages[-1].results[0].content == "3"
    assert len(model.requests) == 1
    assert partial.usage.total_tokens > 5


async def test_a_shared_budget_spans_agents_and_a_child_budget_only_shrinks() -> None:
    shared = Budget(UsageLimits(requests=2))
    first = Agent(ScriptedModel(["one"]), budget=shared)
    second = Agent(ScriptedModel(["two", "three"]), budget=shared)
    await first.run("x")
    await second.run("y")
    assert shared.usage.requests == 2
    with pytest.raises(BudgetExhausted, match="requests"):
        await second.run("z")
    # a child may set a larger limit, but every check also asks its ancestors
    parent = Budget(UsageLimits(requests=2))
    child = parent.child(UsageLimits(requests=5))
    child.charge(Usage(requests=2))
    assert parent.usage.requests == 2  # charges reach the ancestors
    with pytest.raises(BudgetExhausted, match="used 2 of 2"):
        child.check_request()


async def test_limits_give_each_run_a_fresh_budget_carved_from_the_shared_one() -> None:
    shared = Budget(UsageLimits(requests=10))
    agent = Agent(
        ScriptedModel(["one", "two", "three"]), limits=UsageLimits(requests=1), budget=shared
    )
    await agent.run("a")
    await agent.run("b")  # a fresh per-run budget: one request again
    assert shared.usage.requests == 2  # ... charged to the shared budget too
    tight = Budget(UsageLimits(requests=2))
    agent = Agent(
        ScriptedModel(["one", "two", "three"]), limits=UsageLimits(requests=5), budget=tight
    )
    await agent.run("a")
    await agent.run("b")
    with pytest.raises(BudgetExhausted):  # the shared budget is stricter
        await agent.run("c")


async def test_a_failed_run_keeps_its_partial_result_on_the_error_and_the_agent() -> None:
    model = ScriptedModel([tool_call("add", {"a": 1, "b": 2}), fail(AuthenticationError("key"))])
    agent = Agent(model, tools=[add])
    with pytest.raises(AuthenticationError) as info:
        await agent.run("x")
    partial = info.value.result
    assert partial is not None
    assert partial.stop_reason is StopReason.ERROR
    assert partial.turns == 1 and partial.usage.requests == 1
    assert partial.error is not None and partial.error.type == "AuthenticationError"
    last = agent.last_result
    assert last is not None
    # the same partial result (two snapshots a moment apart: only the duration may differ)
    assert attrs.evolve(last, duration=0.0) == attrs.evolve(partial, duration=0.0)


async def test_a_length_stop_ends_the_run_with_stop_reason_length() -> None:
    agent = Agent(ScriptedModel([text("cut off mid", stop_reason=StopReason.LENGTH)]))
    result = await agent.run("x")
    assert result.stop_reason is StopReason.LENGTH
    assert result.ok


async def test_clear_history_forgets_but_not_while_running() -> None:
    agent = Agent(ScriptedModel(["one", hang()]))
    await agent.run("first")
    agent.clear_history()
    assert agent.messages == ()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.run, "second")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(AlreadyRunningError):
            agent.clear_history()
        nursery.cancel_scope.cancel(reason="test over")


class _TruncatedStream:
    """A model whose stream ends without StreamDone the first time, then answers."""

    model_id = "truncated"

    def __init__(self) -> None:
        self.calls = 0

    async def request(self, request: ModelRequest) -> AssistantMessage:
        raise AssertionError("the agent streams")

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        self.calls += 1
        complete = self.calls > 1

        async def events() -> AsyncIterator[StreamEvent]:
            yield TextDelta("partial")
            if complete:
                yield StreamDone(AssistantMessage(content=(TextBlock("whole"),)))

        yield events()


async def test_a_stream_without_its_final_message_is_a_retryable_network_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = _TruncatedStream()
    events: list[Event] = []
    agent = Agent(model, stream=True, event_sink=events.append)
    result = await agent.run("x")
    assert result.final_text == "whole"
    [retry] = [e for e in events if isinstance(e, RetryScheduled)]
    assert retry.error.type == "NetworkError"
    assert model.calls == 2
    with pytest.raises(NetworkError, match="without a complete message"):
        await Agent(_TruncatedStream(), stream=True, retry=RetryPolicy(max_attempts=1)).run("x")


async def test_a_retry_adds_retry_scheduled_and_another_model_requested(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    model = ScriptedModel([fail(ModelOverloaded("busy")), text("ok")])
    agent = Agent(model, retry=RetryPolicy(jitter=False), event_sink=events.append)
    await agent.run("x")
    assert [(e.kind, getattr(e, "attempt", None)) for e in events] == [
        ("run_started", None),
        ("turn_started", None),
        ("model_requested", 1),
        ("retry_scheduled", 1),
        ("model_requested", 2),
        ("model_responded", None),
        ("turn_finished", None),
        ("run_finished", None),
    ]


async def test_an_orchestrated_agent_without_a_sink_reports_to_the_orchestrator() -> None:
    events: list[Event] = []
    orch = AgentOrchestrator(event_sink=events.append)
    orch.add_agent("p", echo_factory("p"))
    orch.add_child("c", "p", echo_factory("c"))
    async with orch.open() as system:
        await system.spawn("p")
        await (await system.spawn("c")).send_message("hi")
    runs = [(e.kind, e.agent) for e in events if e.kind.startswith("run_")]
    assert runs == [("run_started", "p/c"), ("run_finished", "p/c")]


def test_which_errors_are_retryable() -> None:
    retryable: list[type[AgentError]] = [
        ModelThrottled,
        ModelOverloaded,
        NetworkError,
        ModelTimeout,
    ]
    final: list[type[AgentError]] = [
        AuthenticationError,
        BadRequestError,
        ContextWindowExceeded,
        ContentFiltered,
        BudgetExhausted,
        MaxTurnsExceeded,
        RunTimeout,
        UsageError,
        ChildFailed,
        AgentStopped,
        AgentCancelled,
    ]
    assert [e for e in retryable if not e.retryable] == []
    assert [e for e in final if e.retryable] == []
    # A model call past model_timeout is retried like a network error; a run past run_timeout
    # is not retryable, so the default supervisor stops the agent instead of restarting it.
    supervisor = DefaultSupervisor()
    assert supervisor.on_agent_error("a", ModelTimeout("slow")) is SupervisorAction.RESTART
    assert supervisor.on_agent_error("a", RunTimeout("slow")) is SupervisorAction.STOP


# --------------------------------------------------------------------------- cancellation.rst


async def test_abort_without_a_run_does_nothing() -> None:
    agent = Agent(ScriptedModel(["hello"]))
    agent.abort("nobody is running")
    result = await agent.run("hi")
    assert result.final_text == "hello"
    assert result.stop_reason is StopReason.STOP


async def test_abort_during_a_model_call_returns_aborted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    agent = Agent(ScriptedModel([hang()]))
    results = []

    async def run() -> None:
        results.append(await agent.run("x"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(1)
        agent.abort("enough")
    [result] = results
    assert result.stop_reason is StopReason.ABORTED
    assert [type(m) for m in result.messages] == [UserMessage]
    assert agent.last_result == result


async def test_abort_during_a_retry_backoff_returns_aborted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel([fail(ModelOverloaded("busy")), text("never")])
    agent = Agent(model, retry=RetryPolicy(initial_delay=100.0, jitter=False))
    results = []

    async def run() -> None:
        results.append(await agent.run("x"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(1)
        agent.abort("stop waiting")
    [result] = results
    assert result.stop_reason is StopReason.ABORTED
    assert result.error is None
    assert len(model.requests) == 1  # the retry never happened
    assert trio.current_time() == pytest.approx(1)


async def test_an_outside_deadline_is_outside_cancellation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    agent = Agent(ScriptedModel([tool_call("add", {"a": 1, "b": 1}), hang()]), tools=[add])
    seen: list[BaseException] = []

    async def run() -> None:
        try:
            await agent.run("x")
        except BaseException as exc:
            seen.append(exc)
            raise

    with pytest.raises(trio.TooSlowError):
        with trio.fail_after(2):
            await run()
    # the run let trio.Cancelled through as it is (not wrapped, not turned into an error)
    assert len(seen) == 1
    assert type(seen[0]) is trio.Cancelled
    last = agent.last_result
    assert last is not None
    assert last.stop_reason is StopReason.ABORTED
    assert last.error is None
    assert last.turns == 1  # partial transcript: the first response and its tool result
    assert isinstance(last.messages[2], ToolResultMessage)


async def test_leaving_the_block_cancels_every_waiting_request() -> None:
    events: list[Event] = []
    orch = AgentOrchestrator(supervisor=DefaultSupervisor(), event_sink=events.append)
    orch.add_agent("a", echo_factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        in_flight = handle.send_message_nowait("hang")
        queued = handle.send_message_nowait("never served")
        await trio.testing.wait_all_tasks_blocked()
    for pending in (in_flight, queued):
        assert pending.done
        with pytest.raises(AgentCancelled, match="agent system closed"):
            await pending.wait()
    assert handle.status is AgentStatus.CANCELLED
    kinds = [e.kind for e in events if e.kind.startswith(("agent", "supervisor"))]
    assert kinds == ["agent_spawned", "agent_ended"]  # not a failure, not a suspension
    with pytest.raises(AgentCancelled, match="agent system closed"):
        await handle.send_message("late")
    with pytest.raises(AgentCancelled, match="agent system closed"):
        handle.send_message_nowait("late")


async def test_system_cancel_is_like_leaving_the_block(
    autojump_clock: trio.testing.MockClock,
) -> None:
    orch = AgentOrchestrator(supervisor=DefaultSupervisor())
    orch.add_agent("a", echo_factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        pending = handle.send_message_nowait("hang")
        await trio.testing.wait_all_tasks_blocked()
        system.cancel("shutting down")
        await trio.sleep(1000)  # cancelled by system.cancel at once
    assert trio.current_time() == 0
    with pytest.raises(AgentCancelled):
        await pending.wait()
    assert handle.status is AgentStatus.CANCELLED
    assert handle.statistics().restarts == 0


async def test_outside_cancellation_leaves_the_block_as_one_cancelled() -> None:
    orch = AgentOrchestrator(supervisor=DefaultSupervisor())
    for name in ("a", "b"):
        orch.add_agent(name, echo_factory(name))
    seen: list[BaseException] = []
    with trio.CancelScope() as scope:
        try:
            async with orch.open() as system:
                for name in ("a", "b"):
                    (await system.spawn(name)).send_message_nowait("hang")
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel(reason="owner gave up")
                await trio.sleep_forever()
        except BaseException as exc:
            seen.append(exc)
            raise
    assert scope.cancelled_caught
    assert len(seen) == 1
    assert type(seen[0]) is trio.Cancelled  # not an exception group


async def test_sibling_restarts_stop_in_reverse_start_order() -> None:
    events: list[Event] = []
    built: list[str] = []
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(), backoff=Backoff.none(), event_sink=events.append
    )
    orch.add_agent("p", echo_factory("p", built), strategy=RestartStrategy.ONE_FOR_ALL)
    for name in ("a", "b", "c"):
        orch.add_child(name, "p", echo_factory(name, built))
    async with orch.open() as system:
        await system.spawn("p")
        handles = [await system.spawn(name) for name in ("a", "b", "c")]
        with pytest.raises(ModelOverloaded):
            await handles[2].send_message("fail")
        await trio.testing.wait_all_tasks_blocked()
        after = [
            (e.kind, e.agent)
            for e in events
            if e.kind in ("agent_suspended", "agent_restarted", "agent_spawned")
        ][4:]
        assert after == [
            ("agent_suspended", "p/b"),  # youngest first, one at a time
            ("agent_suspended", "p/a"),
            ("agent_restarted", "p/c"),
            ("agent_spawned", "p/a"),  # then everything again in start order
            ("agent_spawned", "p/b"),
            ("agent_spawned", "p/c"),
        ]
    assert built == ["p", "a", "b", "c", "a", "b", "c"]


async def test_a_graceful_close_ends_children_youngest_first() -> None:
    events: list[Event] = []
    orch = AgentOrchestrator(event_sink=events.append)
    orch.add_agent("p", echo_factory("p"))
    for name in ("c1", "c2", "c3"):
        orch.add_child(name, "p", echo_factory(name))
    async with orch.open() as system:
        parent = await system.spawn("p")
        children = [await system.spawn(name) for name in ("c1", "c3", "c2")]  # start order
        queued = children[0].send_message_nowait("still served")
        final = await parent.aclose()
        assert final.stop_reason is StopReason.STOP
        assert (await queued.wait()).final_text == "c1:still served"
    ended = [(e.agent, e.status) for e in events if e.kind == "agent_ended"]  # type: ignore[attr-defined]
    assert ended == [
        ("p/c2", "completed"),
        ("p/c3", "completed"),
        ("p/c1", "completed"),
        ("p", "completed"),
    ]


async def test_a_factory_that_fails_at_a_restart_is_a_failure() -> None:
    calls = 0
    inner = echo_factory("f")

    def factory() -> Agent:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("no model configured")
        return inner()

    events: list[Event] = []
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(), backoff=Backoff.none(), event_sink=events.append
    )
    orch.add_agent("f", factory)
    async with orch.open() as system:
        handle = await system.spawn("f")
        failing = handle.send_message_nowait("fail")
        queued = handle.send_message_nowait("later")
        with pytest.raises(ModelOverloaded):
            await failing.wait()
        # the rebuild fails; RuntimeError is not retryable, so the supervisor stops the agent
        with pytest.raises(AgentStopped) as info:
            await queued.wait()
        assert isinstance(info.value.__cause__, RuntimeError)
        assert handle.status is AgentStatus.FAILED
    decided = [e.action for e in events if e.kind == "supervisor_decided"]  # type: ignore[attr-defined]
    assert decided == ["restart", "stop"]


def test_lifecycle_replies_are_agent_errors() -> None:
    assert issubclass(AgentCancelled, AgentError)
    assert issubclass(AgentStopped, AgentError)


# --------------------------------------------------------------------------- supervision.rst


async def test_the_default_supervisor_stops_a_parent_whose_child_escalated() -> None:
    events: list[Event] = []
    orch = AgentOrchestrator(supervisor=DefaultSupervisor(max_restarts=0), event_sink=events.append)
    orch.add_agent("lead", echo_factory("lead"))
    orch.add_child("r", "lead", echo_factory("r"))
    orch.add_child("w1", "r", echo_factory("w1"))
    orch.add_child("w2", "r", echo_factory("w2"))
    async with orch.open() as system:
        handles = {name: await system.spawn(name) for name in orch.names()}
        serving = handles["w2"].send_message_nowait("hang")
        waiting = handles["w2"].send_message_nowait("later")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ModelOverloaded):  # limit 0: the failure escalates at once
            await handles["w1"].send_message("fail")
        # w1's escalation tears w2 down: its run is answered then, naming w1
        with pytest.raises(
            AgentCancelled, match="agent 'lead/r/w1' failed and its failure escalated to 'lead/r'"
        ):
            await serving.wait()
        # r fails with ChildFailed, which is not retryable: the default policy stops r
        with pytest.raises(AgentStopped, match="stopped with its parent 'lead/r'"):
            await waiting.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert {name: h.status for name, h in handles.items()} == {
            "lead": AgentStatus.RUNNING,  # the escalation ended at r's supervisor
            "r": AgentStatus.FAILED,
            "w1": AgentStatus.FAILED,
            "w2": AgentStatus.FAILED,
        }
        assert (await handles["lead"].send_message("still here")).final_text == "lead:still here"
    decided = [
        (e.agent, e.action, e.limit_exceeded)  # type: ignore[attr-defined]
        for e in events
        if e.kind == "supervisor_decided"
    ]
    assert decided == [("lead/r/w1", "escalate", True), ("lead/r", "stop", False)]
    failed = [e.error.type for e in events if e.kind == "agent_failed"]  # type: ignore[attr-defined]
    assert failed == ["ModelOverloaded", "ChildFailed"]


def test_names_are_checked() -> None:
    orch = AgentOrchestrator()
    for bad in ("", "a/b"):
        with pytest.raises(InvalidArgumentError, match="without '/'"):
            orch.add_agent(bad, echo_factory("x"))
    assert orch.names() == []


async def test_siblings_are_restarting_during_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(), backoff=Backoff(initial=10.0, jitter=False)
    )
    orch.add_agent("p", echo_factory("p"), strategy=RestartStrategy.ONE_FOR_ALL)
    for name in ("a", "b"):
        orch.add_child(name, "p", echo_factory(name))
    async with orch.open() as system:
        await system.spawn("p")
        a = await system.spawn("a")
        b = await system.spawn("b")
        with pytest.raises(ModelOverloaded):
            await b.send_message("fail")
        await trio.sleep(5)
        assert (a.status, b.status) == (AgentStatus.RESTARTING, AgentStatus.RESTARTING)
        await trio.sleep(6)
        assert (a.status, b.status) == (AgentStatus.RUNNING, AgentStatus.RUNNING)


async def test_request_and_restart_events(autojump_clock: trio.testing.MockClock) -> None:
    events: list[Event] = []
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(),
        backoff=Backoff(initial=2.0, jitter=False),
        event_sink=events.append,
    )
    orch.add_agent("a", echo_factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        await handle.send_message("ok")
        with pytest.raises(ModelOverloaded):
            await handle.send_message("fail")
        await handle.send_message("again")
    seen = [
        (
            e.kind,
            e.time,
            getattr(e, "request", None),
            getattr(getattr(e, "error", None), "type", None),
        )
        for e in events
        if not e.kind.startswith(("run_", "turn_", "model_"))
    ]
    assert seen == [
        ("agent_spawned", 0.0, None, None),
        ("request_received", 0.0, 1, None),
        ("request_replied", 0.0, 1, None),
        ("request_received", 0.0, 2, None),
        ("request_replied", 0.0, 2, "ModelOverloaded"),
        ("agent_failed", 0.0, None, "ModelOverloaded"),
        ("supervisor_decided", 0.0, None, None),
        ("agent_restarted", 2.0, None, None),  # after the backoff
        ("agent_spawned", 2.0, None, None),
        ("request_received", 2.0, 3, None),
        ("request_replied", 2.0, 3, None),
        ("agent_ended", 2.0, None, "AgentCancelled"),
    ]


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt / SystemExit without risking the test session."""


async def test_a_base_exception_in_an_agent_propagates_and_the_request_is_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @tool
    async def interrupt() -> str:
        """Raise a BaseException."""
        raise _Interrupt

    def build() -> Agent:
        return Agent(ScriptedModel([tool_call("interrupt"), text("never")]), tools=[interrupt])

    events: list[Event] = []
    orch = AgentOrchestrator(supervisor=DefaultSupervisor(), event_sink=events.append)
    orch.add_agent("a", build)
    pending = None
    with pytest.raises(_Interrupt):  # alone: not in a group, not wrapped in ChildFailed
        async with orch.open() as system:
            handle = await system.spawn("a")
            pending = handle.send_message_nowait("go")
            await trio.sleep(10)
    assert pending is not None and pending.done
    with pytest.raises(AgentCancelled, match="interrupted by _Interrupt") as info:
        await pending.wait()
    assert isinstance(info.value.__cause__, _Interrupt)
    assert handle.status is AgentStatus.CANCELLED
    assert not [e for e in events if e.kind in ("agent_failed", "supervisor_decided")]


async def test_a_registration_overrides_the_defaults(
    autojump_clock: trio.testing.MockClock,
) -> None:
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(max_restarts=3), backoff=Backoff(initial=1.0, jitter=False)
    )
    orch.add_agent("fragile", echo_factory("fragile"), max_restarts=0)
    orch.add_agent("patient", echo_factory("patient"), backoff=Backoff(initial=5.0, jitter=False))
    with pytest.raises(ChildFailed, match="'fragile'"):
        async with orch.open() as system:
            patient = await system.spawn("patient")
            with pytest.raises(ModelOverloaded):
                await patient.send_message("fail")
            start = trio.current_time()
            await patient.send_message("back")
            assert trio.current_time() - start == pytest.approx(5.0)  # its own backoff
            fragile = await system.spawn("fragile")
            with pytest.raises(ModelOverloaded):  # its own limit: escalates at once
                await fragile.send_message("fail")
            await trio.sleep(100)


async def test_an_agent_that_completed_can_be_spawned_again() -> None:
    built: list[str] = []
    orch = AgentOrchestrator()
    orch.add_agent("a", echo_factory("a", built))
    async with orch.open() as system:
        first = await system.spawn("a")
        await first.aclose()
        assert first.status is AgentStatus.COMPLETED
        again = await system.spawn("a")
        assert (await again.send_message("hi")).final_text == "a:hi"
        assert again.status is AgentStatus.RUNNING
    assert built == ["a", "a"]
