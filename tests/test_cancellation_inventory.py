"""Outside cancellation, entry point by entry point: what leaves each is one bare trio.Cancelled.

Rule 1 of the cancellation contract (docs/cancellation.rst) says that a scope cancelled around
any public entry point gets back exactly ``trio.Cancelled`` — never an exception group — so
that ``except trio.Cancelled`` works and so that nothing between the cut-off work and the
cancelled scope mistakes the cancellation for something else. The scope that was cancelled
would catch a ``BaseExceptionGroup([Cancelled])`` too (trio splits the ``Cancelled`` out of
it), which is why these tests look at the exception *at the call site*, inside the scope:
``type(exc) is trio.Cancelled``.

Every case cancels the work while it is really in the middle of something (a model call that
hangs, a specialist three levels down, a full queue, an HTTP request the fake server holds
open) and checks that it was. :func:`test_every_async_entry_point_has_a_case` enumerates the
coroutine functions, async context managers and async iterators exported by
``trio_agents``, ``trio_agents.testing`` and ``trio_agents.models`` and fails when one has no
case here.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentCancelled,
    AgentOrchestrator,
    AgentResult,
    AgentSpec,
    AgentStatus,
    ApprovalDecision,
    AssistantMessage,
    Backoff,
    DelegationFinished,
    Delegator,
    Event,
    EventLog,
    ModelOverloaded,
    ModelRequest,
    ModelRunner,
    RateLimitedModel,
    RateLimiter,
    RetryPolicy,
    RunFinished,
    StopReason,
    ToolCallBlock,
    ToolContext,
    ToolFinished,
    ToolResultMessage,
    Toolset,
    TurnStarted,
    UserMessage,
    execute_tool_calls,
    tool,
)
from trio_agents._cancel import only_cancelled, reraise_cancelled
from trio_agents.testing import (
    Fault,
    FaultPlan,
    FaultyModel,
    FaultyTool,
    FunctionModel,
    ScriptedModel,
    WorkModel,
    fail,
    hang,
    text,
    tool_call,
)
from trio_agents.testing._models import FunctionResult

REASON = "inventory cut-off"
REQUEST = ModelRequest(messages=[UserMessage.text("go")])


# --------------------------------------------------------------------------- the harness


async def cut_off(
    work: Callable[[], Awaitable[object]],
    *,
    busy: Callable[[], Awaitable[object]] = trio.testing.wait_all_tasks_blocked,
) -> BaseException:
    """Start ``work``, wait until ``busy()`` returns (it is mid-work), cancel the scope around
    it, and return the exception that left ``work`` — at the call site, before any scope
    could catch or unwrap it. Fails when ``work`` finished before it was cut off."""
    left: list[BaseException] = []
    finished: list[object] = []

    async def call() -> None:
        try:
            finished.append(await work())
        except BaseException as exc:
            left.append(exc)
            raise

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await busy()
            assert not finished, f"the work finished before it was cut off: {finished}"
            scope.cancel(reason=REASON)
    assert scope.cancelled_caught
    assert not finished
    (exc,) = left
    return exc


async def cut_off_before(work: Callable[[], Awaitable[object]]) -> BaseException:
    """Run ``work`` in a scope that is already cancelled; return what left it."""
    with trio.CancelScope() as scope:
        scope.cancel(reason=REASON)
        try:
            await work()
        except BaseException as exc:
            caught = exc
        else:
            pytest.fail("the work ran to the end in a cancelled scope")
    assert scope.cancelled_caught is False  # the exception was taken above, not by the scope
    return caught


def bare(exc: BaseException) -> None:
    """The exception is exactly trio.Cancelled (not a subclass, not a group), with our reason."""
    assert type(exc) is trio.Cancelled, f"{type(exc).__name__}: {exc!r}"
    assert exc.reason == REASON


def task_names(task: trio.lowlevel.Task) -> list[str]:
    names: list[str] = []
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            names.append(child.name)
            names.extend(task_names(child))
    return names


async def hanging_tool() -> str:
    """Never returns."""
    await trio.sleep_forever()
    raise AssertionError("unreachable")


async def nursery_tool() -> str:
    """Runs two waits in its own nursery and lets trio's group out, as a careless tool may."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep_forever)
        nursery.start_soon(trio.sleep_forever)
    return "never"


HANGS = tool(hanging_tool, name="hangs")
NURSERY = tool(nursery_tool, name="nursery")


def call_of(name: str, call_id: str = "c1") -> ToolCallBlock:
    return ToolCallBlock(id=call_id, name=name, arguments={})


# --------------------------------------------------------------------------- agents


@pytest.mark.parametrize("stream", [False, True], ids=["request", "stream"])
async def test_agent_run_mid_model_call(stream: bool) -> None:
    model = ScriptedModel([hang()])
    agent = Agent(model, stream=stream)
    bare(await cut_off(lambda: agent.run("go")))
    assert len(model.requests) == 1
    assert agent.last_result is not None
    assert agent.last_result.stop_reason is StopReason.ABORTED


async def test_agent_resume_mid_approved_tool() -> None:
    hangs_with_approval = tool(hanging_tool, name="hangs", requires_approval=True)
    model = ScriptedModel([tool_call("hangs", id="c1"), text("never")])
    agent = Agent(model, tools=[hangs_with_approval])
    waiting = await agent.run("go")
    assert waiting.stop_reason is StopReason.APPROVAL_REQUIRED
    decision = ApprovalDecision(call_id="c1", approved=True)
    bare(await cut_off(lambda: agent.resume([decision])))
    result = agent.last_result
    assert result is not None
    assert result.stop_reason is StopReason.ABORTED
    last = result.messages[-1]
    assert isinstance(last, ToolResultMessage)
    assert [r.content for r in last.results] == ["tool call interrupted: cancelled"]


