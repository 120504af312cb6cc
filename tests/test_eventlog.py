"""EventLog: sink, filters, subscriptions and the overflow rule, JSON Lines, spans."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentOrchestrator,
    Backoff,
    DefaultSupervisor,
    DeserializationError,
    Event,
    EventLog,
    InvalidArgumentError,
    ModelOverloaded,
    PolicyEngine,
    RetryPolicy,
    RunStarted,
    SharedInfra,
    Span,
    ToolFinished,
    ToolStarted,
    TurnFinished,
    TurnStarted,
    tool,
)
from trio_agents._serde import event_classes
from trio_agents.testing import ScriptedModel, fail, text, tool_call
from trio_agents.testing import strategies as ta_st


def turn(agent: str, n: int = 1, time: float = 0.0) -> TurnStarted:
    return TurnStarted(time=time, agent=agent, turn=n)


def run(agent: str, time: float = 0.0) -> RunStarted:
    return RunStarted(time=time, agent=agent, run=1)


# --------------------------------------------------------------------------- sink and filters


def test_log_is_an_event_sink() -> None:
    log = EventLog()
    log(turn("a"))
    log.append(run("b"))
    assert len(log) == 2
    assert [e.agent for e in log] == ["a", "b"]
    with pytest.raises(InvalidArgumentError, match=r"event must be a trio_agents\.Event"):
        log("not an event")  # type: ignore[arg-type]
    assert len(log) == 2
    assert repr(log) == "<EventLog 2 events, 0 subscribers>"


def test_iteration_is_a_snapshot() -> None:
    log = EventLog([turn("a")])
    seen = []
    for event in log:
        seen.append(event)
        log(turn("again"))  # does not extend this iteration
    assert len(seen) == 1
    assert len(log) == 2


def test_filter_by_kind() -> None:
    finished = TurnFinished(time=1.0, agent="a", turn=1)
    log = EventLog([turn("a"), run("a"), finished])
    assert log.events("turn_started") == [turn("a")]
    assert log.events(TurnFinished) == [finished]
    assert log.events(("run_started", TurnFinished)) == [run("a"), finished]
    assert log.events(Event) == list(log)  # a class matches its subclasses
    assert log.events("tool_started") == []  # a known kind with no events
    with pytest.raises(InvalidArgumentError, match="unknown event kind 'turn_start'") as info:
        log.events("turn_start")
    assert "turn_started" in str(info.value)  # the message lists the known kinds
    with pytest.raises(InvalidArgumentError, match="kind must be an event kind"):
        log.events(int)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="kind must be an event kind"):
        log.events(["turn_started"])  # type: ignore[arg-type]


def test_filter_by_agent_is_exact_or_prefix() -> None:
    agents = ["", "lead", "lead/researcher", "lead/researcher/worker", "leader", "other/lead"]
    log = EventLog(turn(a) for a in agents)
    assert [e.agent for e in log.events(agent="lead")] == [
        "lead",
        "lead/researcher",
        "lead/researcher/worker",
    ]
    assert [e.agent for e in log.events(agent="lead/researcher/worker")] == [
        "lead/researcher/worker"
    ]
    assert [e.agent for e in log.events(agent="")] == [""]  # the system only
    assert log.events(agent="lea") == []
    with pytest.raises(InvalidArgumentError, match="agent must be None or an agent path"):
        log.events(agent=1)  # type: ignore[arg-type]


def test_filter_by_position() -> None:
    log = EventLog(turn("a", n) for n in range(6))
    assert [e.turn for e in log.events(since=4)] == [4, 5]  # type: ignore[attr-defined]
    assert [e.turn for e in log.events(until=2)] == [0, 1]  # type: ignore[attr-defined]
    assert [e.turn for e in log.events(since=1, until=3)] == [1, 2]  # type: ignore[attr-defined]
    assert log.events(since=6) == []
    for bad in (-1, 1.0, "2"):
        with pytest.raises(InvalidArgumentError, match="a position in the log, not a time"):
            log.events(since=bad)  # type: ignore[arg-type]


def test_filters_combine() -> None:
    log = EventLog([turn("lead"), run("lead/x"), turn("lead/x"), turn("other")])
    assert log.events("turn_started", agent="lead", since=1) == [turn("lead/x")]


async def test_agent_run_events_land_in_the_log() -> None:
    log = EventLog()
    agent = Agent(ScriptedModel(["hi"]), name="solo", event_sink=log)
    await agent.run("hello")
    assert [e.kind for e in log] == [
        "run_started",
        "turn_started",
        "model_requested",
        "model_responded",
        "turn_finished",
        "run_finished",
    ]
    assert {e.agent for e in log} == {"solo"}


# --------------------------------------------------------------------------- subscriptions


async def test_subscriber_gets_events_after_subscribing_in_order() -> None:
    log = EventLog([turn("before")])
    received: list[Event] = []
    async with trio.open_nursery() as nursery:
        subscription = log.subscribe(max_buffer=3)
        assert subscription.start == 1

        async def consume() -> None:
            async with subscription:
                async for event in subscription:
                    received.append(event)
                    if len(received) == 10:
                        return

        nursery.start_soon(consume)
        for n in range(10):
            log(turn("after", n))
            await trio.testing.wait_all_tasks_blocked()  # let the consumer keep up
    assert received == [turn("after", n) for n in range(10)]
    assert not subscription.overflowed
    assert log.subscribers == 0  # closing unsubscribes


async def test_overflow_cuts_the_subscriber_off_with_a_resume_position() -> None:
    log = EventLog([turn("old")])
    slow = log.subscribe(max_buffer=2)
    roomy = log.subscribe(max_buffer=10)
    for n in range(5):
        log(turn("x", n))  # never blocks, whatever the subscribers do
    assert slow.overflowed
    assert slow.resume_from == 3  # position of turn 2, the first one slow missed
    assert not roomy.overflowed and roomy.resume_from is None
    assert log.subscribers == 1

    got = [event async for event in slow]  # the buffered events, then the end
    assert got == [turn("x", 0), turn("x", 1)]
    with pytest.raises(trio.EndOfChannel):
        await slow.receive()

    # Resync: the missed events from the log, then a new subscription, with no checkpoint
    # in between, loses nothing and repeats nothing.
    missed = log.events(since=slow.resume_from)
    again = log.subscribe(max_buffer=10)
    log(turn("x", 5))
    tail = [again.receive_nowait()]
    assert got + missed + tail == [turn("x", n) for n in range(6)]

    assert [roomy.receive_nowait() for _ in range(6)] == [turn("x", n) for n in range(6)]
    with pytest.raises(trio.WouldBlock):
        roomy.receive_nowait()
    await roomy.aclose()
    await again.aclose()
    assert log.subscribers == 0


async def test_overflow_while_a_consumer_is_iterating() -> None:
    log = EventLog()
    subscription = log.subscribe(max_buffer=1)
    received: list[Event] = []
    async with trio.open_nursery() as nursery:

        async def consume() -> None:
            async for event in subscription:  # ends at the cut-off
                received.append(event)

        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        log(turn("x", 0))  # handed straight to the waiting consumer
        log(turn("x", 1))  # buffered
        log(turn("x", 2))  # buffer full: cut off here
    assert received == [turn("x", 0), turn("x", 1)]
    assert subscription.resume_from == 2


async def test_closed_subscription() -> None:
    log = EventLog()
    subscription = log.subscribe()
    log(turn("a"))
    assert subscription.buffered == 1
    subscription.close()
    subscription.close()
    assert log.subscribers == 0
    log(turn("b"))  # a closed subscription gets nothing and blocks nothing
    with pytest.raises(trio.ClosedResourceError):
        await subscription.receive()
    assert "closed" in repr(subscription)


async def test_receive_batch_takes_every_buffered_event_in_one_wake_up() -> None:
    log = EventLog()
    subscription = log.subscribe(max_buffer=5)
    batches: list[list[Event]] = []
    async with trio.open_nursery() as nursery:

        async def consume() -> None:
            while True:
                try:
                    batches.append(await subscription.receive_batch())
                except trio.EndOfChannel:
                    return

        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        for n in range(3):  # one scheduler step: the consumer wakes once for all three
            log(turn("x", n))
        await trio.testing.wait_all_tasks_blocked()
        log(turn("x", 3))
        await trio.testing.wait_all_tasks_blocked()
        for n in range(4, 11):  # the first is handed over, five fill the buffer, then cut off
            log(turn("x", n))
    assert batches == [
        [turn("x", n) for n in range(3)],
        [turn("x", 3)],
        [turn("x", n) for n in range(4, 10)],
    ]
    assert subscription.resume_from == 10
    with pytest.raises(trio.EndOfChannel):
        subscription.receive_batch_nowait()


async def test_receive_batch_nowait() -> None:
    log = EventLog()
    subscription = log.subscribe()
    with pytest.raises(trio.WouldBlock):
        subscription.receive_batch_nowait()
    log(turn("a"))
    log(turn("b"))
    assert subscription.buffered == 2
    assert subscription.receive_batch_nowait() == [turn("a"), turn("b")]
    assert subscription.buffered == 0
    subscription.close()
    with pytest.raises(trio.ClosedResourceError):
        subscription.receive_batch_nowait()
    with pytest.raises(trio.ClosedResourceError):
        await subscription.receive_batch()


async def test_one_receiver_at_a_time() -> None:
    log = EventLog()
    subscription = log.subscribe()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscription.receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError, match="already receiving"):
            await subscription.receive_batch()
        log(turn("a"))  # the first receiver gets it and leaves
    log(turn("b"))
    assert await subscription.receive() == turn("b")


async def test_closing_wakes_a_waiting_receiver() -> None:
    log = EventLog()
    subscription = log.subscribe()
    async with trio.open_nursery() as nursery:

        async def wait() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await subscription.receive_batch()

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        subscription.close()
    assert log.subscribers == 0


async def test_a_woken_receiver_whose_events_were_taken_waits_again() -> None:
    log = EventLog()
    subscription = log.subscribe()
    got: list[Event] = []
    async with trio.open_nursery() as nursery:

        async def wait() -> None:
            got.append(await subscription.receive())

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        log(turn("a"))  # wakes the receiver...
        assert subscription.receive_nowait() == turn("a")  # ...but this task takes it first
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # no spurious WouldBlock: it waits again
        log(turn("b"))
    assert got == [turn("b")]


# The subscription promises a bounded trio memory channel's behaviour: this reference is one
# (the implementation before the subscription got its own buffer), driven the same way.
class _ChannelReference:
    def __init__(self, max_buffer: int) -> None:
        self.send, self.recv = trio.open_memory_channel[Event](max_buffer)
        self.resume_from: int | None = None

    def deliver(self, event: Event, position: int) -> None:
        if self.resume_from is not None or self.send._closed:
            return
        try:
            self.send.send_nowait(event)
        except trio.WouldBlock:
            self.resume_from = position
            self.send.close()

    def nowait(self, batch: bool) -> object:
        if not batch:
            return self.recv.receive_nowait()
        events = [self.recv.receive_nowait()]
        while True:
            try:
                events.append(self.recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return events

    async def wait(self, batch: bool) -> object:
        first = await self.recv.receive()
        if not batch:
            return first
        try:
            return [first, *self.nowait(True)]  # type: ignore[misc]
        except (trio.WouldBlock, trio.EndOfChannel):
            return [first]


_STEP = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 4)),
    st.tuples(st.just("nowait"), st.booleans()),
    st.tuples(st.just("wait"), st.booleans()),
    st.tuples(st.just("settle"), st.just(False)),
    st.tuples(st.just("cancel"), st.just(False)),
)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.lists(_STEP, max_size=25))
def test_a_subscription_behaves_as_a_bounded_memory_channel(
    max_buffer: int, steps: list[tuple[str, object]]
) -> None:
    def outcome(call: object) -> object:
        try:
            return call() if callable(call) else call
        except (trio.WouldBlock, trio.EndOfChannel) as exc:
            return type(exc).__name__

    async def main() -> None:
        log = EventLog()
        subscription = log.subscribe(max_buffer=max_buffer)
        reference = _ChannelReference(max_buffer)
        got: list[object] = []
        expected: list[object] = []
        waiting = False
        scopes: list[trio.CancelScope] = []
        async with trio.open_nursery() as nursery:

            async def waiter(batch: bool) -> None:
                nonlocal waiting

                async def ours() -> None:
                    try:
                        got.append(
                            await (
                                subscription.receive_batch() if batch else subscription.receive()
                            )
                        )
                    except trio.EndOfChannel:
                        got.append("EndOfChannel")

                async def theirs() -> None:
                    try:
                        expected.append(await reference.wait(batch))
                    except trio.EndOfChannel:
                        expected.append("EndOfChannel")

                # A cancelled wait takes nothing, on either side.
                with trio.CancelScope() as scope:
                    scopes.append(scope)
                    async with trio.open_nursery() as inner:
                        inner.start_soon(ours)
                        inner.start_soon(theirs)
                waiting = False

            for step, arg in steps:
                if step == "append":
                    for _ in range(int(arg)):  # type: ignore[call-overload]
                        event = turn("x", len(log))
                        reference.deliver(event, len(log))
                        log(event)
                elif step == "nowait" and not waiting:
                    ours = subscription.receive_batch_nowait if arg else subscription.receive_nowait
                    got.append(outcome(ours))
                    expected.append(outcome(functools.partial(reference.nowait, bool(arg))))
                elif step == "wait" and not waiting:
                    waiting = True
                    nursery.start_soon(waiter, bool(arg))
                    await trio.testing.wait_all_tasks_blocked()
                elif step == "cancel" and waiting:
                    scopes[-1].cancel()
                    await trio.testing.wait_all_tasks_blocked()
                else:
                    await trio.testing.wait_all_tasks_blocked()
                assert got == expected
                assert subscription.resume_from == reference.resume_from
                assert subscription.buffered == reference.recv.statistics().current_buffer_used
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_subscribe_checks_max_buffer() -> None:
    log = EventLog()
    for bad in (0, -1, 1.5, True, float("inf")):
        with pytest.raises(InvalidArgumentError, match="max_buffer must be an int >= 1"):
            log.subscribe(max_buffer=bad)  # type: ignore[arg-type]
    assert log.subscribers == 0


# --------------------------------------------------------------------------- JSON Lines


_EXACTLY: dict[type[Event], st.SearchStrategy[Event]] = {}


def exactly(cls: type[Event]) -> st.SearchStrategy[Event]:
    """Events of exactly ``cls`` (``strategies.events(cls)`` also draws its subclasses)."""
    cached = _EXACTLY.get(cls)  # building a strategy anew for every example is slow
    if cached is not None:
        return cached
    attrs.resolve_types(cls)
    fields = {
        field.alias: (
            ta_st.amounts()
            if field.name == "time"
            else ta_st.agent_paths()
            if field.name == "agent"
            else ta_st.from_type(field.type)
        )
        for field in attrs.fields(cls)
        if field.init
    }
    strategy = _EXACTLY[cls] = st.builds(cls, **fields)
    return strategy


# Each example draws one event of every class (about two dozen, some with whole transcripts
# inside), so it runs a tenth of the profile's examples; the serde tests cover single events.
@settings(max_examples=max(5, settings().max_examples // 10))
@given(st.data())
def test_jsonl_round_trip_of_every_event_kind(data: st.DataObject) -> None:
    # One event of every event class there is (agent, tool, orchestrator, policy, and any
    # defined later), plus a few of any kind.
    events = [data.draw(exactly(cls)) for cls in event_classes()]
    events += data.draw(st.lists(ta_st.events(), max_size=5))
    log = EventLog(events)
    buffer = io.StringIO()
    assert log.export_jsonl(buffer) == len(events)
    text_out = buffer.getvalue()
    assert text_out.count("\n") == len(events)
    loaded = EventLog.import_jsonl(io.StringIO(text_out))
    assert list(loaded) == events
    assert [type(e) for e in loaded] == [type(e) for e in events]


def test_every_kind_of_this_package_is_covered() -> None:
    kinds = {cls.kind for cls in event_classes()}
    expected = {
        # agent loop
        "run_started",
        "run_finished",
        "turn_started",
        "turn_finished",
        "model_requested",
        "model_responded",
        "model_delta",
        "retry_scheduled",
        "tool_started",
        "tool_finished",
        # orchestrator lifecycle
        "agent_spawned",
        "request_received",
        "request_replied",
        "agent_failed",
        "supervisor_decided",
        "agent_restarted",
        "failure_escalated",
        "agent_ended",
        # infrastructure
        "policy_denied",
    }
    assert expected <= kinds


@tool
async def lookup(query: str) -> str:
    """Look something up."""
    return f"found {query}"


async def test_jsonl_round_trip_of_a_real_run(tmp_path: Path) -> None:
    infra = SharedInfra()
    infra.policies.deny_tool("no-shell", "shell")
    built: list[int] = []

    def lead() -> Agent:
        return Agent(
            ScriptedModel(
                [
                    fail(ModelOverloaded("busy")),  # retried inside the run
                    tool_call("lookup", {"query": "q"}) + tool_call("shell", {"cmd": "ls"}),
                    text("done"),
                ]
            ),
            name="lead",
            tools=[lookup],
            policy=infra.policies,
            retry=RetryPolicy(max_attempts=2, initial_delay=0.0),
            stream=True,
        )

    def worker() -> Agent:
        built.append(1)
        script = [fail(ModelOverloaded("down"))] if len(built) == 1 else ["ok"]
        return Agent(ScriptedModel(script), name="worker", retry=RetryPolicy(max_attempts=1))

    orchestrator = AgentOrchestrator(
        supervisor=DefaultSupervisor(), backoff=Backoff.none(), event_sink=infra.log
    )
    orchestrator.add_agent("lead", lead)
    orchestrator.add_child("worker", "lead", worker)
    async with orchestrator.open() as system:
        lead_handle = await system.spawn("lead")
        worker_handle = await system.spawn("worker")
        assert (await lead_handle.send_message("go")).final_text == "done"
        with pytest.raises(ModelOverloaded):
            await worker_handle.send_message("first")
        assert (await worker_handle.send_message("second")).final_text == "ok"
        await worker_handle.aclose()
        await lead_handle.aclose()

    kinds = {e.kind for e in infra.log}
    assert {
        "agent_spawned",
        "request_received",
        "request_replied",
        "agent_failed",
        "supervisor_decided",
        "agent_restarted",
        "agent_ended",
        "run_started",
        "run_finished",
        "model_delta",
        "retry_scheduled",
        "tool_started",
        "tool_finished",
        "policy_denied",
    } <= kinds

    path = tmp_path / "events.jsonl"
    assert infra.log.export_jsonl(path) == len(infra.log)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["kind"] for line in lines] == [e.kind for e in infra.log]
    assert list(EventLog.import_jsonl(path)) == list(infra.log)
    assert list(EventLog.import_jsonl(str(path))) == list(infra.log)


def test_import_reports_the_bad_line() -> None:
    good = EventLog([turn("a")])
    buffer = io.StringIO()
    good.export_jsonl(buffer)
    source = buffer.getvalue() + "\n" + '{"kind": "turn_started", "time": 0.0}\n'
    with pytest.raises(DeserializationError, match=r"line 3: .*agent"):
        EventLog.import_jsonl(io.StringIO(source))
    with pytest.raises(DeserializationError, match="line 1: invalid JSON"):
        EventLog.import_jsonl(io.StringIO("{not json\n"))
    # blank lines are skipped; bytes lines (a binary file) are read too
    assert list(EventLog.import_jsonl(io.BytesIO(b"\n" + buffer.getvalue().encode()))) == list(good)


def test_export_and_import_check_their_argument() -> None:
    with pytest.raises(InvalidArgumentError, match="target must be a path or a text file"):
        EventLog().export_jsonl(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="source must be a path or a file"):
        EventLog.import_jsonl(b"bytes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- spans


def test_tree_follows_agent_paths() -> None:
    log = EventLog(
        [
            turn("", time=0.0),
            turn("lead", time=1.0),
            turn("lead/researcher", time=2.0),
            turn("lead/writer", time=3.0),
            turn("lead/researcher/worker", time=4.0),
            turn("lead/researcher", 2, time=5.0),
            turn("other/deep", time=6.0),  # "other" itself has no events
        ]
    )
    root = log.tree()
    assert root.path == "" and root.name == ""
    assert root.events == (turn("", time=0.0),)
    assert [c.path for c in root.children] == ["lead", "other"]
    lead, other = root.children
    assert [c.path for c in lead.children] == ["lead/researcher", "lead/writer"]
    researcher = lead.children[0]
    assert researcher.name == "researcher"
    assert researcher.events == (
        turn("lead/researcher", time=2.0),
        turn("lead/researcher", 2, time=5.0),
    )
    assert [c.path for c in researcher.children] == ["lead/researcher/worker"]
    assert other.events == () and [c.path for c in other.children] == ["other/deep"]
    assert (researcher.start, researcher.end) == (2.0, 5.0)
    assert (lead.start, lead.end) == (1.0, 5.0)
    assert (root.start, root.end) == (0.0, 6.0)
    assert [s.path for s in root.walk()] == [
        "",
        "lead",
        "lead/researcher",
        "lead/researcher/worker",
        "lead/writer",
        "other",
        "other/deep",
    ]
    assert root.find("lead/researcher/worker") == researcher.children[0]
    assert root.find("lead/nobody") is None
    # every event is in exactly one span
    assert sum(len(s.events) for s in root.walk()) == len(log)


def test_tree_of_an_empty_log() -> None:
    root = EventLog().tree()
    assert root == Span("", (), ())
    assert root.start is None and root.end is None


async def test_tool_events_group_under_their_agent() -> None:
    log = EventLog()
    agent = Agent(
        ScriptedModel([tool_call("lookup", {"query": "x"}), "done"]),
        name="worker",
        path="lead/worker",
        tools=[lookup],
        event_sink=log,
    )
    await agent.run("go")
    worker = log.tree().find("lead/worker")
    assert worker is not None
    assert any(isinstance(e, ToolStarted) for e in worker.events)
    assert any(isinstance(e, ToolFinished) for e in worker.events)
    assert log.tree().find("lead") is not None


def test_policy_engine_can_log_to_the_event_log() -> None:
    log = EventLog()
    engine = PolicyEngine(event_sink=log)
    assert engine.event_sink is log
