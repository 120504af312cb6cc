"""SharedInfra: defaults, model_for, and the services seen from agents and tools."""

from __future__ import annotations

import pytest
import trio

from trio_agents import (
    Agent,
    Budget,
    EventLog,
    InvalidArgumentError,
    PolicyDenied,
    PolicyEngine,
    RateLimitedModel,
    RateLimiter,
    SharedInfra,
    StateStore,
    ToolContext,
    UsageLimits,
    tool,
)
from trio_agents.testing import ScriptedModel, tool_call


def test_defaults_are_fresh_and_empty() -> None:
    one, two = SharedInfra(), SharedInfra()
    assert isinstance(one.state, StateStore) and len(one.state) == 0
    assert isinstance(one.log, EventLog) and len(one.log) == 0
    assert isinstance(one.policies, PolicyEngine) and one.policies.checks == []
    assert one.budget is None
    assert one.rate_limits == {}
    assert one.state is not two.state
    assert one.log is not two.log
    assert one.policies is not two.policies
    assert one.rate_limits is not two.rate_limits
    # the default policy engine reports its denials to the infra's own log
    assert one.policies.event_sink is one.log


def test_given_services_are_kept() -> None:
    state, log, policies = StateStore(), EventLog(), PolicyEngine()
    budget = Budget(UsageLimits(requests=3))
    limiter = RateLimiter(max_concurrent=2)
    infra = SharedInfra(
        state=state,
        log=log,
        policies=policies,
        budget=budget,
        rate_limits={"m": limiter},
    )
    assert (infra.state, infra.log, infra.policies, infra.budget) == (state, log, policies, budget)
    assert infra.rate_limits == {"m": limiter}
    assert policies.event_sink is None  # a given engine is not rewired


def test_fields_are_checked() -> None:
    for kwargs, message in [
        ({"state": {}}, "SharedInfra.state must be a StateStore"),
        ({"log": []}, "SharedInfra.log must be an EventLog"),
        ({"policies": object()}, "SharedInfra.policies must be a PolicyEngine"),
        ({"budget": UsageLimits()}, "SharedInfra.budget must be a Budget or None"),
        ({"rate_limits": {"m": 5}}, "SharedInfra.rate_limits must be a dict of model id"),
        ({"rate_limits": [RateLimiter()]}, "SharedInfra.rate_limits must be a dict of model id"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            SharedInfra(**kwargs)  # type: ignore[arg-type]


def test_model_for() -> None:
    limiter = RateLimiter(max_concurrent=1)
    infra = SharedInfra(rate_limits={"limited": limiter})
    free = ScriptedModel(model_id="free")
    assert infra.model_for(free) is free
    limited = ScriptedModel(model_id="limited")
    wrapped = infra.model_for(limited)
    assert isinstance(wrapped, RateLimitedModel)
    assert wrapped.model is limited and wrapped.limiter is limiter
    assert wrapped.model_id == "limited"
    assert infra.model_for(wrapped) is wrapped  # never limited twice by the same limiter
    other = RateLimitedModel(limited, RateLimiter(max_concurrent=3))
    assert infra.model_for(other).limiter is limiter  # type: ignore[attr-defined]
    # limiters registered later apply to later calls
    infra.rate_limits["free"] = limiter
    assert isinstance(infra.model_for(free), RateLimitedModel)
    with pytest.raises(InvalidArgumentError, match="model must implement"):
        infra.model_for("limited")  # type: ignore[arg-type]


@tool
async def remember(ctx: ToolContext, key: str, value: str) -> str:
    """Store a value in the shared state."""
    ctx.infra.state.set(key, value, by=ctx.agent)
    return "stored"


@tool
async def recall(ctx: ToolContext, key: str) -> str:
    """Read a value from the shared state."""
    return str(ctx.infra.state.get(key, "nothing"))


async def test_tools_share_state_through_the_tool_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    infra = SharedInfra()
    infra.policies.require_state("recall-after-remember", "topic", tool="recall")

    def agent(name: str, script: list[object]) -> Agent:
        return Agent(
            ScriptedModel(script),  # type: ignore[arg-type]
            name=name,
            path=f"lead/{name}",
            tools=[remember, recall],
            infra=infra,
            policy=infra.policies,
            event_sink=infra.log,
        )

    reader = agent("reader", [tool_call("recall", {"key": "topic"}), "gave up"])
    result = await reader.run("what is the topic?")
    assert result.final_text == "gave up"
    assert [e.check for e in infra.log.events(PolicyDenied)] == [  # type: ignore[attr-defined]
        "recall-after-remember"
    ]

    writer = agent("writer", [tool_call("remember", {"key": "topic", "value": "trio"}), "ok"])
    await writer.run("remember the topic")
    [transition] = infra.state.transitions()
    assert (transition.key, transition.new, transition.by) == ("topic", "trio", "lead/writer")

    reader2 = agent("reader2", [tool_call("recall", {"key": "topic"}), "it is trio"])
    result = await reader2.run("what is the topic?")
    tool_results = [
        block.content for message in result.messages for block in getattr(message, "results", ())
    ]
    assert tool_results == ["trio"]
    spans = infra.log.tree().find("lead")
    assert spans is not None
    assert [child.path for child in spans.children] == [
        "lead/reader",
        "lead/writer",
        "lead/reader2",
    ]