async def test_agent_resume_mid_model_call() -> None:
    approved = tool(_returns_ok, name="ok", requires_approval=True)
    model = ScriptedModel([tool_call("ok", id="c1"), hang()])
    agent = Agent(model, tools=[approved])
    await agent.run("go")
    bare(await cut_off(lambda: agent.resume([ApprovalDecision(call_id="c1", approved=True)])))
    assert len(model.requests) == 2
    assert agent.last_result is not None
    assert agent.last_result.stop_reason is StopReason.ABORTED


async def _returns_ok() -> str:
    return "ok"


async def test_agent_run_mid_parallel_tools() -> None:
    model = ScriptedModel([tool_call("hangs") + tool_call("hangs"), text("never")])
    events: list[Event] = []
    agent = Agent(model, tools=[HANGS], event_sink=events.append)
    bare(await cut_off(lambda: agent.run("go")))
    result = agent.last_result
    assert result is not None
    assert result.stop_reason is StopReason.ABORTED
    assert result.usage.requests == 1
    last = result.messages[-1]
    assert isinstance(last, ToolResultMessage)
    assert [r.content for r in last.results] == ["tool call interrupted: cancelled"] * 2
    finished = [e.result.content for e in events if isinstance(e, ToolFinished)]
    assert finished == ["tool 'hangs' was cancelled"] * 2


@pytest.mark.parametrize("calls", [1, 2], ids=["one-call", "parallel-calls"])
async def test_agent_run_with_a_tool_that_lets_a_group_out(calls: int) -> None:
    # A tool whose own nursery is cancelled raises BaseExceptionGroup([Cancelled, Cancelled]);
    # the agent still ends ABORTED and its caller still gets the bare Cancelled.
    step = tool_call("nursery")
    for _ in range(calls - 1):
        step = step + tool_call("nursery")
    events: list[Event] = []
    agent = Agent(ScriptedModel([step, text("never")]), tools=[NURSERY], event_sink=events.append)
    bare(await cut_off(lambda: agent.run("go")))
    assert agent.last_result is not None
    assert agent.last_result.stop_reason is StopReason.ABORTED
    finished = [e.result.content for e in events if isinstance(e, ToolFinished)]
    assert finished == ["tool 'nursery' was cancelled"] * calls


async def test_agent_run_with_a_model_that_lets_a_group_out() -> None:
    class NurseryModel:
        model_id = "nursery"

        async def request(self, request: ModelRequest) -> AssistantMessage:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
            raise AssertionError("unreachable")

        def stream(self, request: ModelRequest) -> Any:
            raise NotImplementedError

    agent = Agent(NurseryModel())
    bare(await cut_off(lambda: agent.run("go")))
    assert agent.last_result is not None
    assert agent.last_result.stop_reason is StopReason.ABORTED


# --------------------------------------------------------------------------- tools


async def test_execute_tool_calls_with_parallel_calls() -> None:
    calls = [call_of("hangs", "c1"), call_of("hangs", "c2"), call_of("nursery", "c3")]
    events: list[Event] = []
    toolset = Toolset([HANGS, NURSERY])
    exc = await cut_off(
        lambda: execute_tool_calls(toolset, calls, agent="a", event_sink=events.append)
    )
    bare(exc)
    assert len([e for e in events if isinstance(e, ToolFinished)]) == 3


async def test_tool_call_and_toolset_execute() -> None:
    ctx = ToolContext(agent="a", call=call_of("hangs"))
    bare(await cut_off(lambda: HANGS.call({}, ctx)))
    bare(await cut_off(lambda: Toolset([HANGS]).execute(call_of("hangs"), ctx)))
    bare(await cut_off(lambda: Toolset([NURSERY]).execute(call_of("nursery"), ctx)))


async def test_faulty_tool_execute() -> None:
    ctx = ToolContext(agent="a", call=call_of("hangs"))
    faulty = FaultyTool(HANGS, FaultPlan(at={0: Fault.hang()}))
    bare(await cut_off(lambda: faulty.execute(call_of("hangs"), ctx)))


# --------------------------------------------------------------------------- delegation

POLICIES = ["isolate", "fail_fast", "retry"]


def chain(depth: int) -> tuple[AgentSpec, list[AgentSpec], list[str]]:
    """lead -> s1 -> ... -> s<depth>; every specialist but the last delegates."""
    names = [f"s{i}" for i in range(1, depth + 1)]
    pool = [
        AgentSpec(name=n, instructions=n, tools=("delegate",) if i < depth else ())
        for i, n in enumerate(names, start=1)
    ]
    return AgentSpec(name="lead", instructions="lead"), pool, names


def chain_model(names: list[str], policy: str) -> FunctionModel:
    """Each delegates to the next; the last hangs (under retry: fails once first)."""
    nxt = dict(zip(["lead", *names], names, strict=False))
    last_attempts: list[float] = []

    def respond(request: ModelRequest) -> FunctionResult:
        who = request.system or ""
        if who in nxt and isinstance(request.messages[-1], UserMessage):
            return tool_call("delegate", {"specialist": nxt[who], "subtask": f"for {who}"})
        if who == names[-1]:
            last_attempts.append(trio.current_time())
            if policy == "retry" and len(last_attempts) == 1:
                return fail(ModelOverloaded("busy"))
            return hang()
        raise AssertionError(f"unexpected request from {who}: {request.messages[-1]}")

    return FunctionModel(respond, model_id="team")


