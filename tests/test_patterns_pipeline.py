"""Agent as tool and pipelines (sequential, parallel merges), on scripted models."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentSpec,
    Budget,
    Event,
    InvalidArgumentError,
    ModelOverloaded,
    ModelRunner,
    RateLimiter,
    RetryPolicy,
    SharedInfra,
    ToolResultMessage,
    UsageLimits,
    dump,
    load,
    tool,
)
from trio_agents.patterns import (
    Merge,
    PipelineResult,
    Step,
    StepFailed,
    StepFinished,
    StepOutput,
    agent_tool,
    run_parallel,
    run_sequential,
)
from trio_agents.testing import (
    FunctionModel,
    ScriptedModel,
    ScriptItem,
    fail,
    hang,
    strategies,
    text,
    tool_call,
)


def scripted(name: str, *script: ScriptItem, tools: list[object] | None = None) -> Step:
    def build() -> Agent:
        return Agent(
            ScriptedModel(script),
            name=name,
            tools=tools or [],  # type: ignore[arg-type]
            retry=RetryPolicy(max_attempts=1),
        )

    return Step(name, build)


class Watch:
    """A ``work`` tool that sleeps and records whether it finished or was cancelled."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def tool(self, label: str, seconds: float):  # type: ignore[no-untyped-def]
        @tool(name="work")
        async def work() -> str:
            """Work for a while."""
            try:
                await trio.sleep(seconds)
            except trio.Cancelled:
                self.log.append(f"{label} cancelled")
                raise
            self.log.append(f"{label} done")
            return f"{label} worked"

        return work

    def step(self, label: str, seconds: float, answer: str | None = None) -> Step:
        return scripted(
            label, tool_call("work"), answer or f"{label} answer", tools=[self.tool(label, seconds)]
        )


# --------------------------------------------------------------------------- agent as tool


async def test_agent_tool_gives_each_call_its_own_instance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    built: list[Agent] = []
    running_together = trio.Event()

    def researcher() -> Agent:
        async def respond(request):  # type: ignore[no-untyped-def]
            if sum(agent.running for agent in built) == 2:
                running_together.set()
            await running_together.wait()
            return f"notes on {request.messages[-1].content[0].text}"

        agent = Agent(FunctionModel(respond), name="researcher")
        built.append(agent)
        return agent

    ask = agent_tool(researcher, name="research", description="Research a topic.")
    lead = Agent(
        ScriptedModel(
            [
                tool_call("research", {"prompt": "trio"})
                + tool_call("research", {"prompt": "attrs"}),
                "summary",
            ]
        ),
        tools=[ask],
    )
    result = await lead.run("go")
    assert len(built) == 2 and built[0] is not built[1]
    tool_results = next(m for m in result.messages if isinstance(m, ToolResultMessage)).results
    assert sorted(b.content for b in tool_results) == ["notes on attrs", "notes on trio"]
    assert built[0].messages != built[1].messages  # two conversations, never shared


async def test_agent_tool_errors_become_tool_results_and_output_maps() -> None:
    def broken() -> Agent:
        return Agent(
            ScriptedModel([fail(ModelOverloaded("busy"))]),
            name="helper",
            retry=RetryPolicy(max_attempts=1),
        )

    def counted() -> Agent:
        return Agent(ScriptedModel(["four words in here"]), name="counter")

    lead = Agent(
        ScriptedModel(
            [tool_call("broken", {"prompt": "x"}) + tool_call("count", {"prompt": "y"}), "ok"]
        ),
        tools=[
            agent_tool(broken, name="broken", description="Fails."),
            agent_tool(
                counted,
                name="count",
                description="Counts.",
                output=lambda r: str(len(r.final_text.split())),
            ),
        ],
    )
    result = await lead.run("go")
    assert result.final_text == "ok"
    blocks = {
        b.tool_name: b
        for m in result.messages
        if isinstance(m, ToolResultMessage)
        for b in m.results
    }
    assert blocks["broken"].is_error
    assert "agent 'helper' failed: ModelOverloaded: busy" in blocks["broken"].content
    assert blocks["count"].content == "4" and not blocks["count"].is_error


async def test_agent_tool_aborted_agent_is_a_tool_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    built: list[Agent] = []

    def aborting() -> Agent:
        agent = Agent(ScriptedModel([hang()]), name="slow")
        built.append(agent)
        return agent

    async def abort_soon() -> None:
        await trio.sleep(1)
        built[0].abort("enough")

    lead = Agent(
        ScriptedModel([tool_call("slow", {"prompt": "x"}), "ok"]),
        tools=[agent_tool(aborting, name="slow", description="Slow.")],
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(abort_soon)
        result = await lead.run("go")
    block = next(m for m in result.messages if isinstance(m, ToolResultMessage)).results[0]
    assert block.is_error and "was stopped before it answered" in block.content


def test_agent_tool_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="callable factory"):
        agent_tool("nope", name="x", description="d")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="non-empty str"):
        agent_tool(lambda: Agent(ScriptedModel([])), name="", description="d")


# --------------------------------------------------------------------------- sequential


