from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentSpec,
    AlreadyRunningError,
    AssistantMessage,
    AuthenticationError,
    BudgetExhausted,
    Event,
    InvalidArgumentError,
    MaxTurnsExceeded,
    ModelDelta,
    ModelOverloaded,
    ModelThrottled,
    ModelTimeout,
    NoMessagesError,
    RetryPolicy,
    RetryScheduled,
    RunFinished,
    RunTimeout,
    ScriptExhausted,
    StopReason,
    ToolContext,
    ToolResultMessage,
    Usage,
    UsageLimits,
    UserMessage,
    tool,
)
from trio_agents.testing import FunctionModel, ScriptedModel, fail, hang, text, tool_call


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
async def slow(seconds: float) -> str:
    """Sleep on trio's clock."""
    await trio.sleep(seconds)
    return f"slept {seconds}"


def no_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=1)


async def test_final_answer_without_tools() -> None:
    model = ScriptedModel(["hello there"])
    agent = Agent(model, name="greeter", instructions="Be brief.")
    result = await agent.run("hi")
    assert result.final_text == "hello there"
    assert result.stop_reason is StopReason.STOP
    assert result.turns == 1
    assert result.tool_call_count == 0
    assert result.usage.requests == 1
    assert result.ok
    assert model.requests[0].system == "Be brief."
    assert model.requests[0].messages == (UserMessage.text("hi"),)
    model.assert_consumed()


async def test_tool_loop_feeds_results_back() -> None:
    model = ScriptedModel([tool_call("add", {"a": 2, "b": 3}), text("2 + 3 = 5")])
    agent = Agent(model, tools=[add])
    result = await agent.run("What is 2 + 3?")
    assert result.final_text == "2 + 3 = 5"
    assert result.turns == 2
    assert result.tool_call_count == 1
    tool_results = [m for m in result.messages if isinstance(m, ToolResultMessage)]
    assert len(tool_results) == 1
    assert tool_results[0].results[0].content == "5"
    assert not tool_results[0].results[0].is_error
    # the second request carried the tool definitions and the tool result
    second = model.requests[1]
    assert [d.name for d in second.tools] == ["add"]
    assert second.messages[-1] == tool_results[0]
    assert result.usage.requests == 2


async def test_history_persists_across_runs() -> None:
    model = ScriptedModel(["one", "two"])
    agent = Agent(model)
    await agent.run("first")
    await agent.run("second")
    assert len(agent.messages) == 4
    assert model.requests[1].messages[:2] == agent.messages[:2]
    assert agent.usage.requests == 2


async def test_already_running_is_misuse() -> None:
    model = ScriptedModel([hang()])
    agent = Agent(model)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.run, "go")
        await trio.testing.wait_all_tasks_blocked()
        assert agent.running
        with pytest.raises(AlreadyRunningError, match="already running"):
            await agent.run("again")
        nursery.cancel_scope.cancel()
    assert not agent.running


async def test_empty_input_is_misuse() -> None:
    agent = Agent(ScriptedModel([]))
    with pytest.raises(NoMessagesError):
        await agent.run([])
    with pytest.raises(InvalidArgumentError, match=r"input\[0\]"):
        await agent.run([42])  # type: ignore[list-item]


def test_bad_constructor_arguments_name_the_argument() -> None:
    with pytest.raises(InvalidArgumentError, match="max_turns"):
        Agent(ScriptedModel([]), max_turns=0)
    with pytest.raises(InvalidArgumentError, match="model"):
        Agent(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="run_timeout"):
        Agent(ScriptedModel([]), run_timeout=-1)


async def test_max_turns_names_the_limit_and_does_not_run_last_tools() -> None:
    calls: list[int] = []

    @tool
    async def count() -> int:
        """Count."""
        calls.append(1)
        return len(calls)

    model = ScriptedModel([tool_call("count"), tool_call("count"), tool_call("count")])
    agent = Agent(model, tools=[count], max_turns=2)
    with pytest.raises(MaxTurnsExceeded, match="max_turns=2") as info:
        await agent.run("loop")
    assert len(calls) == 1
    partial = info.value.result
    assert partial is not None
    assert partial.stop_reason is StopReason.ERROR
    assert partial.turns == 2
    assert partial.error is not None and partial.error.type == "MaxTurnsExceeded"