def delegator_for(policy: str, lead: AgentSpec, pool: list[AgentSpec]) -> Delegator:
    return Delegator(
        lead, pool, failure_policy=policy, retry_backoff=Backoff(initial=2, jitter=False)
    )


def runner_for(model: FunctionModel) -> ModelRunner:
    return ModelRunner(model, retry=RetryPolicy(max_attempts=1))


async def busy_for_a_while() -> None:
    # Under retry the last specialist fails at t=0, waits its 2 s backoff and hangs from
    # t=2; every other case hangs from t=0. At t=10 every case is mid-work.
    await trio.sleep(10)


def check_cut_off_tree(
    events: list[Event], names: list[str], policy: str, *, main: AgentResult | None = None
) -> None:
    paths = ["/".join(["lead", *names[:i]]) for i in range(1, len(names) + 1)]
    runs = {e.agent: e.result for e in events if isinstance(e, RunFinished)}
    assert set(runs) == {"lead", *paths}
    for path, result in runs.items():
        assert result.stop_reason is StopReason.ABORTED, (path, result.stop_reason)
        assert result.error is None
        if path == paths[-1]:
            assert result.usage.requests == 0  # cut off in its first model call
        else:
            assert result.usage.requests == 1, path  # the partial usage is kept
            last = result.messages[-1]
            assert isinstance(last, ToolResultMessage), path
            assert last.results[0].content == "tool call interrupted: cancelled"
    if main is not None:
        assert main == runs["lead"]
    delegations = {e.agent: e for e in events if isinstance(e, DelegationFinished)}
    assert set(delegations) == set(paths)
    for path, finished in delegations.items():
        assert finished.cancelled, path
        assert finished.error == f"Cancelled: {REASON}", path
        # A record's usage covers its specialist and everything under it.
        assert finished.usage.requests == len(paths) - paths.index(path) - 1, path
    expected_attempts = 2 if policy == "retry" else 1
    assert delegations[paths[-1]].attempts == expected_attempts
    tools = [e.result.content for e in events if isinstance(e, ToolFinished)]
    assert tools == ["tool 'delegate' was cancelled"] * len(names)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("depth", [1, 2, 3])