async def test_sequential_passes_each_answer_on() -> None:
    models: list[ScriptedModel] = []

    def step(name: str, answer: str) -> Step:
        def build() -> Agent:
            model = ScriptedModel([answer])
            models.append(model)
            return Agent(model, name=name)

        return Step(name, build)

    events: list[Event] = []
    out = await run_sequential(
        [step("draft", "a draft"), step("edit", "an edit")], "write", event_sink=events.append
    )
    assert out.output == "an edit"
    assert [o.step for o in out.outputs] == ["draft", "edit"]
    assert models[1].requests[0].messages[-1].content[0].text == "a draft"  # type: ignore[union-attr]
    assert len(models[1].requests[0].messages) == 1
    assert [(e.agent, e.ok) for e in events if isinstance(e, StepFinished)] == [
        ("draft", True),
        ("edit", True),
    ]


async def test_sequential_can_pass_the_transcript() -> None:
    models: list[ScriptedModel] = []

    def step(name: str, answer: str) -> Step:
        def build() -> Agent:
            model = ScriptedModel([answer])
            models.append(model)
            return Agent(model, name=name)

        return Step(name, build)

    await run_sequential(
        [step("a", "one"), step("b", "two"), step("c", "three")], "start", pass_transcript=True
    )
    seen = [m.content[0].text for m in models[2].requests[0].messages]  # type: ignore[union-attr]
    assert seen == ["start", "[a] one", "one", "[b] two", "two"]


async def test_sequential_failure_names_step_and_agent_and_keeps_outputs() -> None:
    steps = [
        scripted("draft", "a draft"),
        scripted("edit", fail(ModelOverloaded("busy"))),
        scripted("never", "x"),
    ]
    with pytest.raises(
        StepFailed, match=r"step 1 \('edit', agent 'edit'\) failed: ModelOverloaded"
    ) as info:
        await run_sequential(steps, "go")
    assert [o.step for o in info.value.outputs] == ["draft"]
    assert isinstance(info.value.__cause__, ModelOverloaded)


def test_bad_steps() -> None:
    with pytest.raises(InvalidArgumentError, match="non-empty str"):
        Step("", lambda: Agent(ScriptedModel([])))
    with pytest.raises(InvalidArgumentError, match="zero-argument factory"):
        Step("a", "nope")  # type: ignore[arg-type]


async def test_bad_pipeline_arguments() -> None:
    one = scripted("a", "x")
    with pytest.raises(InvalidArgumentError, match="non-empty sequence of Step"):
        await run_sequential([], "go")
    with pytest.raises(InvalidArgumentError, match=r"unique, repeated: \['a'\]"):
        await run_parallel([one, one], "go")
    with pytest.raises(InvalidArgumentError, match="CONCAT, FIRST, FASTEST, CUSTOM"):
        await run_parallel([one], "go", merge="first")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"from 1 to the number of branches \(1\)"):
        await run_parallel([one], "go", merge=Merge.FASTEST, n=2)


# --------------------------------------------------------------------------- parallel


async def test_custom_merge_gives_the_aggregator_the_labelled_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[str] = []

    def aggregate(request):  # type: ignore[no-untyped-def]
        seen.append(request.messages[-1].content[0].text)
        return "merged"

    out = await run_parallel(
        [scripted("x", text("one", delay=2)), scripted("y", "two")],
        "q",
        merge=Merge.CUSTOM,
        aggregator=lambda: Agent(FunctionModel(aggregate), name="agg"),
    )
    assert seen == ["q\n\n[x]\none\n\n[y]\ntwo"]
    assert out.output == "merged"
    assert [o.step for o in out.outputs] == ["x", "y", "aggregate"]
    with pytest.raises(InvalidArgumentError, match=r"aggregator= goes with merge=Merge\.CUSTOM"):
        await run_parallel([scripted("x", "1")], "q", merge=Merge.CUSTOM)
    with pytest.raises(InvalidArgumentError, match=r"aggregator= goes with merge=Merge\.CUSTOM"):
        await run_parallel([scripted("x", "1")], "q", aggregator=lambda: Agent(ScriptedModel([])))


async def test_concat_keeps_declaration_order(autojump_clock: trio.testing.MockClock) -> None:
    watch = Watch()
    out = await run_parallel([watch.step("slow", 5), watch.step("fast", 1)], "go")
    assert [o.step for o in out.outputs] == ["slow", "fast"]
    assert out.output == "[slow]\nslow answer\n\n[fast]\nfast answer"
    assert watch.log == ["fast done", "slow done"]
    assert trio.current_time() == 5  # they ran at the same time


async def test_concat_failure_cancels_the_others(autojump_clock: trio.testing.MockClock) -> None:
    watch = Watch()
    branches = [watch.step("slow", 5), scripted("bad", fail(ModelOverloaded("down"), delay=1))]
    with pytest.raises(StepFailed, match=r"step 1 \('bad', agent 'bad'\)"):
        await run_parallel(branches, "go")
    assert watch.log == ["slow cancelled"]


