"""Rules stated on docs/delegation.rst and docs/infrastructure.rst that no other test pinned.
Each test names the rule it pins; the pages name the tests."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentOrchestrator,
    AgentSpec,
    Backoff,
    Budget,
    BudgetExhausted,
    DelegationFailed,
    Delegator,
    Event,
    EventLog,
    ModelOverloaded,
    ModelRequest,
    ModelRunner,
    RetryPolicy,
    SharedInfra,
    StateStore,
    TextBlock,
    ToolResultMessage,
    UsageLimits,
    UserMessage,
)
from trio_agents.testing import FunctionModel, ScriptStep, fail, hang, text, tool_call
from trio_agents.testing._models import FunctionResult

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["docs/delegation.rst", "docs/infrastructure.rst"]


@pytest.mark.parametrize("page", PAGES)
def test_the_page_names_only_tests_that_exist_and_has_examples(page: str) -> None:
    # Each rule names the tests that pin it; a renamed or deleted test must not leave a
    # dangling name. The code blocks are run by tests/test_docs_examples.py.
    text_of_page = (ROOT / page).read_text(encoding="utf-8")
    defined: set[str] = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined.update(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M))
    cited = set(re.findall(r"``(test_\w+)``", text_of_page))
    assert cited, "the page names no test"
    assert sorted(cited - defined) == []
    assert re.search(r"^\.\. code-block:: python$", text_of_page, re.M)


def spec(name: str, **kwargs: object) -> AgentSpec:
    return AgentSpec(name=name, instructions=name, **kwargs)  # type: ignore[arg-type]


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


def lead_delegating(*turns: tuple[tuple[str, str], ...]) -> FunctionModel:
    """A lead that delegates ``turns[n]`` in turn n, then joins the last results."""

    def respond(request: ModelRequest) -> FunctionResult:
        done = sum(isinstance(m, ToolResultMessage) for m in request.messages)
        if done < len(turns):
            return fan_out(*turns[done])
        last = request.messages[-1]
        assert isinstance(last, ToolResultMessage)
        return " | ".join(r.content for r in last.results)

    return FunctionModel(respond, model_id="lead")


# --------------------------------------------------------------------------- delegation.rst


async def test_every_delegation_runs_a_fresh_specialist() -> None:
    # Two calls in one turn and one in the next: three fresh agents, each seeing only its
    # own subtask (no history from the other runs of the same spec).
    seen: list[int] = []

    def researcher(request: ModelRequest) -> FunctionResult:
        seen.append(len(request.messages))
        return f"did {task_of(request)}"

    lead = lead_delegating((("researcher", "a"), ("researcher", "b")), (("researcher", "c"),))
    runner = ModelRunner(
        {"lead": lead, "researcher": FunctionModel(researcher, model_id="researcher")}
    )
    result = await Delegator(
        spec("lead", model="lead"), [spec("researcher", model="researcher")]
    ).run("go", runner=runner)
    assert seen == [1, 1, 1]
    assert [r.result for r in result.delegations] == ["did a", "did b", "did c"]
    assert result.final_answer == "did c"


async def test_malformed_calls_get_an_error_and_no_record_or_event() -> None:
    # Arguments that are not one JSON object with two strings: an error result naming the
    # fix, no record, no event, under every policy (fail_fast here).
    calls = [
        tool_call("delegate", raw_arguments="{not json"),
        tool_call("delegate", {"specialist": "a", "subtask": "x", "urgent": True}),
        tool_call("delegate", {"specialist": 3, "subtask": "x"}),
    ]
    step = calls[0] + calls[1] + calls[2]

    def respond(request: ModelRequest) -> FunctionResult:
        return step if isinstance(request.messages[-1], UserMessage) else "gave up"

    model = FunctionModel(respond)
    events: list[Event] = []
    result = await Delegator(spec("lead"), [spec("a")], failure_policy="fail_fast").run(
        "go", runner=ModelRunner(model), event_sink=events.append
    )
    last = model.requests[-1].messages[-1]
    assert isinstance(last, ToolResultMessage)
    assert [r.is_error for r in last.results] == [True, True, True]
    assert last.results[0].content.startswith("invalid JSON arguments for tool 'delegate'")
    assert last.results[1].content == (
        "invalid arguments for tool 'delegate': unexpected arguments ['urgent']; "
        "specialist must be one of: a"
    )
    assert "needs 'specialist' and 'subtask' as strings" in last.results[2].content
    assert result.delegations == ()
    assert not [e for e in events if e.kind.startswith("delegation_")]


@pytest.mark.parametrize("policy", ["isolate", "fail_fast", "retry"])
async def test_model_mistakes_are_results_under_every_policy(policy: str) -> None:
    # An unknown name, a cycle and the depth limit are error results the model reads; even
    # under fail_fast they fail nothing.
    def respond(request: ModelRequest) -> FunctionResult:
        who = request.system
        last = request.messages[-1]
        if isinstance(last, UserMessage):
            if who == "lead":
                return fan_out(("oracle", "x"), ("a", "y"))
            if who == "a":
                return fan_out(("a", "again"), ("b", "deeper"))
            return fan_out(("c", "too deep"))  # b, at depth 2 of max_depth 2
        assert isinstance(last, ToolResultMessage)
        return " | ".join(r.content for r in last.results)

    model = FunctionModel(respond)
    pool = [spec("a", tools=("delegate",)), spec("b", tools=("delegate",)), spec("c")]
    delegator = Delegator(spec("lead"), pool, failure_policy=policy, max_depth=2)
    events: list[Event] = []
    result = await delegator.run("go", runner=ModelRunner(model), event_sink=events.append)
    shown = {r.path: (r.success, r.result) for r in result.delegations}
    assert shown == {
        "lead/oracle": (False, "unknown specialist 'oracle'; available specialists: a, b, c"),
        "lead/a": (True, shown["lead/a"][1]),
        "lead/a/a": (False, "delegation cycle: lead -> a -> a"),
        "lead/a/b": (True, shown["lead/a/b"][1]),
        "lead/a/b/c": (
            False,
            "delegation depth limit 2 reached: 'lead/a/b' may not delegate further; "
            "do the subtask yourself",
        ),
    }
    assert all(r.attempts == 0 for r in result.delegations if not r.success)
    # each refused call has its record and its two events
    for kind in ("delegation_started", "delegation_finished"):
        assert sorted(e.agent for e in events if e.kind == kind) == sorted(shown)


async def test_retry_does_not_retry_an_exhausted_budget() -> None:
    # The specialist's own limits allow no model request: BudgetExhausted, not retried.
    model = lead_delegating((("researcher", "r"),))
    researcher = spec("researcher", model="lead", limits=UsageLimits(requests=0))
    delegator = Delegator(
        spec("lead", model="lead"),
        [researcher],
        failure_policy="retry",
        retry_backoff=Backoff.none(),
    )
    result = await delegator.run("go", runner=ModelRunner({"lead": model}))
    (record,) = result.delegations
    assert (record.success, record.attempts) == (False, 1)
    assert record.error is not None and record.error.startswith("BudgetExhausted: requests")
    # a delegation the tree's budget refuses is not retried either
    refused = await Delegator(
        spec("lead", model="lead"),
        [spec("researcher", model="lead")],
        failure_policy="retry",
        retry_backoff=Backoff.none(),
    ).run(
        "go",
        runner=ModelRunner({"lead": lead_delegating((("researcher", "r"),))}),
        budget=Budget(UsageLimits(agents=0)),
    )
    (record,) = refused.delegations
    assert (record.success, record.attempts) == (False, 0)
    assert record.result == (
        "specialist 'researcher' was not started: agent budget exhausted: 0 of 0 agents started"
    )


async def test_fail_fast_propagates_through_every_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # b fails under a: a's run fails with DelegationFailed, which fails a's own delegation,
    # which fails the main run. The chain of causes names each level.
    def respond(request: ModelRequest) -> FunctionResult:
        if request.system == "lead":
            return fan_out(("a", "plan"), ("c", "wait"))
        if request.system == "a":
            return fan_out(("b", "build"))
        if request.system == "b":
            return fail(ModelOverloaded("b is down"), delay=1)
        return hang()

    pool = [spec("a", tools=("delegate",)), spec("b"), spec("c")]
    delegator = Delegator(spec("lead"), pool, failure_policy="fail_fast")
    runner = ModelRunner(FunctionModel(respond), retry=RetryPolicy(max_attempts=1))
    with pytest.raises(DelegationFailed) as caught:
        await delegator.run("go", runner=runner)
    error = caught.value
    assert error.specialist == "a"
    assert isinstance(error.cause, DelegationFailed) and error.cause.specialist == "b"
    assert isinstance(error.cause.cause, ModelOverloaded)
    assert trio.current_time() == 1
    records = {r.path: r for r in error.delegations}
    assert set(records) == {"lead/a", "lead/a/b", "lead/c"}
    assert records["lead/c"].cancelled  # the sibling at depth 1 was cancelled
    assert not records["lead/a"].success and not records["lead/a"].cancelled


async def test_a_cancelled_specialist_reports_what_it_used(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Cancellation keeps what was done: the record of a specialist cut off in its second
    # model call counts its first one.
    def respond(request: ModelRequest) -> FunctionResult:
        if request.system == "lead":
            return fan_out(("a", "work"))
        if request.system == "b":
            return "quick answer"
        if isinstance(request.messages[-1], UserMessage):
            return tool_call("delegate", {"specialist": "b", "subtask": "quick"})
        return hang()

    pool = [spec("a", tools=("delegate",)), spec("b")]
    events: list[Event] = []
    budget = Budget()
    with trio.move_on_after(5) as scope:
        await Delegator(spec("lead"), pool).run(
            "go",
            runner=ModelRunner(FunctionModel(respond)),
            event_sink=events.append,
            budget=budget,
        )
    assert scope.cancelled_caught  # trio.Cancelled came out of run() untouched
    finished = {e.agent: e for e in events if e.kind == "delegation_finished"}
    a, b = finished["lead/a"], finished["lead/a/b"]
    assert (a.cancelled, a.success) == (True, False)  # type: ignore[attr-defined]
    assert (b.cancelled, b.success) == (False, True)  # type: ignore[attr-defined]
    # a's usage: its first response and b's whole run; its second call never answered
    assert a.usage.requests == 2  # type: ignore[attr-defined]
    assert budget.usage.requests == 3  # the lead's first call, a's and b's


async def test_a_live_agent_keeps_serving_an_abandoned_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A name in handles goes to a running agent's queue; cancelling the caller abandons the
    # request (its record says cancelled) but the live agent is not the caller's child: it
    # finishes the request.
    def slow(request: ModelRequest) -> FunctionResult:
        return text(f"live: {task_of(request)}", delay=10)

    orchestrator = AgentOrchestrator()
    orchestrator.add_agent("librarian", lambda: Agent(FunctionModel(slow), name="librarian"))
    events: list[Event] = []
    async with orchestrator.open() as system:
        handle = await system.spawn("librarian")
        # The enum: the specialists in order, then the handles that are not specialists; a
        # handle wins over a specialist of the same name.
        delegator = Delegator(
            spec("lead"),
            [spec("librarian"), spec("clerk")],
            handles={"archive": handle, "librarian": handle},
        )
        assert delegator.names == ("librarian", "clerk", "archive")
        lead = lead_delegating((("librarian", "find the file"),))
        with trio.move_on_after(1):
            await delegator.run("go", runner=ModelRunner(lead), event_sink=events.append)
        (finished,) = [e for e in events if e.kind == "delegation_finished"]
        assert finished.cancelled  # type: ignore[attr-defined]
        assert handle.statistics().requests_served == 0
        await trio.sleep(10)
        assert handle.statistics().requests_served == 1
        assert handle.status.value == "running"


# --------------------------------------------------------------------------- infrastructure.rst


async def test_a_subscriber_follows_a_delegating_tree_live() -> None:
    # The log of a SharedInfra is every agent's sink: a subscriber sees the specialists'
    # events as they happen, in log order.
    infra = SharedInfra()
    lead = lead_delegating((("researcher", "r"), ("writer", "w")))

    def specialist(request: ModelRequest) -> FunctionResult:
        return f"{request.system} did {task_of(request)}"

    runner = ModelRunner({"lead": lead, "team": FunctionModel(specialist, model_id="team")})
    pool = [spec("researcher", model="team"), spec("writer", model="team")]
    seen: list[Event] = []
    async with trio.open_nursery() as nursery:
        subscription = infra.log.subscribe(max_buffer=1000)

        async def follow() -> None:
            async with subscription:
                async for event in subscription:
                    seen.append(event)
                    if event.kind == "run_finished" and event.agent == "lead":
                        return

        nursery.start_soon(follow)
        await Delegator(spec("lead", model="lead"), pool).run("go", runner=runner, infra=infra)
    assert seen == list(infra.log)
    assert {e.agent for e in seen} == {"lead", "lead/researcher", "lead/writer"}
    assert not subscription.overflowed


def test_an_event_log_round_trips_through_jsonl_into_the_same_tree(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog()

    async def main() -> None:
        lead = lead_delegating((("researcher", "r"),))
        team = FunctionModel(lambda request: "done", model_id="team")
        runner = ModelRunner({"lead": lead, "team": team})
        await Delegator(spec("lead", model="lead"), [spec("researcher", model="team")]).run(
            "go", runner=runner, event_sink=log
        )

    trio.run(main)
    assert log.export_jsonl(path) == len(log)
    loaded = EventLog.import_jsonl(path)
    assert list(loaded) == list(log)
    assert loaded.tree() == log.tree()


async def test_every_retry_is_counted_as_a_started_agent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Room for two agents: the first attempt and one retry. The second retry is refused by the
    # budget, so the record reports the specialist's own failure after two attempts.
    model = FunctionModel(
        lambda request: (
            fan_out(("researcher", "r"))
            if request.system == "lead" and isinstance(request.messages[-1], UserMessage)
            else ("gave up" if request.system == "lead" else fail(ModelOverloaded("busy")))
        ),
    )
    budget = Budget(UsageLimits(agents=2))
    delegator = Delegator(
        spec("lead"),
        [spec("researcher")],
        failure_policy="retry",
        max_retries=5,
        retry_backoff=Backoff.none(),
    )
    result = await delegator.run(
        "go", runner=ModelRunner(model, retry=RetryPolicy(max_attempts=1)), budget=budget
    )
    (record,) = result.delegations
    assert (record.success, record.attempts) == (False, 2)
    assert record.error == "ModelOverloaded: busy"
    assert budget.agents_started == 2


async def test_parallel_specialists_are_logged_and_spanned_in_call_order() -> None:
    # The agent admits the calls of a turn one at a time, in call order, and each delegation
    # logs DelegationStarted as it is admitted: the spans of parallel specialists come in
    # call order, whatever order trio runs their tasks in.
    for _ in range(20):
        infra = SharedInfra()
        lead = lead_delegating((("c", "1"), ("a", "2"), ("b", "3")))
        team = FunctionModel(lambda request: "ok", model_id="team")
        pool = [spec(name, model="team") for name in "abc"]
        await Delegator(spec("lead", model="lead"), pool).run(
            "go", runner=ModelRunner({"lead": lead, "team": team}), infra=infra
        )
        started = [e.agent for e in infra.log.events("delegation_started")]
        assert started == ["lead/c", "lead/a", "lead/b"]
        span = infra.log.tree().find("lead")
        assert span is not None
        assert [child.path for child in span.children] == ["lead/c", "lead/a", "lead/b"]


async def test_model_runner_wires_every_agent_to_the_infra(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Given infra (and no budget of its own), an agent the runner builds calls its model
    # through infra.model_for, checks its tools with infra.policies, logs to infra.log,
    # charges infra.budget (carved by the spec's limits) and hands infra to its tools.
    from trio_agents import RateLimitedModel, RateLimiter, ToolContext, tool

    @tool
    async def shell(cmd: str) -> str:
        """Run a command."""
        return "ran"

    @tool
    async def note(ctx: ToolContext, text: str) -> str:
        """Write a note to the shared state."""
        ctx.infra.state.set("note", text, by=ctx.agent)
        return "noted"

    limiter = RateLimiter(max_concurrent=1)
    infra = SharedInfra(budget=Budget(UsageLimits(requests=5)), rate_limits={"m": limiter})
    infra.policies.deny_tool("no-shell", "shell")
    model = FunctionModel(
        lambda request: (
            tool_call("shell", {"cmd": "ls"}) + tool_call("note", {"text": "hi"})
            if isinstance(request.messages[-1], UserMessage)
            else "shell denied, note written"
        ),
        model_id="m",
    )
    runner = ModelRunner(model, tools=[shell, note])
    worker = spec("worker", tools=("shell", "note"), limits=UsageLimits(requests=1))
    agent = runner.build(worker, infra=infra, path="lead/worker")
    assert isinstance(agent.model, RateLimitedModel) and agent.model.limiter is limiter
    assert agent.infra is infra
    with pytest.raises(BudgetExhausted, match="requests budget exhausted: used 1 of 1"):
        await runner.run(worker, "go", infra=infra, path="lead/worker")
    assert infra.budget is not None and infra.budget.usage.requests == 1
    kinds = [e.kind for e in infra.log.events(agent="lead/worker")]
    assert "policy_denied" in kinds and kinds[0] == "run_started"
    assert [(t.key, t.new, t.by) for t in infra.state.transitions()] == [
        ("note", "hi", "lead/worker")
    ]
    # with the spec's limits raised, the same run finishes
    roomy = spec("worker", tools=("shell", "note"), limits=UsageLimits(requests=2))
    result = await runner.run(roomy, "go", infra=infra, path="lead/worker")
    assert result.final_text == "shell denied, note written"
    assert infra.budget.usage.requests == 3


async def test_a_live_agent_is_counted_but_not_charged_to_the_caller() -> None:
    def echo(request: ModelRequest) -> FunctionResult:
        return f"live: {task_of(request)}"

    orchestrator = AgentOrchestrator()
    orchestrator.add_agent("librarian", lambda: Agent(FunctionModel(echo), name="librarian"))
    async with orchestrator.open() as system:
        handle = await system.spawn("librarian")
        budget = Budget()
        lead = lead_delegating((("librarian", "find it"),))
        result = await Delegator(spec("lead"), {}, handles={"librarian": handle}).run(
            "go", runner=ModelRunner(lead), budget=budget
        )
        (record,) = result.delegations
        assert record.usage.requests == 1
        assert budget.agents_started == 1  # counted as a delegation ...
        assert budget.usage == result.result.usage  # ... but only the lead's usage is charged
        assert result.total_usage == budget.usage + record.usage


_CRASHING_WRITER = """
import os, sys
from trio_agents import StateStore
store = StateStore.open_sqlite(sys.argv[1])
store.set("plan", {"step": 1}, by="lead")
store.set("plan", {"step": 2}, by="lead")
store.delete("draft")
os._exit(3)  # die at once: no close(), no cleanup, no interpreter shutdown
"""


def test_a_committed_write_survives_the_process_dying(tmp_path: Path) -> None:
    # Each write is committed before it returns: a process that dies right after still
    # leaves every write it made, transition log included.
    path = tmp_path / "state.db"
    with StateStore.open_sqlite(path) as store:
        store.set("draft", "v0")
    done = subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, str(path)], capture_output=True, check=False
    )
    assert done.returncode == 3, done.stderr
    with StateStore.open_sqlite(path) as reopened:
        assert reopened.snapshot() == {"plan": {"step": 2}}
        assert [(t.key, t.by, t.exists_after) for t in reopened.transitions()] == [
            ("draft", "", True),
            ("plan", "lead", True),
            ("plan", "lead", True),
            ("draft", "", False),
        ]
    # WAL mode with synchronous=NORMAL: commits do not wait for fsync (the trade-off named
    # on the page: the last writes may be lost if the machine loses power).
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    with StateStore.open_sqlite(path) as store:
        assert store._db is not None
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
