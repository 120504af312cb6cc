"""Fault injection: FaultPlan, FaultyModel and FaultyTool, on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentError,
    AuthenticationError,
    InvalidArgumentError,
    ModelOverloaded,
    ModelRequest,
    ModelThrottled,
    NetworkError,
    RetryPolicy,
    StreamDone,
    TextDelta,
    ToolCallBlock,
    ToolContext,
    ToolResultMessage,
    UserMessage,
    tool,
)
from trio_agents.testing import (
    Fault,
    FaultKind,
    FaultPlan,
    FaultyModel,
    FaultyTool,
    FunctionModel,
    ScriptedModel,
    tool_call,
)
from trio_agents.testing.strategies import fault_plans, faults, tool_faults


@tool
async def lookup(query: str, limit: int = 3) -> str:
    """Look something up.

    Args:
        query: what to look for.
        limit: how many hits.
    """
    return f"{limit} hits for {query}"


def _request(*, tools: bool = True) -> ModelRequest:
    return ModelRequest(
        messages=(UserMessage.text("hi"),), tools=(lookup.definition(),) if tools else ()
    )


def _ctx(call: ToolCallBlock) -> ToolContext:
    return ToolContext(agent="a", call=call)


# --------------------------------------------------------------------------- plans


def test_a_plan_is_a_pure_function_of_seed_and_index() -> None:
    plan = FaultPlan(at={0: Fault.overloaded()}, rates={Fault.network(): 0.3}, seed=3)
    first = [plan.fault_for(i) for i in range(50)]
    assert first == [plan.fault_for(i) for i in range(50)]
    assert first[0] == Fault.overloaded()
    drawn = [f for f in first[1:] if f is not None]
    assert drawn and all(f == Fault.network() for f in drawn)
    assert 5 <= len(drawn) <= 25  # about 30% of 49
    other = FaultPlan(rates={Fault.network(): 0.3}, seed=4)
    assert [other.fault_for(i) for i in range(1, 50)] != first[1:]
    assert FaultPlan.never().fault_for(0) is None
    assert plan.kinds() == {FaultKind.OVERLOADED, FaultKind.NETWORK}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"at": {-1: Fault.hang()}}, "call indices are ints >= 0"),
        ({"at": {0: "hang"}}, r"at\[0\] must be a Fault"),
        ({"rates": {Fault.hang(): 1.5}}, r"probability is a number in \[0, 1\]"),
        ({"rates": {Fault.hang(): 0.6, Fault.network(): 0.6}}, "add up to 1.2"),
        ({"seed": "x"}, "seed must be an int"),
    ],
)
def test_bad_plans_name_the_argument(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        FaultPlan(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("index", [-1, -100, 1.0, "0", True, None])
def test_fault_for_refuses_an_index_that_is_not_a_call_index(index: object) -> None:
    plan = FaultPlan(at={0: Fault.overloaded()}, rates={Fault.hang(): 0.5}, seed=3)
    with pytest.raises(InvalidArgumentError, match=r"fault_for: index .* int >= 0"):
        plan.fault_for(index)  # type: ignore[arg-type]
    assert plan.fault_for(0) == Fault.overloaded()  # the plan still works


def test_bad_faults_name_the_argument() -> None:
    with pytest.raises(InvalidArgumentError, match=r"Fault\.delay"):
        Fault.latency(-1.0)
    with pytest.raises(InvalidArgumentError, match=r"Fault\.size"):
        Fault.oversize(-5)
    with pytest.raises(InvalidArgumentError, match="raises no error"):
        Fault.hang().error()


def test_each_error_fault_raises_its_error() -> None:
    throttled = Fault.throttled(retry_after=7.0).error()
    assert isinstance(throttled, ModelThrottled)
    assert throttled.retryable
    assert throttled.retry_after == 7.0
    assert isinstance(Fault.network().error(), NetworkError)
    assert isinstance(Fault.overloaded().error(), ModelOverloaded)
    fatal = Fault.fatal(message="bad key").error()
    assert isinstance(fatal, AuthenticationError)
    assert not fatal.retryable
    assert str(fatal) == "bad key"


@given(fault_plans())
def test_generated_plans_are_valid_and_reproducible(plan: FaultPlan) -> None:
    assert [plan.fault_for(i) for i in range(12)] == [plan.fault_for(i) for i in range(12)]
    assert sum(rate for _, rate in plan.rates) <= 1


@given(st.data())
def test_generated_tool_faults_are_accepted_by_faulty_tool(data: st.DataObject) -> None:
    fault = data.draw(tool_faults())
    FaultyTool(lookup, FaultPlan(at={0: fault}))
    model_fault = data.draw(faults())
    assert isinstance(model_fault, Fault)


# --------------------------------------------------------------------------- models


async def test_error_faults_are_raised_at_their_calls() -> None:
    inner = ScriptedModel(["one", "two"])
    model = FaultyModel(inner, FaultPlan(at={1: Fault.overloaded(), 3: Fault.fatal()}))
    assert (await model.request(_request())).text == "one"
    with pytest.raises(ModelOverloaded):
        await model.request(_request())
    assert (await model.request(_request())).text == "two"  # the inner script is not used
    with pytest.raises(AuthenticationError):
        await model.request(_request())
    assert model.calls == 4
    assert [(i, f.kind) for i, f in model.injected] == [
        (1, FaultKind.OVERLOADED),
        (3, FaultKind.FATAL),
    ]
    inner.assert_consumed()


async def test_latency_and_delayed_errors_use_trios_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = FaultyModel(
        ScriptedModel(["late"]),
        FaultPlan(at={0: Fault.latency(2.5), 1: Fault.network(delay=4.0)}),
    )
    start = trio.current_time()
    assert (await model.request(_request())).text == "late"
    assert trio.current_time() - start == 2.5
    with pytest.raises(NetworkError):
        await model.request(_request())
    assert trio.current_time() - start == 6.5


async def test_hang_waits_until_cancelled(autojump_clock: trio.testing.MockClock) -> None:
    model = FaultyModel(ScriptedModel([]), FaultPlan(at={0: Fault.hang()}))
    with trio.move_on_after(1000) as scope:
        await model.request(_request())
    assert scope.cancelled_caught
    assert trio.current_time() == 1000


async def test_malformed_tool_calls_become_error_results_the_agent_survives() -> None:
    plan = FaultPlan(at={0: Fault.bad_json(), 1: Fault.unknown_tool(), 2: Fault.wrong_types()})
    inner = ScriptedModel(["recovered"])
    agent = Agent(FaultyModel(inner, plan), tools=[lookup], max_turns=5)
    result = await agent.run("find x")
    assert result.final_text == "recovered"
    results = [r for m in result.messages if isinstance(m, ToolResultMessage) for r in m.results]
    assert [r.is_error for r in results] == [True, True, True]
    assert "invalid JSON arguments" in results[0].content
    assert "unknown tool 'no_such_tool'" in results[1].content
    assert "query" in results[2].content and "limit" in results[2].content
    calls = [c for m in result.messages for c in getattr(m, "tool_calls", ())]
    assert calls[2].arguments == {"query": 12345, "limit": "not a number"}
    inner.assert_consumed()


async def test_oversize_adds_output_and_usage() -> None:
    model = FaultyModel(ScriptedModel(["short"]), FaultPlan(at={0: Fault.oversize(5000)}))
    message = await model.request(_request())
    assert message.text.startswith("short")
    assert len(message.text) >= 5000
    assert message.usage.output_tokens >= 1250


async def test_streaming_follows_the_plan_too() -> None:
    plan = FaultPlan(at={0: Fault.bad_json(), 1: Fault.oversize(100), 2: Fault.throttled()})
    model = FaultyModel(FunctionModel(lambda r: "streamed answer"), plan)
    async with model.stream(_request()) as events:
        seen = [e async for e in events]
    assert isinstance(seen[-1], StreamDone)
    assert seen[-1].message.tool_calls[0].raw_arguments is not None
    async with model.stream(_request()) as events:
        seen = [e async for e in events]
    assert isinstance(seen[-2], TextDelta)
    assert isinstance(seen[-1], StreamDone)
    assert len(seen[-1].message.text) >= 100
    with pytest.raises(ModelThrottled):
        async with model.stream(_request()) as events:
            pass


async def test_an_agent_retries_a_throttled_call_after_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plan = FaultPlan(at={0: Fault.throttled(retry_after=10.0)})
    model = FaultyModel(ScriptedModel(["fine"]), plan)
    agent = Agent(model, retry=RetryPolicy(max_attempts=2, initial_delay=0.1, jitter=False))
    start = trio.current_time()
    assert (await agent.run("go")).final_text == "fine"
    assert trio.current_time() - start == 10.0  # the provider's retry_after wins


def test_faulty_model_checks_its_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="inner"):
        FaultyModel("model", FaultPlan())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="plan must be a FaultPlan"):
        FaultyModel(ScriptedModel([]), {0: Fault.hang()})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tools


async def test_tool_faults() -> None:
    plan = FaultPlan(at={0: Fault.overloaded(), 2: Fault.oversize(300)})
    faulty = FaultyTool(lookup, plan)
    assert [d.name for d in faulty.definitions()] == ["lookup"]
    call = ToolCallBlock(id="c1", name="lookup", arguments={"query": "x"})
    failed = await faulty.execute(call, _ctx(call))
    assert failed.is_error
    assert failed.content == "tool 'lookup' raised ModelOverloaded: injected overloaded fault"
    ok = await faulty.execute(call, _ctx(call))
    assert ok.content == "3 hits for x"
    big = await faulty.execute(call, _ctx(call))
    assert big.content.startswith("3 hits for x")
    assert len(big.content) == len("3 hits for x") + 300
    assert [i for i, _ in faulty.injected] == [0, 2]


async def test_tool_errors_can_fail_the_turn() -> None:
    faulty = FaultyTool([lookup], FaultPlan(at={0: Fault.fatal()}), raise_errors=True)
    call = ToolCallBlock(id="c1", name="lookup", arguments={"query": "x"})
    with pytest.raises(AuthenticationError):
        await faulty.execute(call, _ctx(call))


async def test_tool_hang_and_latency(autojump_clock: trio.testing.MockClock) -> None:
    faulty = FaultyTool(lookup, FaultPlan(at={0: Fault.latency(3.0), 1: Fault.hang()}))
    call = ToolCallBlock(id="c1", name="lookup", arguments={"query": "x"})
    start = trio.current_time()
    assert (await faulty.execute(call, _ctx(call))).content == "3 hits for x"
    assert trio.current_time() - start == 3.0
    with trio.move_on_after(50) as scope:
        await faulty.execute(call, _ctx(call))
    assert scope.cancelled_caught


async def test_an_agent_sees_a_failing_tool_as_an_error_result() -> None:
    faulty = FaultyTool(lookup, FaultPlan(at={0: Fault.network()}))
    model = ScriptedModel([tool_call("lookup", {"query": "x"}), "gave up politely"])
    result = await Agent(model, tools=faulty).run("search")
    assert result.final_text == "gave up politely"
    last_results = [m for m in result.messages if isinstance(m, ToolResultMessage)][-1]
    assert last_results.results[0].is_error


def test_faulty_tool_refuses_model_only_faults() -> None:
    with pytest.raises(InvalidArgumentError, match="malformed tool calls come from a model"):
        FaultyTool(lookup, FaultPlan(at={0: Fault.bad_json()}))


def test_errors_are_agent_errors() -> None:
    for kind in (FaultKind.THROTTLED, FaultKind.NETWORK, FaultKind.OVERLOADED, FaultKind.FATAL):
        assert isinstance(Fault(kind=kind).error(), AgentError)