async def test_first_wins_and_losers_are_cancelled(autojump_clock: trio.testing.MockClock) -> None:
    watch = Watch()
    events: list[Event] = []
    out = await run_parallel(
        [watch.step("a", 5), watch.step("b", 1), watch.step("c", 3)],
        "go",
        merge=Merge.FIRST,
        event_sink=events.append,
    )
    assert out.output == "b answer" and [o.step for o in out.outputs] == ["b"]
    assert sorted(watch.log) == ["a cancelled", "b done", "c cancelled"]
    assert trio.current_time() == 1
    finished = {e.agent: (e.ok, e.cancelled) for e in events if isinstance(e, StepFinished)}
    assert finished == {"a": (False, True), "b": (True, False), "c": (False, True)}


async def test_first_skips_failures_and_all_failed_raises_the_first_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = Watch()
    out = await run_parallel(
        [scripted("bad", fail(ModelOverloaded("down"))), watch.step("ok", 2)],
        "go",
        merge=Merge.FIRST,
    )
    assert out.output == "ok answer"
    with pytest.raises(StepFailed, match="'late'") as info:
        await run_parallel(
            [
                scripted("later", fail(ModelOverloaded("second"), delay=2)),
                scripted("late", fail(ModelOverloaded("first"), delay=1)),
            ],
            "go",
            merge=Merge.FIRST,
        )
    assert "every branch failed (2)" in info.value.__notes__[0]


async def test_fastest_n(autojump_clock: trio.testing.MockClock) -> None:
    watch = Watch()
    out = await run_parallel(
        [watch.step("a", 4), watch.step("b", 2), watch.step("c", 9), watch.step("d", 1)],
        "go",
        merge=Merge.FASTEST,
        n=2,
    )
    assert [o.step for o in out.outputs] == ["d", "b"]  # finishing order
    assert sorted(watch.log) == ["a cancelled", "b done", "c cancelled", "d done"]


async def test_fastest_n_fails_as_soon_as_n_successes_are_out_of_reach(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Four branches, n=3: one failure leaves 3 reachable; the second makes 3 impossible, so
    # the rest are cancelled then, and the first failure (in time) is raised with the
    # successes finished so far.
    watch = Watch()
    with pytest.raises(StepFailed, match="'early'") as caught:
        await run_parallel(
            [
                watch.step("quick", 1),
                scripted("early", fail(ModelOverloaded("down"), delay=2)),
                scripted("late", fail(ModelOverloaded("down too"), delay=3)),
                watch.step("slow", 9),
            ],
            "go",
            merge=Merge.FASTEST,
            n=3,
        )
    assert trio.current_time() == 3  # not 9: it did not wait for "slow"
    assert [o.step for o in caught.value.outputs] == ["quick"]
    assert sorted(watch.log) == ["quick done", "slow cancelled"]


async def test_outside_cancellation_of_parallel_is_bare(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = Watch()
    caught: list[BaseException] = []
    with trio.move_on_after(1):
        try:
            await run_parallel([watch.step("a", 5), watch.step("b", 5)], "go")
        except BaseException as exc:
            caught.append(exc)
            raise
    assert [type(e) for e in caught] == [trio.Cancelled]
    assert sorted(watch.log) == ["a cancelled", "b cancelled"]


async def test_outside_cancellation_of_sequential_is_bare(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = Watch()
    caught: list[BaseException] = []
    with trio.move_on_after(1):
        try:
            await run_sequential([watch.step("a", 5)], "go")
        except BaseException as exc:
            caught.append(exc)
            raise
    assert [type(e) for e in caught] == [trio.Cancelled]
    assert watch.log == ["a cancelled"]


@given(
    outputs=st.lists(
        st.builds(StepOutput, strategies.identifiers(), strategies.agent_results()), max_size=3
    ),
    output=strategies.texts(),
)
def test_pipeline_values_round_trip(outputs: list[StepOutput], output: str) -> None:
    result = PipelineResult(outputs=tuple(outputs), output=output)
    assert load(dump(result), PipelineResult) == result
    event = StepFinished(time=1.0, agent="a", index=0, ok=False, cancelled=True)
    assert load(dump(event), Event) == event


# --------------------------------------------------------------------------- tree-wide limits


async def test_steps_from_specs_share_the_tree_budget_and_rate_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = ModelRunner(FunctionModel(lambda request: text("done", delay=1.0)))
    infra = SharedInfra(
        budget=Budget(UsageLimits(requests=3)),
        rate_limits={"function": RateLimiter(max_concurrent=1)},
    )
    branches = [Step.from_spec(AgentSpec(name=f"b{i}"), runner, infra=infra) for i in range(3)]
    out = await run_parallel(branches, "go")
    assert [o.step for o in out.outputs] == ["b0", "b1", "b2"]
    assert trio.current_time() == 3.0  # one model call at a time, tree-wide
    with pytest.raises(StepFailed, match="BudgetExhausted"):  # the fourth request is refused
        await run_parallel(branches[:1], "again")


def test_step_from_spec_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="spec must be an AgentSpec"):
        Step.from_spec("x", ModelRunner(ScriptedModel([])))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="runner must be a ModelRunner"):
        Step.from_spec(AgentSpec(name="a"), "r")  # type: ignore[arg-type]