async def test_retry_backoff_timings_on_virtual_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel(
        [fail(ModelOverloaded("busy")), fail(ModelOverloaded("busy")), text("finally")]
    )
    events: list[Event] = []
    policy = RetryPolicy(max_attempts=3, initial_delay=1.0, factor=2.0, jitter=False)
    agent = Agent(model, retry=policy, event_sink=events.append)
    start = trio.current_time()
    result = await agent.run("x")
    assert result.final_text == "finally"
    # retries after 1 s then 2 s (no jitter)
    assert trio.current_time() - start == pytest.approx(3.0)
    delays = [e.delay for e in events if isinstance(e, RetryScheduled)]
    assert delays == [1.0, 2.0]


async def test_retry_after_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel([fail(ModelThrottled("429", retry_after=7.5)), text("ok")])
    agent = Agent(model, retry=RetryPolicy(initial_delay=1.0, jitter=True), rng=random.Random(1))
    start = trio.current_time()
    await agent.run("x")
    assert trio.current_time() - start == pytest.approx(7.5)


async def test_full_jitter_stays_below_the_cap(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(42)
    policy = RetryPolicy(initial_delay=2.0, factor=3.0, max_delay=10.0)
    for retry, cap in [(1, 2.0), (2, 6.0), (3, 10.0), (4, 10.0)]:
        for _ in range(50):
            assert 0.0 <= policy.delay(retry, None, rng) <= cap
    expected = RetryPolicy(initial_delay=2.0).delay(1, None, random.Random(5))
    assert RetryPolicy(initial_delay=2.0).delay(1, None, random.Random(5)) == expected


async def test_retries_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel([fail(ModelOverloaded("a")), fail(ModelOverloaded("b"))])
    agent = Agent(model, retry=RetryPolicy(max_attempts=2, jitter=False))
    with pytest.raises(ModelOverloaded, match="b"):
        await agent.run("x")
    assert len(model.requests) == 2


async def test_non_retryable_error_ends_run_at_once(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel([fail(AuthenticationError("bad key")), text("never")])
    agent = Agent(model)
    start = trio.current_time()
    with pytest.raises(AuthenticationError) as info:
        await agent.run("x")
    assert trio.current_time() == start
    assert info.value.result is not None
    assert info.value.result.error is not None
    assert info.value.result.error.type == "AuthenticationError"
    assert model.remaining == 1


async def test_model_timeout_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel([hang(), text("second try")])
    agent = Agent(model, model_timeout=5.0, retry=RetryPolicy(initial_delay=1.0, jitter=False))
    start = trio.current_time()
    result = await agent.run("x")
    assert result.final_text == "second try"
    assert trio.current_time() - start == pytest.approx(6.0)


async def test_model_timeout_without_retries(autojump_clock: trio.testing.MockClock) -> None:
    agent = Agent(ScriptedModel([hang()]), model_timeout=5.0, retry=no_retry())
    with pytest.raises(ModelTimeout, match=r"model_timeout=5\.0"):
        await agent.run("x")


async def test_run_timeout_stops_work(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel([tool_call("slow", {"seconds": 100}), text("never")])
    agent = Agent(model, tools=[slow], run_timeout=10.0)
    start = trio.current_time()
    with pytest.raises(RunTimeout, match=r"run_timeout=10\.0") as info:
        await agent.run("x")
    assert trio.current_time() - start == pytest.approx(10.0)
    partial = info.value.result
    assert partial is not None
    assert partial.stop_reason is StopReason.ERROR
    # the interrupted tool call was answered so the history stays a valid conversation
    last = agent.messages[-1]
    assert isinstance(last, ToolResultMessage)
    assert last.results[0].is_error


async def test_abort_mid_tool_keeps_partial_transcript(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel([tool_call("slow", {"seconds": 100}), text("never")])
    agent = Agent(model, tools=[slow])
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            result = await agent.run("x")
            outcome.append(result.stop_reason)
            partial.append(result)

        outcome: list[StopReason] = []
        partial: list = []
        nursery.start_soon(run)
        await trio.sleep(3)
        agent.abort("user pressed stop")
    assert outcome == [StopReason.ABORTED]
    result = partial[0]
    assert result.turns == 1
    assert result.usage.requests == 1
    results = result.messages[-1]
    assert isinstance(results, ToolResultMessage)
    assert "user pressed stop" in results.results[0].content
    assert trio.current_time() == pytest.approx(3.0)


async def test_outside_cancellation_mid_model_call_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel([tool_call("add", {"a": 1, "b": 1}), hang()])
    agent = Agent(model, tools=[add])
    with trio.move_on_after(5) as scope:
        await agent.run("x")
    assert scope.cancelled_caught
    assert not agent.running
    last = agent.last_result
    assert last is not None
    assert last.stop_reason is StopReason.ABORTED
    assert last.turns == 1  # the first response is kept
    assert last.usage.requests == 1
    # the agent can run again afterwards
    model.extend(["back"])
    result = await agent.run("again")
    assert result.final_text == "back"


async def test_outside_cancellation_mid_tool_cancels_the_tool(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled: list[bool] = []

    @tool
    async def wait_forever() -> str:
        """Wait."""
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(True)
            raise
        return "unreachable"

    agent = Agent(ScriptedModel([tool_call("wait_forever")]), tools=[wait_forever])
    with trio.move_on_after(1):
        await agent.run("x")
    assert cancelled == [True]
    assert isinstance(agent.messages[-1], ToolResultMessage)


async def test_budget_checked_before_each_model_call() -> None:
    model = ScriptedModel([tool_call("add", {"a": 1, "b": 2}), text("3")])
    agent = Agent(model, tools=[add], limits=UsageLimits(requests=1))
    with pytest.raises(BudgetExhausted, match="requests") as info:
        await agent.run("x")
    assert info.value.limit == "requests"
    assert len(model.requests) == 1
    assert not info.value.retryable


async def test_streaming_emits_deltas_and_same_result() -> None:
    events: list[Event] = []
    model = ScriptedModel([tool_call("add", {"a": 1, "b": 2}), text("the answer is 3")])
    agent = Agent(model, tools=[add], stream=True, event_sink=events.append)
    result = await agent.run("x")
    assert result.final_text == "the answer is 3"
    deltas = [e for e in events if isinstance(e, ModelDelta)]
    assert "".join(getattr(d.delta, "text", "") for d in deltas) == "the answer is 3"


async def test_event_order_for_a_tool_turn() -> None:
    events: list[Event] = []
    model = ScriptedModel([tool_call("add", {"a": 1, "b": 2}), text("3")])
    agent = Agent(model, name="calc", tools=[add], event_sink=events.append)
    await agent.run("x")
    assert [e.kind for e in events] == [
        "run_started",
        "turn_started",
        "model_requested",
        "model_responded",
        "tool_started",
        "tool_finished",
        "turn_finished",
        "turn_started",
        "model_requested",
        "model_responded",
        "turn_finished",
        "run_finished",
    ]
    assert all(e.agent == "calc" for e in events)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.result.final_text == "3"


async def test_tools_receive_deps_through_context() -> None:
    @tool
    async def whoami(ctx: ToolContext) -> str:
        """Say who called."""
        return f"{ctx.agent}:{ctx.deps}"

    model = ScriptedModel([tool_call("whoami"), text("done")])
    agent = Agent(model, name="a", tools=[whoami], deps="D")
    result = await agent.run("x")
    assert result.messages[2].results[0].content == "a:D"  # type: ignore[union-attr]


async def test_scripted_model_fails_clearly_when_exhausted() -> None:
    model = ScriptedModel(["only one"], model_id="tiny")
    agent = Agent(model, retry=no_retry())
    await agent.run("1")
    with pytest.raises(ScriptExhausted, match=r"request #2 but its script has only 1"):
        await agent.run("2")
    with pytest.raises(AssertionError):
        ScriptedModel(["unused"]).assert_consumed()


async def test_function_model_sync_and_async() -> None:
    def echo(request):  # type: ignore[no-untyped-def]
        return "echo: " + request.messages[-1].content[0].text

    async def shout(request):  # type: ignore[no-untyped-def]
        return text(request.messages[-1].content[0].text.upper())

    assert (await Agent(FunctionModel(echo)).run("hi")).final_text == "echo: hi"
    assert (await Agent(FunctionModel(shout)).run("hi")).final_text == "HI"


async def test_spec_builds_agent_and_rejects_unknown_tools() -> None:
    spec = AgentSpec(name="calc", instructions="add", tools=("add",), max_turns=3)
    agent = Agent.from_spec(spec, ScriptedModel(["x"]), tools=[add])
    assert agent.name == "calc"
    assert agent.max_turns == 3
    with pytest.raises(InvalidArgumentError, match=r"unknown tools \['nope'\]"):
        Agent.from_spec(AgentSpec(name="b", tools=("nope",)), ScriptedModel([]), tools=[add])


async def test_usage_is_addable() -> None:
    a = Usage(requests=1, input_tokens=2, output_tokens=3)
    b = Usage(requests=1, input_tokens=5, output_tokens=7)
    total = sum([a, b], Usage())
    assert total == Usage(requests=2, input_tokens=7, output_tokens=10)
    assert total.total_tokens == 17
    assert isinstance(AssistantMessage(content=()).usage, Usage)


def test_agent_spec_round_trips_through_the_converter() -> None:
    from trio_agents import dumps_json, loads_json

    spec = AgentSpec(
        name="researcher",
        instructions="Find things.",
        tools=("search", "fetch"),
        model="openai:gpt-4o-mini",
        max_turns=4,
        limits=UsageLimits(requests=3, cost=0.25),
        run_timeout=30.0,
        metadata={"team": "blue", "weights": [1, 2.5, None]},
    )
    assert loads_json(dumps_json(spec), AgentSpec) == spec


def test_agent_spec_validates_its_fields() -> None:
    with pytest.raises(InvalidArgumentError, match="max_turns"):
        AgentSpec(name="x", max_turns=0)
    with pytest.raises(InvalidArgumentError, match="not a str"):
        AgentSpec(name="x", tools="search")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="run_timeout"):
        AgentSpec(name="x", run_timeout=0)


async def test_cost_is_unknown_and_says_so_without_prices() -> None:
    result = await Agent(ScriptedModel(["hi"], model_id="scripted")).run("x")
    assert result.cost.total == 0.0
    assert result.unpriced_models == ("scripted",)


async def test_cost_from_a_price_table_and_a_cost_budget() -> None:
    from trio_agents.models import PriceTable

    prices = PriceTable({"scripted": {"input": 1.0, "output": 2.0}})  # USD per million
    usage = Usage(requests=1, input_tokens=500_000, output_tokens=250_000)
    model = ScriptedModel(
        [text("a", usage=usage), text("b", usage=usage), text("c", usage=usage)],
        model_id="scripted",
    )
    agent = Agent(model, prices=prices, limits=None)
    result = await agent.run("x")
    assert result.unpriced_models == ()
    assert result.cost.total == pytest.approx(1.0)  # 0.5 M x $1 + 0.25 M x $2
    # a shared budget with a cost limit stops the next model call once it is spent
    from trio_agents import Budget

    budget = Budget(UsageLimits(cost=1.0))
    agent = Agent(model, prices=prices, budget=budget)
    await agent.run("y")
    with pytest.raises(BudgetExhausted, match="cost"):
        await agent.run("z")
    assert budget.cost.total == pytest.approx(1.0)


def test_retry_delay_is_capped_even_when_the_growth_overflows() -> None:
    # The agent's retry delay and the supervisor's backoff share one computation; a huge
    # retry number used to raise OverflowError here.
    policy = RetryPolicy(initial_delay=1.0, factor=10.0, max_delay=30.0, jitter=False)
    assert policy.delay(10_000, None, random.Random(0)) == 30.0
    assert RetryPolicy(initial_delay=0.0).delay(3, None, random.Random(0)) == 0.0