async def test_delegator_run(
    depth: int, policy: str, autojump_clock: trio.testing.MockClock
) -> None:
    lead, pool, names = chain(depth)
    model = chain_model(names, policy)
    events: list[Event] = []
    here = trio.lowlevel.current_task()
    running: list[str] = []

    async def busy() -> None:
        await busy_for_a_while()
        running.extend(task_names(here))

    delegator = delegator_for(policy, lead, pool)
    exc = await cut_off(
        lambda: delegator.run("go", runner=runner_for(model), event_sink=events.append),
        busy=busy,
    )
    bare(exc)
    assert f"delegate lead/{'/'.join(names)}" in running  # the deepest specialist was working
    assert task_names(here) == []
    check_cut_off_tree(events, names, policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("depth", [1, 2, 3])
async def test_agent_with_a_delegating_executor(
    depth: int, policy: str, autojump_clock: trio.testing.MockClock
) -> None:
    lead, pool, names = chain(depth)
    model = chain_model(names, policy)
    events: list[Event] = []
    executor = delegator_for(policy, lead, pool).executor(
        runner=runner_for(model), event_sink=events.append
    )
    agent = Agent(
        model,
        name="lead",
        instructions="lead",
        tools=executor,
        event_sink=events.append,
        retry=RetryPolicy(max_attempts=1),
    )
    bare(await cut_off(lambda: agent.run("go"), busy=busy_for_a_while))
    check_cut_off_tree(events, names, policy, main=agent.last_result)
    # The agent can run again (rule 3).
    assert not agent.running


@pytest.mark.parametrize("depth", [1, 2, 3])
async def test_delegator_run_cut_off_in_a_retry_backoff(
    depth: int, autojump_clock: trio.testing.MockClock
) -> None:
    # The deepest specialist failed at t=0 and waits out its 2 s backoff: cut off at t=1.
    lead, pool, names = chain(depth)
    model = chain_model(names, "retry")
    events: list[Event] = []
    delegator = delegator_for("retry", lead, pool)
    exc = await cut_off(
        lambda: delegator.run("go", runner=runner_for(model), event_sink=events.append),
        busy=partial(trio.sleep, 1),
    )
    bare(exc)
    deepest = next(e for e in events if isinstance(e, DelegationFinished))
    assert deepest.agent == "/".join(["lead", *names])
    assert deepest.cancelled
    assert deepest.attempts == 1
    runs = [e.result.stop_reason for e in events if isinstance(e, RunFinished)]
    # The deepest's one attempt failed (ERROR); every caller above it was cut off.
    assert runs == [StopReason.ERROR] + [StopReason.ABORTED] * depth


def fan_out_model() -> FunctionModel:
    """lead -> (a, b) in parallel; a -> (c, d) in parallel; b, c and d hang."""
    fans = {"lead": ("a", "b"), "a": ("c", "d")}

    def respond(request: ModelRequest) -> FunctionResult:
        who = request.system or ""
        if who in fans and isinstance(request.messages[-1], UserMessage):
            first, second = fans[who]
            return tool_call("delegate", {"specialist": first, "subtask": "x"}) + tool_call(
                "delegate", {"specialist": second, "subtask": "y"}
            )
        return hang()

    return FunctionModel(respond, model_id="team")


@pytest.mark.parametrize("policy", POLICIES)
async def test_delegator_run_with_parallel_delegations(
    policy: str, autojump_clock: trio.testing.MockClock
) -> None:
    pool = [
        AgentSpec(name=n, instructions=n, tools=("delegate",) if n == "a" else ()) for n in "abcd"
    ]
    lead = AgentSpec(name="lead", instructions="lead")
    events: list[Event] = []
    delegator = delegator_for(policy, lead, pool)
    exc = await cut_off(
        lambda: delegator.run("go", runner=runner_for(fan_out_model()), event_sink=events.append),
        busy=busy_for_a_while,
    )
    bare(exc)
    runs = {e.agent: e.result.stop_reason for e in events if isinstance(e, RunFinished)}
    assert runs == dict.fromkeys(
        ["lead", "lead/a", "lead/b", "lead/a/c", "lead/a/d"], StopReason.ABORTED
    )
    finished = {e.agent: e.error for e in events if isinstance(e, DelegationFinished)}
    assert finished == dict.fromkeys(
        ["lead/a", "lead/b", "lead/a/c", "lead/a/d"], f"Cancelled: {REASON}"
    )
    tools = [e.result.content for e in events if isinstance(e, ToolFinished)]
    assert tools == ["tool 'delegate' was cancelled"] * 4


@pytest.mark.parametrize("policy", POLICIES)
async def test_delegating_executor_execute(
    policy: str, autojump_clock: trio.testing.MockClock
) -> None:
    lead, pool, names = chain(2)
    model = chain_model(names, policy)
    executor = delegator_for(policy, lead, pool).executor(runner=runner_for(model))
    call = ToolCallBlock(id="d1", name="delegate", arguments={"specialist": "s1", "subtask": "x"})
    ctx = ToolContext(agent="lead", call=call)
    bare(await cut_off(lambda: executor.execute(call, ctx), busy=busy_for_a_while))
    (first, second) = executor.records()
    assert first.cancelled and second.cancelled


async def test_model_runner_run(autojump_clock: trio.testing.MockClock) -> None:
    model = FunctionModel(lambda request: hang())
    runner = ModelRunner(model)
    bare(await cut_off(lambda: runner.run(AgentSpec(name="a"), "go")))
    assert len(model.requests) == 1


# --------------------------------------------------------------------------- orchestrator


def hanging_agent() -> Agent:
    return Agent(ScriptedModel([hang()] * 5), name="slow")


def delegating_agent() -> Agent:
    lead, pool, names = chain(3)
    model = chain_model(names, "isolate")
    executor = Delegator(lead, pool).executor(runner=ModelRunner(model))
    return Agent(model, name="lead", instructions="lead", tools=executor)


def system_of(factory: Callable[[], Agent] = hanging_agent) -> AgentOrchestrator:
    orchestrator = AgentOrchestrator()
    orchestrator.add_agent("a", factory)
    return orchestrator


@pytest.mark.parametrize("factory", [hanging_agent, delegating_agent], ids=["plain", "delegating"])
async def test_orchestrator_open(factory: Callable[[], Agent]) -> None:
    orchestrator = system_of(factory)
    handles: list[Any] = []

    async def work() -> None:
        async with orchestrator.open() as system:
            handle = await system.spawn("a")
            handles.append(handle)
            pending = handle.send_message_nowait("go")
            handles.append(pending)
            await pending.wait()

    bare(await cut_off(work))
    handle, pending = handles
    assert handle.status is AgentStatus.CANCELLED
    assert pending.done
    with pytest.raises(AgentCancelled) as caught:
        await pending.wait()
    assert caught.value.reason == "cancelled from outside"
    assert caught.value.result is not None  # the partial run, cut off
    assert caught.value.result.stop_reason is StopReason.ABORTED


async def test_handle_send_and_wait(autojump_clock: trio.testing.MockClock) -> None:
    async with system_of(delegating_agent).open() as system:
        handle = await system.spawn("a")
        bare(await cut_off(lambda: handle.send_message("go")))
        bare(await cut_off(lambda: handle.send_messages([UserMessage.text("go")])))
        pending = handle.send_message_nowait("go")
        bare(await cut_off(pending.wait))
        bare(await cut_off(handle.wait_done))
        bare(await cut_off(handle.aclose))  # waits for the queue to drain: it never does
        system.cancel("done")


async def test_delegation_to_a_live_agent(autojump_clock: trio.testing.MockClock) -> None:
    # Cutting off the caller abandons the request; the live agent is not the caller's child
    # and keeps serving (delegation rule 22).
    def slow(request: ModelRequest) -> FunctionResult:
        return text("live done", delay=100)

    orchestrator = AgentOrchestrator()
    orchestrator.add_agent("live", lambda: Agent(FunctionModel(slow), name="live"))
    async with orchestrator.open() as system:
        handle = await system.spawn("live")
        lead = AgentSpec(name="lead", instructions="lead")
        model = FunctionModel(
            lambda request: tool_call("delegate", {"specialist": "live", "subtask": "x"})
        )
        events: list[Event] = []
        delegator = Delegator(lead, {}, handles={"live": handle})
        exc = await cut_off(
            lambda: delegator.run("go", runner=ModelRunner(model), event_sink=events.append),
            busy=busy_for_a_while,
        )
        bare(exc)
        (finished,) = [e for e in events if isinstance(e, DelegationFinished)]
        assert finished.cancelled
        assert handle.status is AgentStatus.RUNNING
        await handle.aclose()  # the abandoned request is served to the end
        assert handle.statistics().requests_served == 1


async def test_system_spawn() -> None:
    orchestrator = system_of()
    async with orchestrator.open() as system:
        bare(await cut_off_before(lambda: system.spawn("a")))
        # trio ends a task whose start was cancelled: the agent ended, and can come back.
        assert system.status("a") is AgentStatus.CANCELLED
        assert system.running() == []
        handle = await system.spawn("a")
        assert handle.status is AgentStatus.RUNNING
        system.cancel("done")


async def test_handle_send_on_a_full_queue() -> None:
    orchestrator = AgentOrchestrator(channel_buffer=1)
    orchestrator.add_agent("a", hanging_agent)
    async with orchestrator.open() as system:
        handle = await system.spawn("a")
        handle.send_message_nowait("served")
        await trio.testing.wait_all_tasks_blocked()
        handle.send_message_nowait("queued")
        bare(await cut_off(lambda: handle.send_message("blocked by backpressure")))
        system.cancel("done")


# --------------------------------------------------------------------------- infrastructure


async def test_subscription_waits() -> None:
    log = EventLog()
    subscription = log.subscribe()
    bare(await cut_off(subscription.receive))
    bare(await cut_off(lambda: subscription.__anext__()))
    bare(await cut_off(subscription.receive_batch))
    log(TurnStarted(time=0.0, agent="a", turn=1))
    with trio.CancelScope() as scope:  # an event is buffered: still a checkpoint
        scope.cancel(reason=REASON)
        with pytest.raises(trio.Cancelled):
            await subscription.receive_batch()
    assert subscription.receive_batch_nowait() == [TurnStarted(time=0.0, agent="a", turn=1)]

    async def iterate() -> None:
        async with log.subscribe() as sub:
            async for _ in sub:
                pass

    bare(await cut_off(iterate))
    with trio.CancelScope() as scope:
        scope.cancel(reason=REASON)
        await subscription.aclose()  # closing never waits, so it is never cut off
    assert log.subscribers == 0


async def test_rate_limiter_acquire() -> None:
    limiter = RateLimiter(max_concurrent=1)

    async def second() -> None:
        async with limiter.acquire():
            raise AssertionError("the limiter let a second holder in")

    async with limiter.acquire():
        bare(await cut_off(second))
    assert limiter.statistics().waiting == 0


async def test_rate_limited_model() -> None:
    inner = FunctionModel(lambda request: hang())
    limited = RateLimitedModel(inner, RateLimiter(max_concurrent=1))
    bare(await cut_off(lambda: limited.request(REQUEST)))

    async def stream() -> None:
        async with limited.stream(REQUEST) as events:
            async for _ in events:
                pass

    bare(await cut_off(stream))
    assert len(inner.requests) == 2


# --------------------------------------------------------------------------- test doubles


def _models() -> dict[str, Callable[[], Any]]:
    return {
        "ScriptedModel": lambda: ScriptedModel([hang()]),
        "FunctionModel": lambda: FunctionModel(lambda request: hang()),
        "FaultyModel": lambda: FaultyModel(
            ScriptedModel(["unused"]), FaultPlan(at={0: Fault.hang()})
        ),
        "WorkModel": lambda: WorkModel(),
    }


WORK_REQUEST = ModelRequest(messages=[UserMessage.text("hang")])


@pytest.mark.parametrize("name", sorted(_models()))
async def test_test_double_request_and_stream(name: str) -> None:
    bare(await cut_off(lambda: _models()[name]().request(WORK_REQUEST)))

    async def stream() -> None:
        async with _models()[name]().stream(WORK_REQUEST) as events:
            async for _ in events:
                pass

    bare(await cut_off(stream))


# --------------------------------------------------------------------------- providers


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_provider_request_and_stream(provider: str) -> None:
    pytest.importorskip(provider)
    from fake_llm_server import Reply, open_fake_llm_server, sse_data, sse_events

    async with open_fake_llm_server() as server:
        if provider == "openai":
            from trio_agents.models.openai import OpenAIModel

            def make() -> Any:
                return OpenAIModel("gpt-test", base_url=server.url + "/v1", api_key="k")

            first_event = sse_data(
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "gpt-test",
                    "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
                },
                done=False,
            )
        else:
            from trio_agents.models.anthropic import AnthropicModel

            def make() -> Any:
                return AnthropicModel("claude-test", base_url=server.url, api_key="k")

            first_event = sse_events(
                (
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": "m",
                            "type": "message",
                            "role": "assistant",
                            "model": "claude-test",
                            "content": [],
                            "stop_reason": None,
                            "usage": {"input_tokens": 1, "output_tokens": 0},
                        },
                    },
                )
            )
        with trio.fail_after(30):  # real sockets: a hang here is a failure, not a stuck suite
            model = make()
            async with model:
                server.queue(Reply(hang_after=0))
                bare(await cut_off(lambda: model.request(REQUEST), busy=server.hanging.wait))
                await server.disconnected.wait()
                server.hanging = trio.Event()
                server.disconnected = trio.Event()
                server.queue(Reply(sse=first_event, hang_after=1))

                async def stream() -> None:
                    async with model.stream(REQUEST) as events:
                        async for _ in events:
                            pass

                bare(await cut_off(stream, busy=server.hanging.wait))
                await server.disconnected.wait()

            async def block() -> None:
                async with make():
                    await trio.sleep_forever()

            bare(await cut_off(block))
            assert len(server.requests) == 2


