"""Asyncio agents as trio_agents agents: pydantic-ai and the OpenAI Agents SDK on trio-asyncio.

Each peer runs on its own test model: pydantic-ai's ``TestModel`` / ``FunctionModel``, and for
the Agents SDK (which ships none) a ``Model`` written against its interface below. The peers'
blocking steps wait on asyncio events, so "mid-run" is exact: the test cancels from trio
after ``wait_all_tasks_blocked`` and checks that the asyncio side saw ``CancelledError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
import pytest
import trio
import trio.testing
from agents import Agent as SdkAgent
from agents import RunConfig, RunHooks, function_tool
from agents import Usage as SdkUsage
from agents.items import ModelResponse as SdkResponse
from agents.models.interface import Model as SdkModel
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from pydantic_ai import Agent as PaiAgent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage
from pydantic_ai.usage import UsageLimits as PaiLimits

from trio_agents import (
    Agent,
    AgentCancelled,
    AgentSpec,
    Budget,
    BudgetExhausted,
    ContentFiltered,
    Delegator,
    Event,
    InvalidArgumentError,
    MaxTurnsExceeded,
    ModelError,
    ModelOverloaded,
    ModelRunner,
    ModelThrottled,
    RunFinished,
    RunStarted,
    RunTimeout,
    SharedInfra,
    StopReason,
    ToolResultMessage,
    Usage,
    UsageError,
    UsageLimits,
)
from trio_agents.interop import (
    AsyncioAgent,
    AsyncioRunner,
    InteropError,
    OpenAIAgentsAgent,
    PydanticAIAgent,
    open_asyncio_loop,
)
from trio_agents.testing import ScriptedModel, text, tool_call

NO_TRACING = RunConfig(tracing_disabled=True)

# --------------------------------------------------------------------------- peer models


class Gate:
    """An asyncio-side wait that records how it ended."""

    def __init__(self) -> None:
        self.entered = 0
        self.cancelled = 0

    async def wait(self) -> None:
        self.entered += 1
        try:
            await asyncio.Event().wait()  # never set: only a cancellation ends it
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def pai_blocking(gate: Gate, *, first: ModelResponse | None = None) -> FunctionModel:
    """A pydantic-ai model that answers ``first`` (if given) and then blocks in ``gate``."""
    calls = 0

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal calls
        calls += 1
        if first is not None and calls == 1:
            return first
        await gate.wait()
        raise AssertionError("unreachable")

    return FunctionModel(respond)


class Call:
    """A scripted function call of the Agents SDK model."""

    def __init__(self, name: str, arguments: str = "{}") -> None:
        self.name = name
        self.arguments = arguments


class SdkScripted(SdkModel):
    """An Agents SDK model answering from a script: str (a message), ``Call`` (a function
    call), an exception, or a ``Gate`` (block). Every message reports 10 input tokens (2
    cached) and 3 output; every call 5 input and 1 output. An exhausted script repeats
    its last step."""

    def __init__(self, *steps: object) -> None:
        self.steps = list(steps)
        self.inputs: list[Any] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: Any,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> SdkResponse:
        self.inputs.append(input)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Gate):
            await step.wait()
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, Call):
            call = ResponseFunctionToolCall(
                id=f"fc{len(self.inputs)}",
                call_id=f"c{len(self.inputs)}",
                type="function_call",
                name=step.name,
                arguments=step.arguments,
                status="completed",
            )
            return SdkResponse(
                output=[call],
                usage=SdkUsage(requests=1, input_tokens=5, output_tokens=1, total_tokens=6),
                response_id=None,
            )
        message = ResponseOutputMessage(
            id="msg",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=str(step), annotations=[])],
        )
        usage = SdkUsage(requests=1, input_tokens=10, output_tokens=3, total_tokens=13)
        usage.input_tokens_details.cached_tokens = 2
        return SdkResponse(output=[message], usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the tests do not stream")


def sdk_agent(model: SdkModel, **kwargs: Any) -> OpenAIAgentsAgent:
    return OpenAIAgentsAgent(
        SdkAgent(name="helper", instructions="Help.", model=model),
        run_config=NO_TRACING,
        **kwargs,
    )


async def cancel_mid_run(gate: Gate, run: Callable[[], Awaitable[object]]) -> BaseException:
    """Start ``run``, cancel it from trio once the peer blocks in ``gate``; what it raised."""
    caught: list[BaseException] = []

    async def go() -> None:
        try:
            await run()
        except BaseException as exc:
            caught.append(exc)
            raise

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(go)
            while gate.entered == 0:
                await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    assert gate.cancelled == 1, "the asyncio side did not see the cancellation"
    assert len(caught) == 1
    return caught[0]


# --------------------------------------------------------------------------- pydantic-ai


async def test_pydantic_ai_run_maps_output_usage_and_events() -> None:
    events: list[Event] = []
    budget = Budget()
    peer = PydanticAIAgent(
        PaiAgent(TestModel(custom_output_text="four"), instructions="Add numbers."),
        name="adder",
    )
    assert peer.description == "Add numbers."
    result = await peer.run("2 + 2?", event_sink=events.append, budget=budget)
    assert result.stop_reason is StopReason.STOP
    assert result.output == "four" and result.final_text == "four"
    assert result.usage.requests == 1 and result.usage.output_tokens > 0
    assert result.usage.input_tokens > 0
    assert budget.usage == result.usage
    assert [type(e) for e in events] == [RunStarted, RunFinished]
    assert all(e.agent == "adder" for e in events)
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.result == result
    assert result.unpriced_models == ("test",)


async def test_pydantic_ai_structured_output_is_json_data() -> None:
    class City(pydantic.BaseModel):
        name: str
        population: int

    peer = PydanticAIAgent(
        PaiAgent(
            TestModel(custom_output_args={"name": "Oslo", "population": 700000}), output_type=City
        ),
        name="geo",
    )
    result = await peer.run("Biggest city of Norway?")
    assert result.output == {"name": "Oslo", "population": 700000}
    assert result.final_text == '{"name": "Oslo", "population": 700000}'


async def test_pydantic_ai_cache_tokens_are_kept_apart() -> None:
    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(
            parts=[TextPart("ok")],
            usage=RequestUsage(
                input_tokens=100, output_tokens=5, cache_read_tokens=60, cache_write_tokens=10
            ),
        )

    peer = PydanticAIAgent(PaiAgent(FunctionModel(respond)), name="p")
    result = await peer.run("hi")
    assert result.usage == Usage(
        requests=1, input_tokens=30, output_tokens=5, cache_read_tokens=60, cache_write_tokens=10
    )


@pytest.mark.parametrize("loop", ["own loop", "open_asyncio_loop"])
async def test_pydantic_ai_cancelled_mid_run_from_trio(loop: str) -> None:
    gate = Gate()
    events: list[Event] = []
    budget = Budget()
    first = ModelResponse(
        parts=[ToolCallPart("lookup", {"q": "x"})],
        usage=RequestUsage(input_tokens=7, output_tokens=2),
    )
    pai = PaiAgent(pai_blocking(gate, first=first))

    @pai.tool_plain
    def lookup(q: str) -> str:
        return "found"

    peer = PydanticAIAgent(pai, name="slow")

    async def run() -> object:
        if loop == "own loop":
            return await peer.run("go", event_sink=events.append, budget=budget)
        async with open_asyncio_loop():
            return await peer.run("go", event_sink=events.append, budget=budget)

    exc = await cancel_mid_run(gate, run)
    assert type(exc) is trio.Cancelled
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.result.stop_reason is StopReason.ABORTED
    # the response before the cancellation is counted and charged
    assert finished.result.usage == Usage(requests=1, input_tokens=7, output_tokens=2)
    assert budget.usage == finished.result.usage


async def test_pydantic_ai_errors_map_into_the_hierarchy() -> None:
    async def throttled(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError(429, "m", {"error": "slow down"})

    peer = PydanticAIAgent(PaiAgent(FunctionModel(throttled)), name="p")
    with pytest.raises(ModelThrottled) as caught:
        await peer.run("hi")
    assert caught.value.retryable
    assert "p (pydantic-ai)" in str(caught.value)
    assert isinstance(caught.value.__cause__, ModelHTTPError)
    assert caught.value.result is not None
    assert caught.value.result.stop_reason is StopReason.ERROR
    assert caught.value.result.error is not None
    assert caught.value.result.error.type == "ModelThrottled"

    async def overloaded(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError(503, "m", None)

    with pytest.raises(ModelOverloaded):
        await PydanticAIAgent(PaiAgent(FunctionModel(overloaded)), name="p").run("hi")

    limited = PydanticAIAgent(
        PaiAgent(TestModel()), name="p", usage_limits=PaiLimits(request_limit=0)
    )
    with pytest.raises(BudgetExhausted):
        await limited.run("hi")


async def test_a_pydantic_ai_tool_error_is_an_interop_error() -> None:
    pai = PaiAgent(TestModel())

    @pai.tool_plain
    def broken() -> str:
        raise LookupError("no such row")

    with pytest.raises(InteropError, match="LookupError: no such row") as caught:
        await PydanticAIAgent(pai, name="p").run("hi")
    assert not caught.value.retryable
    assert caught.value.result is not None and caught.value.result.usage.requests == 1


# --------------------------------------------------------------------------- Agents SDK


async def test_openai_agents_run_maps_output_and_usage() -> None:
    model = SdkScripted("hello from the SDK")
    peer = sdk_agent(model)
    budget = Budget()
    result = await peer.run("hi", budget=budget)
    assert result.output == "hello from the SDK"
    assert result.usage == Usage(requests=1, input_tokens=8, output_tokens=3, cache_read_tokens=2)
    assert budget.usage == result.usage
    assert model.inputs and "hi" in str(model.inputs[0])
    assert peer.name == "helper" and peer.description == "Help."


async def test_openai_agents_usage_counts_a_tool_turn_and_keeps_the_users_hooks() -> None:
    @function_tool
    def shout(word: str) -> str:
        """Shout a word."""
        return word.upper()

    seen: list[str] = []

    class Mine(RunHooks[Any]):
        async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: str) -> None:
            seen.append(result)

        async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
            seen.append("llm")

    model = SdkScripted(Call("shout", '{"word": "hey"}'), "done")
    peer = OpenAIAgentsAgent(
        SdkAgent(name="loud", model=model, tools=[shout]), run_config=NO_TRACING, hooks=Mine()
    )
    result = await peer.run("shout hey")
    assert result.output == "done"
    assert result.usage == Usage(requests=2, input_tokens=13, output_tokens=4, cache_read_tokens=2)
    assert seen == ["llm", "HEY", "llm"]


@pytest.mark.parametrize("loop", ["own loop", "open_asyncio_loop"])
async def test_openai_agents_cancelled_mid_run_from_trio(loop: str) -> None:
    gate = Gate()
    events: list[Event] = []
    peer = sdk_agent(SdkScripted(gate))

    async def run() -> object:
        if loop == "own loop":
            return await peer.run("go", event_sink=events.append)
        async with open_asyncio_loop():
            return await peer.run("go", event_sink=events.append)

    exc = await cancel_mid_run(gate, run)
    assert type(exc) is trio.Cancelled
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.result.stop_reason is StopReason.ABORTED


async def test_openai_agents_errors_map_into_the_hierarchy() -> None:
    import httpx2 as httpx  # the HTTP client this openai release is built on
    import openai
    from agents.exceptions import ModelBehaviorError

    request = httpx.Request("POST", "http://127.0.0.1/v1/responses")
    response = httpx.Response(429, request=request, headers={"retry-after": "3"})
    limited = openai.RateLimitError("slow down", response=response, body=None)
    with pytest.raises(ModelThrottled) as caught:
        await sdk_agent(SdkScripted(limited)).run("hi")
    assert caught.value.retry_after == 3.0
    assert "helper (OpenAI Agents SDK)" in str(caught.value)

    with pytest.raises(ModelError):
        await sdk_agent(SdkScripted(ModelBehaviorError("bad json"))).run("hi")

    # the SDK's own turn limit
    @function_tool
    def again() -> str:
        """Again."""
        return "again"

    looping = OpenAIAgentsAgent(
        SdkAgent(name="loop", model=SdkScripted(Call("again")), tools=[again]),
        run_config=NO_TRACING,
        max_turns=2,
    )
    with pytest.raises(MaxTurnsExceeded) as turns:
        await looping.run("go")
    assert turns.value.result is not None
    assert turns.value.result.usage.requests == 2  # counted by the hooks, though it failed


async def test_an_asyncio_cancellation_the_peer_made_itself_is_agent_cancelled() -> None:
    peer = sdk_agent(SdkScripted(asyncio.CancelledError()))
    with pytest.raises(AgentCancelled):
        await peer.run("hi")


async def test_sdk_guardrail_refusal_maps_to_content_filtered() -> None:
    from agents.exceptions import ModelRefusalError

    with pytest.raises(ContentFiltered):
        await sdk_agent(SdkScripted(ModelRefusalError("no"))).run("hi")


# --------------------------------------------------------------------------- as a specialist


def lead_model(subtask_for: dict[str, str]) -> ScriptedModel:
    steps = [
        tool_call("delegate", {"specialist": name, "subtask": task})
        for name, task in subtask_for.items()
    ]
    combined = steps[0]
    for step in steps[1:]:
        combined = combined + step
    return ScriptedModel([combined, text("summary")])


async def test_peers_as_specialists_of_a_delegator() -> None:
    pai = PydanticAIAgent(
        PaiAgent(TestModel(custom_output_text="pai says hi")),
        name="pai",
        description="A pydantic-ai agent.",
    )
    sdk = sdk_agent(SdkScripted("sdk says hi"), name="sdk")
    lead = AgentSpec(name="lead", instructions="Lead.")
    delegator = Delegator(lead, [pai.spec(), sdk.spec()])
    runner = AsyncioRunner([pai, sdk], fallback=ModelRunner(lead_model({"pai": "a", "sdk": "b"})))
    infra = SharedInfra(budget=Budget())
    result = await delegator.run("go", runner=runner, infra=infra)
    assert result.final_answer == "summary"
    records = {r.specialist: r for r in result.delegations}
    assert records["pai"].success and records["pai"].result == "pai says hi"
    assert records["sdk"].success and records["sdk"].result == "sdk says hi"
    assert records["sdk"].usage == Usage(
        requests=1, input_tokens=8, output_tokens=3, cache_read_tokens=2
    )
    assert records["pai"].path == "lead/pai"
    # the peers' runs charge the tree's budget and log under their paths
    assert infra.budget.usage.requests == 4
    runs = [e.agent for e in infra.log.events() if isinstance(e, RunStarted)]
    assert sorted(runs) == ["lead", "lead/pai", "lead/sdk"]


async def test_a_failing_peer_specialist_is_a_failed_delegation_naming_it() -> None:
    async def down(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError(401, "m", None)

    pai = PydanticAIAgent(PaiAgent(FunctionModel(down)), name="pai")
    delegator = Delegator(AgentSpec(name="lead"), [pai.spec()])
    runner = AsyncioRunner([pai], fallback=ModelRunner(lead_model({"pai": "x"})))
    result = await delegator.run("go", runner=runner)
    (record,) = result.delegations
    assert not record.success
    assert record.error is not None and "AuthenticationError" in record.error


async def test_a_delegator_cancelled_while_a_peer_specialist_runs() -> None:
    gate = Gate()
    sdk = sdk_agent(SdkScripted(gate), name="sdk")
    delegator = Delegator(AgentSpec(name="lead"), [sdk.spec()])
    runner = AsyncioRunner([sdk], fallback=ModelRunner(lead_model({"sdk": "x"})))
    exc = await cancel_mid_run(gate, lambda: delegator.run("go", runner=runner))
    assert type(exc) is trio.Cancelled


async def test_asyncio_runner_cancelled_mid_run() -> None:
    gate = Gate()
    pai = PydanticAIAgent(PaiAgent(pai_blocking(gate)), name="pai")
    runner = AsyncioRunner([pai])
    exc = await cancel_mid_run(gate, lambda: runner.run(pai.spec(), "go"))
    assert type(exc) is trio.Cancelled


async def test_a_peer_specialist_over_its_limits_is_refused() -> None:
    pai = PydanticAIAgent(PaiAgent(TestModel()), name="pai")
    spec = pai.spec(limits=UsageLimits(requests=0))
    runner = AsyncioRunner([pai])
    with pytest.raises(BudgetExhausted):
        await runner.run(spec, "hi")


async def test_run_timeout_cancels_the_peer(autojump_clock: trio.abc.Clock) -> None:
    gate = Gate()
    sdk = sdk_agent(SdkScripted(gate))
    with pytest.raises(RunTimeout) as caught:
        await sdk.run("hi", run_timeout=5)
    assert gate.cancelled == 1
    assert caught.value.result is not None
    assert caught.value.result.duration == pytest.approx(5)


# --------------------------------------------------------------------------- as a tool


async def test_a_peer_as_a_tool_of_an_agent() -> None:
    peer = PydanticAIAgent(
        PaiAgent(TestModel(custom_output_text="42")), name="oracle", description="Knows answers."
    )
    model = ScriptedModel([tool_call("oracle", {"prompt": "answer?"}), text("it is 42")])
    infra = SharedInfra(budget=Budget())
    agent = Agent(model, name="asker", tools=[peer.as_tool()], infra=infra, event_sink=infra.log)
    result = await agent.run("ask the oracle")
    assert result.final_text == "it is 42"
    (reply,) = [m for m in result.messages if isinstance(m, ToolResultMessage)]
    assert reply.results[0].content == "42"
    assert [e.agent for e in infra.log.events() if isinstance(e, RunStarted)] == [
        "asker",
        "asker/oracle",
    ]
    definition = peer.as_tool()
    assert definition.description == "Knows answers."
    assert list(definition.parameters["properties"]) == ["prompt"]  # type: ignore[arg-type]


async def test_a_failing_peer_tool_is_a_tool_error_the_model_reads() -> None:
    peer = sdk_agent(SdkScripted(RuntimeError("boom")), name="flaky")
    model = ScriptedModel([tool_call("flaky", {"prompt": "x"}), text("it failed")])
    result = await Agent(model, tools=[peer.as_tool()]).run("go")
    (reply,) = [m for m in result.messages if isinstance(m, ToolResultMessage)]
    assert reply.results[0].is_error
    assert "agent 'flaky' failed: InteropError" in reply.results[0].content


async def test_an_agent_cancelled_while_its_peer_tool_runs() -> None:
    gate = Gate()
    peer = sdk_agent(SdkScripted(gate), name="slow")
    model = ScriptedModel([tool_call("slow", {"prompt": "x"}), text("never")])
    agent = Agent(model, tools=[peer.as_tool()])
    exc = await cancel_mid_run(gate, lambda: agent.run("go"))
    assert type(exc) is trio.Cancelled


# --------------------------------------------------------------------------- bad input


async def test_bad_input_is_named() -> None:
    with pytest.raises(InvalidArgumentError, match=r"needs a pydantic_ai\.Agent"):
        PydanticAIAgent(object())
    with pytest.raises(InvalidArgumentError, match=r"needs an agents\.Agent"):
        OpenAIAgentsAgent(PaiAgent(TestModel()))
    with pytest.raises(InvalidArgumentError, match="needs name="):
        PydanticAIAgent(PaiAgent(TestModel()))
    with pytest.raises(InvalidArgumentError, match="do not pass usage="):
        PydanticAIAgent(PaiAgent(TestModel()), name="p", usage=None)
    with pytest.raises(InvalidArgumentError, match="without '/'"):
        PydanticAIAgent(PaiAgent(TestModel()), name="a/b")
    peer = PydanticAIAgent(PaiAgent(TestModel()), name="p")
    with pytest.raises(InvalidArgumentError, match="non-empty str"):
        await peer.run("")
    with pytest.raises(InvalidArgumentError, match="run_timeout"):
        await peer.run("x", run_timeout=0)
    with pytest.raises(InvalidArgumentError, match="at least one agent"):
        AsyncioRunner([])
    with pytest.raises(InvalidArgumentError, match="repeated"):
        AsyncioRunner([peer, peer])
    with pytest.raises(InvalidArgumentError, match="wrap one"):
        AsyncioRunner(peer)  # type: ignore[arg-type]
    runner = AsyncioRunner([peer])
    with pytest.raises(InvalidArgumentError, match="no agent named 'q' and no fallback"):
        await runner.run(AgentSpec(name="q"), "x")
    with pytest.raises(InvalidArgumentError, match="must not name tools"):
        await runner.run(AgentSpec(name="p", tools=("delegate",)), "x")
    with pytest.raises(InvalidArgumentError, match="output_types"):
        await runner.run(AgentSpec(name="p"), "x", output_type=int)


async def test_a_users_own_asyncio_agent_subclass() -> None:
    # the base class is the extension point for another framework
    class Echo(AsyncioAgent):
        framework = "echo"

        def _new_tally(self) -> list[int]:
            return []

        def _usage(self, tally: list[int]) -> Usage:
            return Usage(requests=len(tally))

        async def _run_peer(self, task: str, tally: list[int]) -> Any:
            await asyncio.sleep(0)
            tally.append(1)
            return task[::-1]

        def _map_error(self, exc: Exception) -> Any:
            return UsageError(str(exc))

    result = await Echo("echo", "Reverses.").run("abc")
    assert result.output == "cba" and result.usage.requests == 1


def test_importing_interop_loads_asyncio_but_the_core_does_not() -> None:
    import subprocess
    import sys

    code = (
        "import sys, trio_agents, trio_agents.testing; a = 'asyncio' in sys.modules;"
        "import trio_agents.interop; print(a, 'asyncio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
