"""Delegation: the delegate tool, failure policies, nesting, budgets, cancellation, records.

One :class:`FunctionModel` plays every agent: it looks at ``request.system`` (each spec's
instructions are its name) and answers with that role's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentError,
    AgentOrchestrator,
    AgentSpec,
    AuthenticationError,
    Backoff,
    Budget,
    BudgetExhausted,
    DelegatingExecutor,
    DelegationFailed,
    DelegationFinished,
    DelegationRecord,
    DelegationStarted,
    Delegator,
    DelegatorResult,
    Event,
    FailurePolicy,
    InvalidArgumentError,
    ModelOverloaded,
    ModelRequest,
    ModelRunner,
    ModelThrottled,
    RateLimiter,
    RetryPolicy,
    RetryScheduled,
    RunFinished,
    RunStarted,
    RunTimeout,
    SharedInfra,
    StopReason,
    TextBlock,
    ToolDefinition,
    ToolFinished,
    ToolResultBlock,
    ToolResultMessage,
    Toolset,
    Usage,
    UsageLimits,
    UserMessage,
    combine_executors,
    dump,
    dumps_json,
    load,
    loads_json,
    tool,
)
from trio_agents.testing import FunctionModel, ScriptStep, fail, hang, text, tool_call
from trio_agents.testing._models import FunctionResult

Role = Callable[[ModelRequest], FunctionResult]


# --------------------------------------------------------------------------- helpers


def spec(name: str, *, tools: tuple[str, ...] = (), **kwargs: object) -> AgentSpec:
    """A spec whose instructions are its name (so the team model can tell who is asking)."""
    return AgentSpec(name=name, instructions=name, tools=tools, **kwargs)  # type: ignore[arg-type]


def team(**roles: Role) -> FunctionModel:
    """One model for every agent, dispatching on the system prompt."""

    def respond(request: ModelRequest) -> FunctionResult:
        return roles[request.system or ""](request)

    return FunctionModel(respond, model_id="team")


def task_of(request: ModelRequest) -> str:
    first = request.messages[0]
    assert isinstance(first, UserMessage)
    block = first.content[0]
    assert isinstance(block, TextBlock)
    return block.text


def fan_out(*calls: tuple[str, str]) -> ScriptStep:
    step = tool_call("delegate", {"specialist": calls[0][0], "subtask": calls[0][1]})
    for name, subtask in calls[1:]:
        step = step + tool_call("delegate", {"specialist": name, "subtask": subtask})
    return step


def delegating(*calls: tuple[str, str]) -> Role:
    """Delegates ``calls`` in its first turn, then answers with every tool result joined."""

    def respond(request: ModelRequest) -> FunctionResult:
        last = request.messages[-1]
        if isinstance(last, UserMessage):
            return fan_out(*calls)
        assert isinstance(last, ToolResultMessage)
        return " | ".join(r.content for r in last.results)

    return respond


def answering(delay: float = 0.0) -> Role:
    def respond(request: ModelRequest) -> FunctionResult:
        return text(f"{request.system} did {task_of(request)}", delay=delay)

    return respond


def failing(error: Exception, delay: float = 0.0) -> Role:
    return lambda request: fail(error, delay=delay)


def hanging(request: ModelRequest) -> FunctionResult:
    return hang()


def tool_results(model: FunctionModel, system: str) -> list[ToolResultBlock]:
    """Every tool result the agent with instructions ``system`` was shown (last request)."""
    requests = [r for r in model.requests if r.system == system]
    found: list[ToolResultBlock] = []
    for message in requests[-1].messages:
        if isinstance(message, ToolResultMessage):
            found.extend(message.results)
    return found


def task_names(task: trio.lowlevel.Task) -> list[str]:
    """Names of every task under ``task``, depth-first."""
    names: list[str] = []
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            names.append(child.name)
            names.extend(task_names(child))
    return names


def no_retry_runner(model: FunctionModel, **kwargs: object) -> ModelRunner:
    return ModelRunner(model, retry=RetryPolicy(max_attempts=1), **kwargs)  # type: ignore[arg-type]


LEAD = spec("lead")
POOL = [spec("researcher"), spec("writer")]


# --------------------------------------------------------------------------- the tool


def test_delegate_tool_definition_is_exact() -> None:
    researcher = AgentSpec(
        name="researcher", instructions="Find facts.\nCite sources.", tools=("search",)
    )
    writer = AgentSpec(name="writer", metadata={"description": "Writes prose."})
    quiet = AgentSpec(name="quiet")
    delegator = Delegator(LEAD, {"researcher": researcher, "writer": writer, "quiet": quiet})
    assert delegator.definition() == ToolDefinition(
        name="delegate",
        description=(
            "Delegate a subtask to a specialist agent and get its answer back. The specialist "
            "sees only the subtask, so state it completely. Calls made in the same turn run "
            "in parallel. Specialists:\n"
            "- researcher: Find facts.\n"
            "- writer: Writes prose.\n"
            "- quiet"
        ),
        parameters={
            "type": "object",
            "properties": {
                "specialist": {
                    "type": "string",
                    "enum": ["researcher", "writer", "quiet"],
                    "description": "Name of the specialist to hand the subtask to.",
                },
                "subtask": {
                    "type": "string",
                    "description": "The subtask, stated completely: the specialist sees "
                    "nothing else.",
                },
            },
            "required": ["specialist", "subtask"],
            "additionalProperties": False,
        },
    )
    assert delegator.names == ("researcher", "writer", "quiet")


async def test_main_agent_sees_its_own_tools_and_delegate_specialists_only_theirs() -> None:
    @tool
    async def search(query: str) -> str:
        """Search."""
        return query

    @tool
    async def note(text: str) -> str:
        """Take a note."""
        return text

    lead = spec("lead", tools=("note",))
    researcher = spec("researcher", tools=("search",))
    model = team(lead=delegating(("researcher", "x")), researcher=answering())
    runner = ModelRunner(model, tools=[search, note])
    await Delegator(lead, [researcher]).run("go", runner=runner)
    lead_tools = [d.name for d in model.requests[0].tools]
    assert lead_tools == ["note", "delegate"]
    researcher_request = next(r for r in model.requests if r.system == "researcher")
    assert [d.name for d in researcher_request.tools] == ["search"]


# --------------------------------------------------------------------------- basics


async def test_parallel_delegations_run_concurrently(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = team(
        lead=delegating(("researcher", "find"), ("writer", "write")),
        researcher=answering(delay=10),
        writer=answering(delay=10),
    )
    events: list[Event] = []
    budget = Budget()
    result = await Delegator(LEAD, POOL).run(
        "report", runner=ModelRunner(model), event_sink=events.append, budget=budget
    )
    assert trio.current_time() == 10  # not 20: both specialists ran at once
    assert result.task == "report"
    assert result.final_answer == "researcher did find | writer did write"
    assert [(r.specialist, r.subtask, r.result) for r in result.delegations] == [
        ("researcher", "find", "researcher did find"),
        ("writer", "write", "writer did write"),
    ]
    for record in result.delegations:
        assert record.success
        assert not record.cancelled
        assert record.error is None
        assert record.duration == 10
        assert record.depth == 1
        assert record.attempts == 1
        assert record.usage.requests == 1
    assert [r.path for r in result.delegations] == ["lead/researcher", "lead/writer"]
    assert result.result.usage.requests == 2
    assert result.total_usage == result.result.usage + sum(
        (r.usage for r in result.delegations), Usage()
    )
    assert result.total_usage == budget.usage  # every response was charged to the tree
    # The event log shows the delegations, and the specialists' own runs, under their paths.
    started = [e for e in events if isinstance(e, DelegationStarted)]
    finished = [e for e in events if isinstance(e, DelegationFinished)]
    assert sorted(e.agent for e in started) == ["lead/researcher", "lead/writer"]
    assert sorted((e.agent, e.success, e.duration) for e in finished) == [
        ("lead/researcher", True, 10),
        ("lead/writer", True, 10),
    ]
    runs = sorted(e.agent for e in events if isinstance(e, RunStarted))
    assert runs == ["lead", "lead/researcher", "lead/writer"]


async def test_records_are_in_call_order_not_completion_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pool = [spec(name) for name in "abcd"]
    calls = [(name, f"job {name}") for name in "abcd"]
    delays = {"a": 4.0, "b": 1.0, "c": 3.0, "d": 2.0}
    roles: dict[str, Role] = {name: answering(delay) for name, delay in delays.items()}
    for _ in range(10):  # trio shuffles runnable tasks; the order must not depend on it
        model = team(lead=delegating(*calls), **roles)
        result = await Delegator(LEAD, pool).run("go", runner=ModelRunner(model))
        assert [r.specialist for r in result.delegations] == ["a", "b", "c", "d"]


async def test_unknown_specialist_is_a_result_the_model_can_read() -> None:
    model = team(lead=delegating(("oracle", "predict"), ("writer", "w")), writer=answering())
    result = await Delegator(LEAD, POOL).run("go", runner=ModelRunner(model))
    shown = tool_results(model, "lead")
    assert shown[0].is_error
    assert shown[0].content == (
        "unknown specialist 'oracle'; available specialists: researcher, writer"
    )
    assert not shown[1].is_error
    first = result.delegations[0]
    assert (first.specialist, first.success, first.attempts) == ("oracle", False, 0)
    assert first.result == shown[0].content
    assert result.delegations[1].success


async def test_malformed_arguments_get_an_error_and_no_record() -> None:
    def lead(request: ModelRequest) -> FunctionResult:
        if isinstance(request.messages[-1], UserMessage):
            return tool_call("delegate", {"specialist": "writer"})
        return "gave up"

    model = team(lead=lead)
    result = await Delegator(LEAD, POOL).run("go", runner=ModelRunner(model))
    shown = tool_results(model, "lead")
    assert shown[0].is_error
    assert "needs 'specialist' and 'subtask' as strings" in shown[0].content
    assert "researcher, writer" in shown[0].content
    assert result.delegations == ()


async def test_failed_specialist_is_isolated() -> None:
    model = team(
        lead=delegating(("researcher", "r"), ("writer", "w")),
        researcher=failing(AuthenticationError("bad key")),
        writer=answering(),
    )
    result = await Delegator(LEAD, POOL).run("go", runner=no_retry_runner(model))
    shown = tool_results(model, "lead")
    assert shown[0].is_error
    assert shown[0].content == "specialist 'researcher' failed: AuthenticationError: bad key"
    failed, ok = result.delegations
    assert not failed.success
    assert failed.error == "AuthenticationError: bad key"
    assert failed.result == shown[0].content
    assert not failed.cancelled
    assert ok.success
    assert result.final_answer.endswith("writer did w")


# --------------------------------------------------------------------------- failure policies


async def test_fail_fast_cancels_siblings_and_fails_the_main_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = team(
        lead=delegating(("researcher", "r"), ("writer", "w")),
        researcher=failing(AuthenticationError("bad key"), delay=1),
        writer=hanging,
    )
    delegator = Delegator(LEAD, POOL, failure_policy="fail_fast")
    assert delegator.failure_policy is FailurePolicy.FAIL_FAST
    with pytest.raises(DelegationFailed) as caught:
        await delegator.run("go", runner=no_retry_runner(model))
    assert trio.current_time() == 1
    error = caught.value
    assert isinstance(error, AgentError)
    assert error.specialist == "researcher"
    assert isinstance(error.cause, AuthenticationError)
    assert error.__cause__ is error.cause
    assert str(error) == "specialist 'researcher' failed: AuthenticationError: bad key"
    assert error.result is not None  # the main agent's partial run
    assert error.result.turns == 1
    failed, sibling = error.delegations
    assert (failed.specialist, failed.success, failed.cancelled) == ("researcher", False, False)
    assert (sibling.specialist, sibling.success, sibling.cancelled) == ("writer", False, True)
    assert sibling.error == "Cancelled: delegation to 'researcher' failed (fail_fast)"
    assert task_names(trio.lowlevel.current_task()) == []


async def test_retry_runs_a_fresh_specialist_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[float] = []

    def flaky(request: ModelRequest) -> FunctionResult:
        attempts.append(trio.current_time())
        if len(attempts) == 1:
            raise ModelOverloaded("busy")
        if len(attempts) == 2:
            raise ModelThrottled("slow down", retry_after=5.0)
        assert len(request.messages) == 1  # a fresh agent: no history from earlier attempts
        return "finally"

    model = team(lead=delegating(("researcher", "r")), researcher=flaky)
    events: list[Event] = []
    delegator = Delegator(
        LEAD,
        POOL,
        failure_policy=FailurePolicy.RETRY,
        max_retries=2,
        retry_backoff=Backoff(initial=1.0, factor=2.0, jitter=False),
    )
    result = await delegator.run("go", runner=no_retry_runner(model), event_sink=events.append)
    assert attempts == [0, 1, 6]  # backoff 1, then max(2, retry_after=5)
    (record,) = result.delegations
    assert record.success
    assert record.result == "finally"
    assert record.attempts == 3
    assert record.duration == 6
    retries = [e for e in events if isinstance(e, RetryScheduled)]
    assert [(e.agent, e.attempt, e.delay, e.error.type) for e in retries] == [
        ("lead/researcher", 1, 1.0, "ModelOverloaded"),
        ("lead/researcher", 2, 5.0, "ModelThrottled"),
    ]


async def test_retry_gives_up_after_max_retries(autojump_clock: trio.testing.MockClock) -> None:
    model = team(lead=delegating(("researcher", "r")), researcher=failing(ModelOverloaded("x")))
    delegator = Delegator(
        LEAD, POOL, failure_policy="retry", max_retries=2, retry_backoff=Backoff.none()
    )
    result = await delegator.run("go", runner=no_retry_runner(model))
    (record,) = result.delegations
    assert (record.success, record.attempts) == (False, 3)
    assert record.result == "specialist 'researcher' failed: ModelOverloaded: x"
    assert len([r for r in model.requests if r.system == "researcher"]) == 3


async def test_retry_does_not_retry_misuse() -> None:
    # The spec names a tool the runner does not have: InvalidArgumentError, not retried.
    broken = spec("researcher", tools=("missing",))
    model = team(lead=delegating(("researcher", "r")))
    delegator = Delegator(LEAD, [broken], failure_policy="retry", retry_backoff=Backoff.none())
    result = await delegator.run("go", runner=ModelRunner(model))
    (record,) = result.delegations
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.startswith("InvalidArgumentError: AgentSpec 'researcher' names unknown")


# --------------------------------------------------------------------------- nesting


async def test_nested_delegation_records_are_depth_first_and_usage_adds_up() -> None:
    pool = [spec("a", tools=("delegate",)), spec("b"), spec("c")]
    model = team(
        lead=delegating(("a", "plan"), ("b", "build")),
        a=delegating(("c", "check")),
        b=answering(),
        c=answering(),
    )
    budget = Budget()
    events: list[Event] = []
    result = await Delegator(LEAD, pool).run(
        "go", runner=ModelRunner(model), budget=budget, event_sink=events.append
    )
    assert [(r.specialist, r.depth, r.path) for r in result.delegations] == [
        ("a", 1, "lead/a"),
        ("c", 2, "lead/a/c"),
        ("b", 1, "lead/b"),
    ]
    a, c, b = result.delegations
    assert a.result == "c did check"
    assert a.usage.requests == 2 + 1  # a's two turns and c's answer
    assert a.usage == c.usage + Usage(
        requests=2,
        input_tokens=a.usage.input_tokens - c.usage.input_tokens,
        output_tokens=a.usage.output_tokens - c.usage.output_tokens,
    )
    assert result.total_usage == result.result.usage + a.usage + b.usage
    assert result.total_usage == budget.usage
    assert budget.agents_started == 3
    paths = {e.agent for e in events if isinstance(e, RunStarted)}
    assert paths == {"lead", "lead/a", "lead/a/c", "lead/b"}


async def test_depth_limit_is_an_error_result() -> None:
    pool = [spec("a", tools=("delegate",)), spec("b")]
    model = team(lead=delegating(("a", "x")), a=delegating(("b", "y")), b=answering())
    result = await Delegator(LEAD, pool, max_depth=1).run("go", runner=ModelRunner(model))
    a, b = result.delegations
    assert (b.specialist, b.depth, b.success, b.attempts) == ("b", 2, False, 0)
    assert b.result.startswith("delegation depth limit 1 reached")
    assert a.success
    assert a.result == b.result  # a answered with the tool result it was shown
    assert not any(r.system == "b" for r in model.requests)


async def test_cycles_are_rejected_with_the_path() -> None:
    pool = [spec("a", tools=("delegate",)), spec("b", tools=("delegate",))]
    model = team(lead=delegating(("a", "x")), a=delegating(("b", "y")), b=delegating(("a", "z")))
    result = await Delegator(LEAD, pool).run("go", runner=ModelRunner(model))
    assert [(r.specialist, r.depth, r.success) for r in result.delegations] == [
        ("a", 1, True),
        ("b", 2, True),
        ("a", 3, False),
    ]
    assert result.delegations[2].result == "delegation cycle: lead -> a -> b -> a"
    assert result.final_answer == "delegation cycle: lead -> a -> b -> a"


async def test_self_delegation_is_a_cycle() -> None:
    pool = [spec("a", tools=("delegate",))]
    model = team(lead=delegating(("a", "x")), a=delegating(("a", "again")))
    result = await Delegator(LEAD, pool).run("go", runner=ModelRunner(model))
    assert result.delegations[1].result == "delegation cycle: lead -> a -> a"


# --------------------------------------------------------------------------- cancellation


async def test_cancelling_the_caller_cancels_every_specialist_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pool = [spec("a", tools=("delegate",)), spec("b"), spec("c")]
    model = team(
        lead=delegating(("a", "plan"), ("b", "build")),
        a=delegating(("c", "check")),
        b=hanging,
        c=hanging,
    )
    events: list[Event] = []
    here = trio.lowlevel.current_task()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: Delegator(LEAD, pool).run(
                "go", runner=ModelRunner(model), event_sink=events.append
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        running = task_names(here)
        assert {"delegate lead/a", "delegate lead/b", "delegate lead/a/c"} <= set(running)
        nursery.cancel_scope.cancel(reason="test is done")
    assert trio.current_time() == 0
    assert task_names(here) == []
    finished = {e.agent: e for e in events if isinstance(e, DelegationFinished)}
    assert set(finished) == {"lead/a", "lead/b", "lead/a/c"}
    for event in finished.values():
        assert event.cancelled
        assert not event.success
        assert event.error == "Cancelled: test is done"


async def test_a_deadline_around_run_leaves_it_as_the_bare_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The minimal case: the lead delegates once, the specialist hangs, the caller's deadline
    # passes. What leaves run() is trio.Cancelled itself, not a group holding it, and every
    # cut-off run says ABORTED.
    model = team(lead=delegating(("researcher", "r")), researcher=hanging)
    events: list[Event] = []
    left: list[BaseException] = []
    with trio.move_on_after(5) as scope:
        try:
            await Delegator(LEAD, POOL).run(
                "go", runner=ModelRunner(model), event_sink=events.append
            )
        except BaseException as exc:
            left.append(exc)
            raise
    assert scope.cancelled_caught
    assert [type(exc) for exc in left] == [trio.Cancelled]
    runs = {e.agent: e.result for e in events if isinstance(e, RunFinished)}
    assert {path: r.stop_reason for path, r in runs.items()} == {
        "lead": StopReason.ABORTED,
        "lead/researcher": StopReason.ABORTED,
    }
    assert runs["lead"].usage.requests == 1
    (finished,) = [e for e in events if isinstance(e, ToolFinished)]
    assert finished.result.content == "tool 'delegate' was cancelled"


async def test_main_run_timeout_cancels_specialists(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lead = spec("lead", run_timeout=5.0)
    pool = [spec("a", tools=("delegate",)), spec("b")]
    model = team(lead=delegating(("a", "x")), a=delegating(("b", "y")), b=hanging)
    events: list[Event] = []
    with pytest.raises(RunTimeout):
        await Delegator(lead, pool).run("go", runner=ModelRunner(model), event_sink=events.append)
    assert trio.current_time() == 5
    finished = sorted(
        (e.agent, e.cancelled, e.duration) for e in events if isinstance(e, DelegationFinished)
    )
    assert finished == [("lead/a", True, 5), ("lead/a/b", True, 5)]


# --------------------------------------------------------------------------- budgets


async def test_budget_exhausted_mid_fan_out_stops_new_delegations() -> None:
    pool = [spec(name) for name in "abcd"]
    model = team(lead=delegating(*[(n, n) for n in "abcd"]), **{n: answering() for n in "abcd"})
    budget = Budget(UsageLimits(agents=2))
    infra = SharedInfra(budget=budget)
    result = await Delegator(LEAD, pool).run("go", runner=ModelRunner(model), infra=infra)
    records = result.delegations
    assert [r.specialist for r in records] == ["a", "b", "c", "d"]
    assert sum(r.success for r in records) == 2
    assert budget.agents_started == 2
    refused = [r for r in records if not r.success]
    for record in refused:
        assert record.attempts == 0
        assert record.result == (
            f"specialist {record.specialist!r} was not started: "
            "agent budget exhausted: 2 of 2 agents started"
        )
    assert sum(r.system in tuple("abcd") for r in model.requests) == 2


async def test_spec_limits_shrink_the_budget_for_sub_delegations() -> None:
    # a may start only one agent of its own (its spec's limits), whatever the tree allows.
    pool = [spec("a", tools=("delegate",), limits=UsageLimits(agents=1)), spec("b")]
    model = team(lead=delegating(("a", "x")), a=delegating(("b", "1"), ("b", "2")), b=answering())
    result = await Delegator(LEAD, pool).run("go", runner=ModelRunner(model))
    nested = [r for r in result.delegations if r.depth == 2]
    assert sorted(r.success for r in nested) == [False, True]


async def test_fail_fast_treats_a_refused_delegation_as_a_failure() -> None:
    model = team(lead=delegating(("researcher", "r")))
    infra = SharedInfra(budget=Budget(UsageLimits(agents=0)))
    delegator = Delegator(LEAD, POOL, failure_policy="fail_fast")
    with pytest.raises(DelegationFailed) as caught:
        await delegator.run("go", runner=ModelRunner(model), infra=infra)
    assert isinstance(caught.value.cause, BudgetExhausted)
    (record,) = caught.value.delegations
    assert record.attempts == 0


# --------------------------------------------------------------------------- infra


async def test_shared_infra_supplies_log_policies_and_budget() -> None:
    @tool
    async def secret() -> str:
        """Read the secret."""
        return "42"

    researcher = spec("researcher", tools=("secret",))

    def research(request: ModelRequest) -> FunctionResult:
        last = request.messages[-1]
        if isinstance(last, UserMessage):
            return tool_call("secret")
        assert isinstance(last, ToolResultMessage)
        return last.results[0].content

    model = team(lead=delegating(("researcher", "r")), researcher=research)
    infra = SharedInfra(budget=Budget())
    infra.policies.deny_tool("no secrets", "secret")
    result = await Delegator(LEAD, [researcher]).run(
        "go", runner=ModelRunner(model, tools=[secret]), infra=infra
    )
    (record,) = result.delegations
    assert record.result.startswith("tool call denied: policy check 'no secrets'")
    kinds = {(e.kind, e.agent) for e in infra.log}
    assert ("delegation_started", "lead/researcher") in kinds
    assert ("delegation_finished", "lead/researcher") in kinds
    assert ("run_started", "lead/researcher") in kinds
    span = infra.log.tree().find("lead/researcher")
    assert span is not None
    assert infra.budget is not None
    assert infra.budget.usage == result.total_usage


async def test_tree_wide_rate_limits_reach_the_specialists(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One request at a time for the model id "team": the two specialists take turns.
    model = team(
        lead=delegating(("researcher", "r"), ("writer", "w")),
        researcher=answering(delay=10),
        writer=answering(delay=10),
    )
    infra = SharedInfra(rate_limits={"team": RateLimiter(max_concurrent=1)})
    result = await Delegator(LEAD, POOL).run("go", runner=ModelRunner(model), infra=infra)
    assert trio.current_time() == 20
    assert sorted(r.duration for r in result.delegations) == [10, 20]


async def test_policies_apply_to_the_delegate_tool_itself() -> None:
    model = team(lead=delegating(("researcher", "r")))
    infra = SharedInfra()
    infra.policies.deny_tool("no delegation", "delegate")
    result = await Delegator(LEAD, POOL).run("go", runner=ModelRunner(model), infra=infra)
    assert result.delegations == ()
    assert result.final_answer.startswith("tool call denied: policy check 'no delegation'")


# --------------------------------------------------------------------------- live agents


async def test_delegating_to_a_live_orchestrated_agent() -> None:
    def echo(request: ModelRequest) -> FunctionResult:
        return f"live: {task_of(request)}"

    orchestrator = AgentOrchestrator()
    orchestrator.add_agent("researcher", lambda: Agent(FunctionModel(echo), name="researcher"))
    async with orchestrator.open() as system:
        handle = await system.spawn("researcher")
        model = team(lead=delegating(("researcher", "look it up")))
        delegator = Delegator(LEAD, {}, handles={"researcher": handle})
        assert delegator.names == ("researcher",)
        result = await delegator.run("go", runner=ModelRunner(model))
        assert handle.statistics().requests_served == 1
        (record,) = result.delegations
        assert record.success
        assert record.result == "live: look it up"
        assert record.usage.requests == 1
        assert record.path == "lead/researcher"
        assert result.total_usage == result.result.usage + handle.statistics().usage


async def test_executor_serves_an_agent_built_by_hand() -> None:
    model = team(
        boss=delegating(("researcher", "r"), ("writer", "w")),
        **{"researcher": answering(), "writer": answering()},
    )

    @tool
    async def clock() -> float:
        """Now."""
        return 0.0

    delegator = Delegator(LEAD, POOL)
    executor = delegator.executor(runner=ModelRunner(model), path="boss")
    assert isinstance(executor, DelegatingExecutor)
    agent = Agent(
        model, name="boss", instructions="boss", tools=combine_executors(Toolset([clock]), executor)
    )
    result = await agent.run("go")
    assert result.final_text == "researcher did r | writer did w"
    assert [(r.path, r.success) for r in executor.records()] == [
        ("boss/researcher", True),
        ("boss/writer", True),
    ]


# --------------------------------------------------------------------------- serialisation


async def test_records_results_and_events_round_trip() -> None:
    model = team(lead=delegating(("researcher", "r"), ("oracle", "o")), researcher=answering())
    events: list[Event] = []
    result = await Delegator(LEAD, POOL).run(
        "go", runner=ModelRunner(model), event_sink=events.append
    )
    for record in result.delegations:
        assert load(dump(record), DelegationRecord) == record
        assert loads_json(dumps_json(record), DelegationRecord) == record
    assert load(dump(result), DelegatorResult) == result
    assert loads_json(dumps_json(result), DelegatorResult) == result
    delegation_events = [e for e in events if isinstance(e, DelegationStarted | DelegationFinished)]
    assert len(delegation_events) == 4
    for event in delegation_events:
        assert loads_json(dumps_json(event), Event) == event
    data = dump(result.delegations[1])
    assert data["specialist"] == "oracle"
    assert data["usage"]["requests"] == 0


# --------------------------------------------------------------------------- misuse


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(InvalidArgumentError, match=r"failure_policy must be .*'isolate'"):
        Delegator(LEAD, POOL, failure_policy="panic")
    with pytest.raises(InvalidArgumentError, match="max_retries must be an int >= 0"):
        Delegator(LEAD, POOL, max_retries=-1)
    with pytest.raises(InvalidArgumentError, match="max_depth must be an int >= 1"):
        Delegator(LEAD, POOL, max_depth=0)
    with pytest.raises(InvalidArgumentError, match="at least one specialist or handle"):
        Delegator(LEAD, {})
    with pytest.raises(InvalidArgumentError, match="the key must be the spec's name"):
        Delegator(LEAD, {"writer": spec("researcher")})
    with pytest.raises(InvalidArgumentError, match=r"handles\['x'\] must be an AgentHandle"):
        Delegator(LEAD, POOL, handles={"x": object()})  # type: ignore[dict-item]
    model = FunctionModel(lambda request: "hi")
    with pytest.raises(InvalidArgumentError, match=r"unexpected agent arguments \['name'\]"):
        ModelRunner(model, name="x")


def test_model_runner_picks_the_model_by_spec_model_id() -> None:
    fast = FunctionModel(lambda request: "fast", model_id="fast")
    smart = FunctionModel(lambda request: "smart", model_id="smart")
    runner = ModelRunner({"fast": fast, "smart": smart})
    assert runner.model_for(spec("a", model="smart")) is smart
    with pytest.raises(
        InvalidArgumentError, match="asks for model 'huge'; known models: fast, smart"
    ):
        runner.model_for(spec("a", model="huge"))
    with pytest.raises(InvalidArgumentError, match="has model=None but the runner has several"):
        runner.model_for(spec("a"))
    assert ModelRunner({"only": fast}).model_for(spec("a")) is fast
    assert ModelRunner(fast).model_for(spec("a", model="anything")) is fast


async def test_unknown_model_id_fails_the_specialist_not_the_tree() -> None:
    lead_model = team(lead=delegating(("researcher", "r")))
    runner = ModelRunner({"team": lead_model})
    pool = [spec("researcher", model="missing")]
    result = await Delegator(spec("lead", model="team"), pool).run("go", runner=runner)
    (record,) = result.delegations
    assert record.error == (
        "InvalidArgumentError: AgentSpec 'researcher' asks for model 'missing'; known models: team"
    )