async def test_distributed_remote_runs_and_the_fake_backend(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_agents import dump
    from trio_agents.distributed import FakeBackend, open_cluster

    async def open_and_block() -> None:
        async with FakeBackend.open(["h1"]) as backend, open_cluster(backend) as cluster:
            cluster.factory("x", "remote_agents:echo")()  # a placement with cleanup to do
            await trio.sleep_forever()

    bare(await cut_off(open_and_block))
    hang = dump([UserMessage.text("hang")])
    async with FakeBackend.open(["h1"]) as backend, open_cluster(backend) as cluster:
        agent = cluster.factory("a", "remote_agents:echo")()
        bare(await cut_off(lambda: agent.run("hang")))
        assert backend.cancels == ["a#1"]  # the remote run was cancelled on its host
        bare(await cut_off_before(lambda: backend.spawn("h1", "b", {"factory": "x:y"})))
        await backend.spawn("h1", "b", {"factory": "remote_agents:echo"})
        bare(await cut_off(lambda: backend.request("h1", "b", hang)))
        await backend.spawn("h1", "s", {"factory": "remote_agents:stubborn"})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.request, "h1", "s", hang)
            await trio.testing.wait_all_tasks_blocked()
            bare(await cut_off(lambda: backend.cancel("h1", "s")))  # waits on a stubborn run
        bare(await cut_off_before(lambda: backend.running("h1")))
        bare(await cut_off_before(lambda: backend.kill("h1", "b")))
        bare(await cut_off(lambda: backend.wait_host_lost("h1")))


