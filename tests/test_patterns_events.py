"""Pattern and mailbox events, tree-wide limits on patterns built from plain factories."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    Budget,
    BudgetExhausted,
    Event,
    EventLog,
    InvalidArgumentError,
    Mailbox,
    MailboxClosed,
    MailboxOverflow,
    MailboxReceived,
    MailboxSent,
    ModelOverloaded,
    PatternFinished,
    PatternStarted,
    RateLimiter,
    RetryPolicy,
    RunStarted,
    SharedInfra,
    UsageLimits,
    dump,
    load,
)
from trio_agents.patterns import (
    Merge,
    Step,
    StepFailed,
    StepFinished,
    debate,
    map_reduce,
    run_parallel,
    run_sequential,
    vote,
)
from trio_agents.testing import FunctionModel, ScriptedModel, fail, strategies, text


def plain(name: str, reply: str = "ok", delay: float = 0.0) -> Step:
    return Step(
        name,
        lambda: Agent(
            FunctionModel(lambda request: text(reply, delay=delay)),
            name=name,
            retry=RetryPolicy(max_attempts=1),
        ),
    )


# --------------------------------------------------------------------------- mailbox events


def _mail(events: list[Event]) -> list[tuple[str, str, object]]:
    out: list[tuple[str, str, object]] = []
    for e in events:
        if isinstance(e, MailboxSent | MailboxReceived | MailboxClosed):
            out.append((e.kind, e.agent, e.queued))
        elif isinstance(e, MailboxOverflow):
            out.append((e.kind, e.agent, e.waited))
    return out


async def test_mailbox_events_follow_sends_receives_overflow_and_close() -> None:
    events: list[Event] = []
    box = Mailbox(capacity=1, names=["a", "b"], event_sink=events.append)
    await box.send("a", 1)
    with pytest.raises(trio.WouldBlock):
        box.send_nowait("a", 2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.send, "a", 3)  # waits for room
        await trio.testing.wait_all_tasks_blocked()
        assert _mail(events) == [
            ("mailbox_sent", "a", 1),
            ("mailbox_overflow", "a", False),
            ("mailbox_overflow", "a", True),
        ]
        assert await box.receive("a") == 1
    # The receive moves the waiting message into the mailbox; which of the two tasks reports
    # first is up to trio's scheduler.
    assert sorted(_mail(events[3:]), key=str) == [
        ("mailbox_received", "a", 1),
        ("mailbox_sent", "a", 1),
    ]
    del events[:]
    assert box.receive_nowait("a") == 3
    box.send_nowait("b", 4)
    box.close()
    box.close()  # idempotent: no second round of events
    assert _mail(events) == [
        ("mailbox_received", "a", 0),
        ("mailbox_sent", "b", 1),
        ("mailbox_closed", "a", 0),
        ("mailbox_closed", "b", 1),
    ]


async def test_mailbox_without_a_sink_emits_nothing_and_a_bad_sink_is_refused() -> None:
    box = Mailbox(capacity=1, names=["a"])
    await box.send("a", 1)
    assert await box.receive("a") == 1
    log = EventLog()
    box.event_sink = log
    await box.broadcast("hi")
    assert [e.kind for e in log.events()] == ["mailbox_sent"]
    with pytest.raises(InvalidArgumentError, match="event_sink must be a callable"):
        Mailbox(event_sink="log")  # type: ignore[arg-type]


async def test_outside_cancellation_of_a_logged_send_is_bare() -> None:
    events: list[Event] = []
    box = Mailbox(capacity=0, names=["a"], event_sink=events.append)
    caught: list[BaseException] = []
    with trio.move_on_after(1) as scope:
        try:
            await box.send("a", 1)
        except BaseException as exc:
            caught.append(exc)
            raise
    assert scope.cancelled_caught
    assert [type(e) for e in caught] == [trio.Cancelled]
    assert _mail(events) == [("mailbox_overflow", "a", True)]  # never sent


# --------------------------------------------------------------------------- tree-wide limits


async def test_plain_factories_join_the_tree_budget_rate_limit_and_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    infra = SharedInfra(
        budget=Budget(UsageLimits(requests=3)),
        rate_limits={"function": RateLimiter(max_concurrent=1)},
    )
    branches = [plain(f"b{i}", delay=1.0) for i in range(3)]
    out = await run_parallel(branches, "go", infra=infra)
    assert [o.step for o in out.outputs] == ["b0", "b1", "b2"]
    assert trio.current_time() == 3.0  # one model call at a time, tree-wide
    assert infra.budget is not None and infra.budget.agents_started == 3
    log = infra.log.events()
    assert sum(isinstance(e, RunStarted) for e in log) == 3  # the agents log to the tree
    assert sorted(e.agent for e in log if isinstance(e, StepFinished)) == ["b0", "b1", "b2"]
    with pytest.raises(StepFailed, match="BudgetExhausted") as caught:  # the 4th request
        await run_sequential([plain("again")], "go", infra=infra)
    assert "step 0 ('again', agent 'again')" in str(caught.value)


async def test_a_spent_agent_budget_stops_a_pattern_before_it_builds_the_agent() -> None:
    built: list[str] = []

    def counted() -> Agent:
        built.append("x")
        return Agent(ScriptedModel(["ok"]), name="x")

    infra = SharedInfra(budget=Budget(UsageLimits(agents=1)))
    with pytest.raises(StepFailed, match="agent budget exhausted") as caught:
        await run_sequential([Step("a", counted), Step("b", counted)], "go", infra=infra)
    assert built == ["x"]
    assert [o.step for o in caught.value.outputs] == ["a"]  # nothing done is lost


async def test_a_spent_agent_budget_stops_a_debate_with_step_failed() -> None:
    built: list[str] = []

    def counted() -> Agent:
        built.append("x")
        return Agent(ScriptedModel(["ok"]), name="x")

    infra = SharedInfra(budget=Budget(UsageLimits(agents=1)))
    with pytest.raises(StepFailed, match=r"before round 1: step 1 \('b'.*agent budget") as caught:
        await debate([Step("a", counted), Step("b", counted)], "go", counted, infra=infra)
    assert built == ["x"]
    assert caught.value.outputs == ()
    assert isinstance(caught.value.__cause__, BudgetExhausted)


async def test_an_agents_own_settings_win_over_the_tree() -> None:
    own_log = EventLog()
    own_budget = Budget()
    seen: list[Agent] = []

    def mine() -> Agent:
        agent = Agent(ScriptedModel(["ok"]), name="mine", event_sink=own_log, budget=own_budget)
        seen.append(agent)
        return agent

    infra = SharedInfra()
    await run_sequential([Step("mine", mine)], "go", infra=infra)
    assert seen[0].budget is own_budget and seen[0].event_sink is own_log
    assert seen[0].policy is infra.policies and seen[0].infra is infra
    assert any(isinstance(e, RunStarted) for e in own_log.events())
    assert not any(isinstance(e, RunStarted) for e in infra.log.events())


async def test_infra_must_be_shared_infra() -> None:
    with pytest.raises(InvalidArgumentError, match="infra must be a SharedInfra"):
        await run_parallel([plain("a")], "go", infra="tree")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Merge.FASTEST


async def test_fastest_with_fewer_than_n_successes_raises_the_first_failure_and_keeps_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def failing(name: str, delay: float) -> Step:
        return Step(
            name,
            lambda: Agent(
                ScriptedModel([fail(ModelOverloaded(f"{name} down"), delay=delay)]),
                name=name,
                retry=RetryPolicy(max_attempts=1),
            ),
        )

    events: list[Event] = []
    branches = [plain("ok", delay=1.0), failing("x", 2.0), failing("y", 3.0), plain("slow", "s", 9)]
    with pytest.raises(StepFailed, match="x down") as caught:
        await run_parallel(branches, "go", merge=Merge.FASTEST, n=3, event_sink=events.append)
    assert trio.current_time() == 3.0  # the slow branch is cancelled once 3 cannot succeed
    assert [o.step for o in caught.value.outputs] == ["ok"]
    assert any("wanted 3 successes: 1 succeeded, 2 failed" in n for n in caught.value.__notes__)
    assert [(e.agent, e.ok, e.cancelled) for e in events if isinstance(e, StepFinished)] == [
        ("ok", True, False),
        ("x", False, False),
        ("y", False, False),
        ("slow", False, True),
    ]


# --------------------------------------------------------------------------- pattern events


def _pattern(events: list[Event]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, PatternStarted):
            out.append(("started", e.agent, e.pattern, e.agents))
        elif isinstance(e, StepFinished):
            out.append(("step", e.agent, e.index, e.ok))
        elif isinstance(e, PatternFinished):
            out.append(("finished", e.pattern, e.ok, e.detail))
    return out


async def test_map_reduce_events_in_order(autojump_clock: trio.testing.MockClock) -> None:
    def mapper() -> Agent:
        return Agent(
            FunctionModel(lambda r: text("m", delay=float(len(r.messages[-1].content[0].text)))),  # type: ignore[union-attr]
            name="mapper",
        )

    events: list[Event] = []
    result = await map_reduce(
        mapper, plain("r", "sum").factory, ["ccc", "a", "bb"], event_sink=events.append
    )
    assert result.output == "sum"
    assert _pattern(events) == [
        ("started", "map_reduce", "map_reduce", 3),
        ("step", "map[1]", 1, True),  # finishing order: the shortest item first
        ("step", "map[2]", 2, True),
        ("step", "map[0]", 0, True),
        ("step", "reduce", 3, True),
        ("finished", "map_reduce", True, "3 mapped"),
    ]


async def test_vote_events_name_the_winner_and_a_failure_ends_the_pattern(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = EventLog()
    infra = SharedInfra(log=log)
    voters = [plain("a", "Paris", 1), plain("b", "paris.", 2), plain("c", "Lyon", 3)]
    await vote(voters, "capital?", infra=infra)  # no event_sink: the tree's log
    assert _pattern(log.events()) == [
        ("started", "vote", "vote", 3),
        ("step", "a", 0, True),
        ("step", "b", 1, True),
        ("step", "c", 2, True),
        ("finished", "vote", True, "paris"),
    ]
    events: list[Event] = []
    broken = Step(
        "x",
        lambda: Agent(
            ScriptedModel([fail(ModelOverloaded("busy"))]),
            name="x",
            retry=RetryPolicy(max_attempts=1),
        ),
    )
    with pytest.raises(StepFailed, match="busy"):
        await vote([broken, plain("late", "y", 5)], "q", event_sink=events.append)
    assert _pattern(events) == [
        ("started", "vote", "vote", 2),
        ("step", "x", 0, False),
        (
            "finished",
            "vote",
            False,
            "StepFailed: step 0 ('x', agent 'x') failed: ModelOverloaded: busy",
        ),
    ]


async def test_a_cancelled_pattern_reports_it_and_leaves_bare(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    progress: list[object] = []
    caught: list[BaseException] = []
    with trio.move_on_after(2):
        try:
            await map_reduce(
                plain("m", "x", 1).factory,
                plain("r", "y", 10).factory,
                ["a"],
                event_sink=events.append,
                progress=progress,  # type: ignore[arg-type]
            )
        except BaseException as exc:
            caught.append(exc)
            raise
    assert [type(e) for e in caught] == [trio.Cancelled]
    assert len(progress) == 1  # the mapper's output is kept
    assert _pattern(events)[-1] == ("finished", "map_reduce", False, "cancelled")


async def test_a_tree_budget_stops_map_reduce_and_vote() -> None:
    infra = SharedInfra(budget=Budget(UsageLimits(requests=2)))
    with pytest.raises(StepFailed, match="BudgetExhausted") as caught:
        await map_reduce(plain("m").factory, plain("r").factory, ["a", "b"], infra=infra)
    assert "'reduce'" in str(caught.value)  # the two mappers spent it
    assert [o.step for o in caught.value.outputs] == ["map[0]", "map[1]"]
    with pytest.raises(StepFailed, match="BudgetExhausted"):
        await vote([plain("a")], "q", infra=infra)


# --------------------------------------------------------------------------- values


@given(
    name=strategies.identifiers(),
    time=st.floats(0, 1e6),
    count=st.integers(0, 1000),
    flag=st.booleans(),
    detail=strategies.texts(),
)
def test_pattern_and_mailbox_events_round_trip(
    name: str, time: float, count: int, flag: bool, detail: str
) -> None:
    events: list[Event] = [
        PatternStarted(time=time, agent=name, pattern="vote", agents=count),
        PatternFinished(time=time, agent=name, pattern="vote", ok=flag, detail=detail),
        MailboxSent(time=time, agent=name, queued=count),
        MailboxReceived(time=time, agent=name, queued=count),
        MailboxOverflow(time=time, agent=name, capacity=count, waited=flag),
        MailboxClosed(time=time, agent=name, queued=count),
    ]
    for event in events:
        assert load(dump(event), Event) == event