@pytest.mark.ray
@pytest.mark.usefixtures("ray_cluster")
async def test_ray_backend_on_a_real_cluster() -> None:
    from trio_agents import dump
    from trio_agents.distributed import open_cluster
    from trio_agents.distributed.ray import RayBackend

    async def open_and_block() -> None:
        async with RayBackend.open(["h1"]):
            await trio.sleep_forever()

    hang = dump([UserMessage.text("hang")])
    with trio.fail_after(60):  # real processes: a hang here is a failure
        bare(await cut_off(open_and_block))
        async with RayBackend.open(["h1"]) as backend, open_cluster(backend) as cluster:
            agent = cluster.factory("a", "remote_agents:echo")()
            bare(await cut_off(lambda: agent.run("hang"), busy=lambda: _ray_running(backend, 1)))
            bare(await cut_off_before(lambda: backend.spawn("h1", "b", {"factory": "x:y"})))
            await backend.spawn("h1", "b", {"factory": "remote_agents:echo"})
            bare(await cut_off(lambda: backend.request("h1", "b", hang)))
            await backend.spawn("h1", "s", {"factory": "remote_agents:stubborn"})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(backend.request, "h1", "s", hang)
                await _ray_running(backend, 1)
                bare(await cut_off(lambda: backend.cancel("h1", "s")))  # a stubborn run
                nursery.cancel_scope.cancel()
            bare(await cut_off_before(lambda: backend.running("h1")))
            bare(await cut_off(lambda: backend.wait_running("h1", 5)))  # never that many
        async with RayBackend.open(["h1"]) as backend:
            bare(await cut_off_before(lambda: backend.kill("h1", "b")))
            bare(await cut_off(lambda: backend.wait_host_lost("h1")))


async def test_mailbox_send_receive_and_broadcast() -> None:
    from trio_agents import Mailbox

    mailbox = Mailbox(capacity=1, names=["a", "b"])
    bare(await cut_off(lambda: mailbox.receive("a")))  # nothing to receive
    mailbox.send_nowait("a", "first")
    bare(await cut_off(lambda: mailbox.send("a", "second")))  # full: backpressure
    bare(await cut_off(lambda: mailbox.broadcast("third")))  # "a" is full
    # What was cut off was not delivered to "a" (it holds its first message only), and the
    # mailbox still works.
    assert mailbox.statistics("a").queued == 1
    assert mailbox.receive_nowait("a") == "first"
    mailbox.send_nowait("a", "again")
    assert await mailbox.receive("a") == "again"


async def _ray_running(backend: Any, count: int) -> None:
    await backend.wait_running("h1", count)


# --------------------------------------------------------------------------- the inventory

MODULES = (
    "trio_agents",
    "trio_agents.testing",
    "trio_agents.models",
    "trio_agents.models.openai",
    "trio_agents.models.anthropic",
    "trio_agents.distributed",
    "trio_agents.distributed.ray",
    "trio_agents.patterns",
    "trio_agents.mcp",
    "trio_agents.otel",
    "trio_agents.live",
    "trio_agents.interop",
)

# Every async entry point and the case(s) that cut it off. Protocols (Model, ToolExecutor,
# AgentRunner) are covered through the library's implementations of them.
COVERED: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            f"RayBackend.{m}"
            for m in (
                "open",
                "spawn",
                "request",
                "cancel",
                "kill",
                "wait_host_lost",
                "running",
                "wait_running",
            )
        ),
        ("test_ray_backend_on_a_real_cluster",),
    ),
    **dict.fromkeys(
        (
            "open_cluster",
            "RemoteAgent.run",
            *(
                f"{cls}.{method}"
                for cls in ("Backend", "FakeBackend")
                for method in ("spawn", "request", "cancel", "kill", "wait_host_lost")
            ),
            "FakeBackend.open",
            "FakeBackend.running",
        ),
        ("test_distributed_remote_runs_and_the_fake_backend",),
    ),
    "Agent.run": (
        "test_agent_run_mid_model_call",
        "test_agent_run_mid_parallel_tools",
        "test_agent_run_with_a_tool_that_lets_a_group_out",
        "test_agent_run_with_a_model_that_lets_a_group_out",
        "test_agent_with_a_delegating_executor",
    ),
    **dict.fromkeys(
        ("Mailbox.send", "Mailbox.receive", "Mailbox.broadcast"),
        ("test_mailbox_send_receive_and_broadcast",),
    ),
    # Cases that live beside their feature's other tests ("module::test"; each checks the
    # exact type that leaves the entry point).
    "run_sequential": (
        "test_patterns_pipeline::test_outside_cancellation_of_sequential_is_bare",
        "test_patterns_shapes::test_outside_cancellation_is_bare_and_progress_keeps_partial_results",
    ),
    "run_parallel": (
        "test_patterns_pipeline::test_outside_cancellation_of_parallel_is_bare",
        "test_patterns_shapes::test_outside_cancellation_is_bare_and_progress_keeps_partial_results",
    ),
    **dict.fromkeys(
        ("Loop.run", "map_reduce", "vote", "review_loop", "debate", "tournament"),
        (
            "test_patterns_shapes::"
            "test_outside_cancellation_is_bare_and_progress_keeps_partial_results",
        ),
    ),
    "Swarm.run": (
        "test_patterns_swarm::test_outside_cancellation_is_bare_and_progress_keeps_partial_results",
    ),
    "Handoff.run": (
        "test_patterns_handoff::test_outside_cancellation_is_bare_and_keeps_partial_results",
    ),
    "open_mcp_toolset": (
        "test_mcp::test_outside_cancellation_of_open_mcp_toolset_is_a_bare_cancelled",
    ),
    "MCPToolset.execute": (
        "test_mcp::test_cancelling_a_call_reaches_the_server",
        "test_mcp::test_outside_cancellation_of_open_mcp_toolset_is_a_bare_cancelled",
    ),
    **dict.fromkeys(
        ("MCPToolset.wait_listings", "MCPToolset.wait_running", "MCPToolset.wait_status"),
        ("test_mcp::test_outside_cancellation_of_the_waits_is_a_bare_cancelled",),
    ),
    **dict.fromkeys(
        ("MCPAgent.run", "MCPAgent.resume"),
        ("test_mcp_agent::test_outside_cancellation_mid_call_is_a_bare_cancelled",),
    ),
    "serve_mcp_http": (
        "test_mcp::test_outside_cancellation_of_serve_mcp_http_is_a_bare_cancelled",
    ),
    "serve_mcp_stdio": (
        "test_mcp::test_outside_cancellation_of_serve_mcp_stdio_is_a_bare_cancelled",
    ),
    **dict.fromkeys(
        ("AsyncioAgent.run", "PydanticAIAgent.run", "open_asyncio_loop"),
        ("test_interop::test_pydantic_ai_cancelled_mid_run_from_trio",),
    ),
    "OpenAIAgentsAgent.run": ("test_interop::test_openai_agents_cancelled_mid_run_from_trio",),
    "AsyncioRunner.run": (
        "test_interop::test_asyncio_runner_cancelled_mid_run",
        "test_interop::test_a_delegator_cancelled_while_a_peer_specialist_runs",
    ),
    "follow": ("test_live::test_follow_shows_the_same_final_tree_as_a_replay_and_cancels_bare",),
    "Agent.resume": ("test_agent_resume_mid_approved_tool", "test_agent_resume_mid_model_call"),
    "RemoteAgent.resume": (
        "test_approval_remote::test_outside_cancellation_of_remote_resume_is_bare_and_reaches_the_host",
    ),
    "Model.request": ("test_test_double_request_and_stream", "test_provider_request_and_stream"),
    "Model.stream": ("test_test_double_request_and_stream", "test_provider_request_and_stream"),
    "Tool.call": ("test_tool_call_and_toolset_execute",),
    "ToolExecutor.execute": ("test_tool_call_and_toolset_execute",),
    "Toolset.execute": ("test_tool_call_and_toolset_execute",),
    "execute_tool_calls": ("test_execute_tool_calls_with_parallel_calls",),
    "Delegator.run": (
        "test_delegator_run",
        "test_delegator_run_cut_off_in_a_retry_backoff",
        "test_delegator_run_with_parallel_delegations",
        "test_delegation_to_a_live_agent",
    ),
    "DelegatingExecutor.execute": (
        "test_delegating_executor_execute",
        "test_agent_with_a_delegating_executor",
    ),
    "AgentRunner.run": ("test_model_runner_run",),
    "ModelRunner.run": ("test_model_runner_run", "test_delegator_run"),
    "Delegator.resume": (
        "test_approval_tree::test_outside_cancellation_of_resume_is_a_bare_cancelled",
    ),
    "ModelRunner.resume": (
        "test_approval_tree::test_outside_cancellation_of_resume_is_a_bare_cancelled",
    ),
    "AgentHandle.resume": (
        "test_approval_handles::test_outside_cancellation_of_handle_resume_is_a_bare_cancelled",
    ),
    "AgentOrchestrator.open": ("test_orchestrator_open",),
    "AgentSystem.spawn": ("test_system_spawn",),
    "AgentHandle.send_message": ("test_handle_send_and_wait", "test_handle_send_on_a_full_queue"),
    "AgentHandle.send_messages": ("test_handle_send_and_wait",),
    "AgentHandle.wait_done": ("test_handle_send_and_wait",),
    "AgentHandle.aclose": ("test_handle_send_and_wait",),
    "PendingReply.wait": ("test_handle_send_and_wait", "test_orchestrator_open"),
    "Subscription.receive": ("test_subscription_waits",),
    "Subscription.__anext__": ("test_subscription_waits",),
    "Subscription.receive_batch": ("test_subscription_waits",),
    "Subscription.__aenter__": ("test_subscription_waits",),
    "Subscription.aclose": ("test_subscription_waits",),
    "RateLimiter.acquire": ("test_rate_limiter_acquire",),
    "RateLimitedModel.request": ("test_rate_limited_model",),
    "RateLimitedModel.stream": ("test_rate_limited_model",),
    "ScriptedModel.request": ("test_test_double_request_and_stream",),
    "ScriptedModel.stream": ("test_test_double_request_and_stream",),
    "FunctionModel.request": ("test_test_double_request_and_stream",),
    "FunctionModel.stream": ("test_test_double_request_and_stream",),
    "FaultyModel.request": ("test_test_double_request_and_stream",),
    "FaultyModel.stream": ("test_test_double_request_and_stream",),
    "WorkModel.request": ("test_test_double_request_and_stream",),
    "WorkModel.stream": ("test_test_double_request_and_stream",),
    "FaultyTool.execute": ("test_faulty_tool_execute",),
    "OpenAIModel.request": ("test_provider_request_and_stream",),
    "OpenAIModel.stream": ("test_provider_request_and_stream",),
    "OpenAIModel.__aenter__": ("test_provider_request_and_stream",),
    "AnthropicModel.request": ("test_provider_request_and_stream",),
    "AnthropicModel.stream": ("test_provider_request_and_stream",),
    "AnthropicModel.__aenter__": ("test_provider_request_and_stream",),
    "RunJournal.run": ("test_journal::test_outside_cancellation_of_run_and_resume_is_bare",),
    "RunJournal.resume": ("test_journal::test_outside_cancellation_of_run_and_resume_is_bare",),
    **dict.fromkeys(
        ("RunJournal.run_delegator", "RunJournal.resume_delegator"),
        ("test_journal_tree::test_outside_cancellation_of_a_journaled_tree_is_bare",),
    ),
    **dict.fromkeys(
        ("RunJournal.run_pattern", "RunJournal.resume_pattern"),
        ("test_journal_patterns::test_outside_cancellation_of_a_journaled_pattern_is_bare",),
    ),
}


def _is_async(fn: object) -> bool:
    """A coroutine function, an async generator function, or a function annotated to return
    an async context manager (``Model.stream``, ``RateLimiter.acquire``)."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    returns = getattr(fn, "__annotations__", {}).get("return")
    return returns is not None and "AsyncContextManager" in str(returns)


def async_entry_points() -> set[str]:
    found: set[str] = set()
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an optional extra that is not installed
            continue
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                if not obj.__module__.startswith("trio_agents"):
                    continue
                for attr in dir(obj):
                    if attr.startswith("_") and attr not in ("__aenter__", "__anext__"):
                        continue
                    raw = inspect.getattr_static(obj, attr)
                    fn = raw.__func__ if isinstance(raw, classmethod | staticmethod) else raw
                    if _is_async(fn) or _is_async(getattr(fn, "__wrapped__", None)):
                        found.add(f"{name}.{attr}")
            elif callable(obj) and (_is_async(obj) or _is_async(getattr(obj, "__wrapped__", None))):
                found.add(name)
    return found


def test_every_async_entry_point_has_a_case() -> None:
    found = async_entry_points()
    optional = {n for n in COVERED if n.split(".")[0] in ("OpenAIModel", "AnthropicModel")}
    missing = sorted(found - set(COVERED))
    assert not missing, f"async entry points without an outside-cancellation case: {missing}"
    stale = sorted(set(COVERED) - found - optional)
    assert not stale, f"cases for names that are no longer exported: {stale}"
    for name, tests in COVERED.items():
        for test_name in tests:
            module_name, _, function = test_name.rpartition("::")
            where = vars(importlib.import_module(module_name)) if module_name else globals()
            assert callable(where.get(function)), f"{name}: no test named {test_name}"


def test_the_inventory_sees_a_new_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    import trio_agents

    async def new_entry_point() -> None:
        """Added without a case."""

    monkeypatch.setattr(trio_agents, "new_entry_point", new_entry_point, raising=False)
    monkeypatch.setattr(trio_agents, "__all__", [*trio_agents.__all__, "new_entry_point"])
    assert "new_entry_point" in async_entry_points() - set(COVERED)


# --------------------------------------------------------------------------- the unwrapping rule


def _cancelled_instances(count: int) -> list[trio.Cancelled]:
    """Real trio.Cancelled exceptions (trio makes them; they cannot be built directly)."""

    async def collect() -> list[trio.Cancelled]:
        found: list[trio.Cancelled] = []
        for _ in range(count):
            with trio.CancelScope() as scope:
                scope.cancel(reason=REASON)
                try:
                    await trio.lowlevel.checkpoint()
                except trio.Cancelled as exc:
                    found.append(exc)
        return found

    return trio.run(collect)


CANCELLED = _cancelled_instances(3)

leaves = st.one_of(
    st.sampled_from(CANCELLED),
    st.builds(ValueError, st.just("boom")),
    st.builds(KeyboardInterrupt),
)
trees = st.recursive(
    leaves,
    lambda inner: st.lists(inner, min_size=1, max_size=3).map(
        lambda exceptions: BaseExceptionGroup("nursery", exceptions)
    ),
    max_leaves=8,
)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


@given(trees)
def test_a_group_unwraps_to_its_first_cancelled_only_when_it_holds_nothing_else(
    tree: BaseException,
) -> None:
    found = _leaves(tree)
    expected = found[0] if all(isinstance(e, trio.Cancelled) for e in found) else None
    assert only_cancelled(tree) is expected
    if not isinstance(tree, BaseExceptionGroup):
        return
    if expected is None:
        reraise_cancelled(tree)  # returns: the caller re-raises the group
        return
    context = expected.__context__
    with pytest.raises(trio.Cancelled) as caught:
        reraise_cancelled(tree)
    assert caught.value is expected
    assert caught.value.__context__ is context  # not the group that held it
