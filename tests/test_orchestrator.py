"""Supervision semantics of the orchestrator, pinned on trio's virtual clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentCancelled,
    AgentError,
    AgentOrchestrator,
    AgentResult,
    AgentStatus,
    AgentStopped,
    AuthenticationError,
    Backoff,
    ChildFailed,
    DefaultSupervisor,
    Event,
    InvalidArgumentError,
    ModelOverloaded,
    RestartLimit,
    RestartStrategy,
    RestartType,
    RetryPolicy,
    StopReason,
    SupervisorAction,
    SupervisorDecided,
    TextBlock,
    UserMessage,
)
from trio_agents.testing import (
    FunctionModel,
    check_event_log,
    check_restart_limits,
    hang,
    text,
)

NO_BACKOFF = Backoff.none()


class Tree:
    """Factories for echo agents whose behaviour is driven by the request text.

    ``"fail"`` raises a retryable error, ``"fatal"`` a non-retryable one, ``"hang"`` waits
    until cancelled, ``"sleep N"`` answers after N seconds; anything else is echoed with the
    number of user messages the incarnation has seen (so a restart shows as a reset).
    """

    def __init__(self) -> None:
        self.built: list[str] = []

    def factory(self, name: str) -> Callable[[], Agent]:
        def build() -> Agent:
            self.built.append(name)

            def respond(request):  # type: ignore[no-untyped-def]
                last = request.messages[-1]
                assert isinstance(last, UserMessage)
                block = last.content[0]
                assert isinstance(block, TextBlock)
                word = block.text
                seen = sum(isinstance(m, UserMessage) for m in request.messages)
                if word == "fail":
                    raise ModelOverloaded(f"{name} overloaded")
                if word == "fatal":
                    raise AuthenticationError(f"{name} has a bad key")
                if word == "hang":
                    return hang()
                if word.startswith("sleep"):
                    return text(f"{name} woke", delay=float(word.split()[1]))
                return f"{name}:{word}#{seen}"

            return Agent(FunctionModel(respond), name=name, retry=RetryPolicy(max_attempts=1))

        return build


def orchestrator(**kwargs: object) -> AgentOrchestrator:
    kwargs.setdefault("backoff", NO_BACKOFF)
    return AgentOrchestrator(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- registry


def test_registry_queries() -> None:
    tree = Tree()
    orch = AgentOrchestrator()
    orch.add_agent("lead", tree.factory("lead"))
    orch.add_child("r1", "lead", tree.factory("r1"))
    orch.add_child("r2", "lead", tree.factory("r2"))
    orch.add_child("w1", "r1", tree.factory("w1"))
    assert orch.names() == ["lead", "r1", "r2", "w1"]
    assert orch.children_of("lead") == ["r1", "r2"]
    assert orch.children_of("w1") == []
    assert orch.children_of("nobody") is None
    assert orch.parent_of("w1") == "r1"
    assert orch.parent_of("lead") is None
    assert orch.parent_of("nobody") is None
    assert "r2" in orch and orch.contains("r2") and "x" not in orch
    assert orch.path_of("w1") == "lead/r1/w1"
    assert tree.built == []  # factories are never called at registration


def test_registry_errors_leave_state_intact() -> None:
    orch = AgentOrchestrator()
    orch.add_agent("p1", Tree().factory("p1"))
    orch.add_agent("p2", Tree().factory("p2"))
    orch.add_child("child", "p1", Tree().factory("child"))
    before = (orch.names(), orch.children_of("p1"), orch.children_of("p2"))
    with pytest.raises(InvalidArgumentError, match="'child' is already registered"):
        orch.add_child("child", "p2", Tree().factory("child"))
    with pytest.raises(InvalidArgumentError, match="'child' is already registered"):
        orch.add_agent("child", Tree().factory("child"))
    with pytest.raises(InvalidArgumentError, match="parent 'missing' is not registered"):
        orch.add_child("x", "missing", Tree().factory("x"))
    with pytest.raises(InvalidArgumentError, match="factory"):
        orch.add_agent("y", "not callable")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="strategy"):
        orch.add_agent("z", Tree().factory("z"), strategy="one_for_all")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="max_restarts"):
        orch.add_agent("w", Tree().factory("w"), max_restarts=-1)
    assert (orch.names(), orch.children_of("p1"), orch.children_of("p2")) == before
    assert orch.parent_of("child") == "p1"


def test_orchestrator_arguments_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="channel_buffer"):
        AgentOrchestrator(channel_buffer=-1)
    with pytest.raises(InvalidArgumentError, match="supervisor"):
        AgentOrchestrator(supervisor=object())  # type: ignore[arg-type]
    assert (
        AgentOrchestrator(supervisor=DefaultSupervisor(max_restarts=5)).default_limit.max_restarts
        == 5
    )


# --------------------------------------------------------------------------- serving


async def test_spawn_serve_reply() -> None:
    tree = Tree()
    orch = orchestrator()
    orch.add_agent("a", tree.factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        assert handle.status is AgentStatus.RUNNING
        assert (await handle.send_message("hi")).final_text == "a:hi#1"
        assert (await handle.send_message("again")).final_text == "a:again#2"
        stats = handle.statistics()
        assert stats.requests_served == 2
        assert stats.incarnation == 1
        assert stats.usage.requests == 2
    assert handle.status is AgentStatus.CANCELLED
    assert handle.is_done


async def test_spawn_errors() -> None:
    orch = orchestrator()
    orch.add_agent("p", Tree().factory("p"))
    orch.add_child("c", "p", Tree().factory("c"))
    async with orch.open() as system:
        with pytest.raises(InvalidArgumentError, match="not registered"):
            await system.spawn("nobody")
        with pytest.raises(InvalidArgumentError, match="parent 'p' is not running"):
            await system.spawn("c")
        await system.spawn("p")
        with pytest.raises(InvalidArgumentError, match="already running"):
            await system.spawn("p")
        await system.spawn("c")


async def test_spawn_with_a_broken_factory_raises_to_the_caller() -> None:
    def broken() -> Agent:
        raise RuntimeError("no model configured")

    orch = orchestrator(supervisor=DefaultSupervisor())
    orch.add_agent("b", broken)
    async with orch.open() as system:
        with pytest.raises(RuntimeError, match="no model configured"):
            await system.spawn("b")


async def test_concurrent_requests_are_served_in_order() -> None:
    tree = Tree()
    orch = orchestrator()
    orch.add_agent("a", tree.factory("a"))
    replies: list[str] = []
    async with orch.open() as system:
        handle = await system.spawn("a")
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(lambda i=i: _send_and_record(handle, f"m{i}", replies))
                await trio.testing.wait_all_tasks_blocked()
    assert replies == [f"a:m{i}#{i + 1}" for i in range(5)]


async def _send_and_record(handle, word: str, replies: list[str]) -> None:  # type: ignore[no-untyped-def]
    replies.append((await handle.send_message(word)).final_text)


async def test_backpressure_on_a_full_channel(autojump_clock: trio.testing.MockClock) -> None:
    orch = orchestrator(channel_buffer=1)
    orch.add_agent("a", Tree().factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle.send_message, "sleep 10")  # being served
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(handle.send_message, "x")  # fills the buffer of 1
            await trio.testing.wait_all_tasks_blocked()
            assert handle.statistics().queue_length == 1
            with pytest.raises(trio.WouldBlock):
                handle.send_message_nowait("y")
            blocked_done = trio.Event()

            async def blocked_sender() -> None:
                await handle.send_message("z")
                blocked_done.set()

            nursery.start_soon(blocked_sender)
            await trio.testing.wait_all_tasks_blocked()
            assert handle.statistics().queue_length == 1  # the third sender waits outside
            assert not blocked_done.is_set()
        assert trio.current_time() == pytest.approx(10)
        assert blocked_done.is_set()


async def test_nowait_send_and_pending_reply() -> None:
    orch = orchestrator()
    orch.add_agent("a", Tree().factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        pending = [handle.send_message_nowait(f"n{i}") for i in range(3)]
        assert not pending[0].done
        results = [await p.wait() for p in pending]
        assert [r.final_text for r in results] == ["a:n0#1", "a:n1#2", "a:n2#3"]


async def test_graceful_aclose_drains_the_queue() -> None:
    orch = orchestrator()
    orch.add_agent("a", Tree().factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        pending = [handle.send_message_nowait(f"q{i}") for i in range(4)]
        final = await handle.aclose()
        assert [(await p.wait()).final_text for p in pending] == [
            f"a:q{i}#{i + 1}" for i in range(4)
        ]
        assert handle.status is AgentStatus.COMPLETED
        assert final.final_text == "a:q3#4"
        assert final.usage.requests == 4  # the usage of everything it served
        with pytest.raises(AgentStopped, match="closed"):
            await handle.send_message("late")


# --------------------------------------------------------------------------- restart


async def test_restart_keeps_queue_and_rebuilds_from_factory() -> None:
    tree = Tree()
    events: list[Event] = []
    orch = orchestrator(supervisor=DefaultSupervisor(), event_sink=events.append)
    orch.add_agent("a", tree.factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        assert (await handle.send_message("hello")).final_text == "a:hello#1"
        failing = handle.send_message_nowait("fail")
        queued = [handle.send_message_nowait(f"after{i}") for i in range(2)]
        with pytest.raises(ModelOverloaded):
            await failing.wait()
        # the new incarnation serves the queue, with a fresh history
        assert (await queued[0].wait()).final_text == "a:after0#1"
        assert (await queued[1].wait()).final_text == "a:after1#2"
        stats = handle.statistics()
        assert stats.restarts == 1
        assert stats.incarnation == 2
        assert handle.status is AgentStatus.RUNNING
    assert tree.built == ["a", "a"]
    kinds = [
        e.kind for e in events if e.agent == "a" and e.kind.startswith(("agent", "supervisor"))
    ]
    assert kinds[:5] == [
        "agent_spawned",
        "agent_failed",
        "supervisor_decided",
        "agent_restarted",
        "agent_spawned",
    ]


async def test_restart_backoff_timings(autojump_clock: trio.testing.MockClock) -> None:
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(max_restarts=5),
        backoff=Backoff(initial=1.0, factor=2.0, max_delay=30.0, jitter=False),
    )
    orch.add_agent("a", Tree().factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        times = []
        for _ in range(3):
            start = trio.current_time()
            with pytest.raises(ModelOverloaded):
                await handle.send_message("fail")
            await handle.send_message("ok?")  # served after the backoff
            times.append(trio.current_time() - start)
            # the success reset the consecutive count, so every delay is the first one
        assert times == [pytest.approx(1.0)] * 3
        for expected in (1.0, 2.0, 4.0):
            start = trio.current_time()
            with pytest.raises(ModelOverloaded):
                await handle.send_message("fail")
            await trio.testing.wait_all_tasks_blocked()
            assert handle.status is AgentStatus.RESTARTING
            await trio.sleep(expected - 0.001)
            assert handle.status is AgentStatus.RESTARTING
            await trio.sleep(0.002)
            assert handle.status is AgentStatus.RUNNING


async def test_consecutive_limit_exact_boundary() -> None:
    orch = orchestrator(supervisor=DefaultSupervisor(max_restarts=3))
    orch.add_agent("a", Tree().factory("a"))
    with pytest.raises(ChildFailed) as info:
        async with orch.open() as system:
            handle = await system.spawn("a")
            for _ in range(3):  # three restarts in a row are allowed
                with pytest.raises(ModelOverloaded):
                    await handle.send_message("fail")
            await trio.testing.wait_all_tasks_blocked()
            assert handle.statistics().restarts == 3
            assert handle.status is AgentStatus.RUNNING
            with pytest.raises(ModelOverloaded):  # the fourth escalates to the root
                await handle.send_message("fail")
            await trio.sleep_forever()
    assert info.value.path == "a"
    assert isinstance(info.value.__cause__, ModelOverloaded)
    assert handle.status is AgentStatus.FAILED


async def test_a_success_resets_the_consecutive_count() -> None:
    orch = orchestrator(supervisor=DefaultSupervisor(max_restarts=1))
    orch.add_agent("a", Tree().factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        for _ in range(4):
            with pytest.raises(ModelOverloaded):
                await handle.send_message("fail")
            await handle.send_message("fine")
        assert handle.statistics().restarts == 4


async def test_sliding_window_limit_exact_boundary(autojump_clock: trio.testing.MockClock) -> None:
    orch = orchestrator(supervisor=DefaultSupervisor(max_restarts=2), restart_window=10.0)
    orch.add_agent("a", Tree().factory("a"))
    with pytest.raises(ChildFailed):
        async with orch.open() as system:
            handle = await system.spawn("a")
            start = trio.current_time()
            with pytest.raises(ModelOverloaded):  # restart at t=0
                await handle.send_message("fail")
            await trio.sleep(5)
            with pytest.raises(ModelOverloaded):  # restart at t=5
                await handle.send_message("fail")
            await handle.send_message("ok")  # successes do not reset a window
            await trio.sleep(5 - (trio.current_time() - start - 5))
            assert trio.current_time() - start == pytest.approx(10)
            # exactly T after the first restart: it no longer counts, so this one is allowed
            with pytest.raises(ModelOverloaded):
                await handle.send_message("fail")
            assert handle.status is not AgentStatus.FAILED
            await trio.sleep(1)
            assert handle.statistics().restarts == 3
            # t=11: restarts at 5 and 10 are inside (1, 11]: the next failure escalates
            with pytest.raises(ModelOverloaded):
                await handle.send_message("fail")
            await trio.sleep_forever()


# --------------------------------------------------------------------------- strategies


async def _three_siblings(strategy: RestartStrategy) -> tuple[Tree, dict[str, int]]:
    tree = Tree()
    orch = orchestrator(supervisor=DefaultSupervisor())
    orch.add_agent("p", tree.factory("p"), strategy=strategy)
    for name in ("a", "b", "c"):
        orch.add_child(name, "p", tree.factory(name))
    async with orch.open() as system:
        await system.spawn("p")
        handles = {name: await system.spawn(name) for name in ("a", "b", "c")}
        with pytest.raises(ModelOverloaded):
            await handles["b"].send_message("fail")
        await trio.testing.wait_all_tasks_blocked()  # let the supervisor restart them
        for handle in handles.values():
            await handle.send_message("ping")
            assert handle.status is AgentStatus.RUNNING
        incarnations = {name: h.statistics().incarnation for name, h in handles.items()}
        restarts = {name: h.statistics().restarts for name, h in handles.items()}
        assert restarts == {"a": 0, "b": 1, "c": 0}  # only the failed child is counted
    return tree, incarnations


async def test_one_for_one_restarts_only_the_failed_child() -> None:
    tree, inc = await _three_siblings(RestartStrategy.ONE_FOR_ONE)
    assert inc == {"a": 1, "b": 2, "c": 1}
    assert tree.built == ["p", "a", "b", "c", "b"]


async def test_one_for_all_restarts_every_sibling_in_start_order() -> None:
    tree, inc = await _three_siblings(RestartStrategy.ONE_FOR_ALL)
    assert inc == {"a": 2, "b": 2, "c": 2}
    assert tree.built == ["p", "a", "b", "c", "a", "b", "c"]


async def test_rest_for_one_restarts_the_younger_siblings() -> None:
    tree, inc = await _three_siblings(RestartStrategy.REST_FOR_ONE)
    assert inc == {"a": 1, "b": 2, "c": 2}
    assert tree.built == ["p", "a", "b", "c", "b", "c"]


async def test_sibling_restart_keeps_its_queue_and_answers_in_flight() -> None:
    orch = orchestrator(supervisor=DefaultSupervisor())
    orch.add_agent("p", Tree().factory("p"), strategy=RestartStrategy.ONE_FOR_ALL)
    orch.add_child("a", "p", Tree().factory("a"))
    orch.add_child("b", "p", Tree().factory("b"))
    async with orch.open() as system:
        await system.spawn("p")
        a = await system.spawn("a")
        b = await system.spawn("b")
        in_flight = a.send_message_nowait("hang")
        queued = a.send_message_nowait("later")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ModelOverloaded):
            await b.send_message("fail")
        with pytest.raises(AgentCancelled, match="sibling 'p/b' is restarting"):
            await in_flight.wait()
        assert (await queued.wait()).final_text == "a:later#1"


# --------------------------------------------------------------------------- stop


async def test_stop_fails_queued_requests_with_agent_stopped() -> None:
    events: list[Event] = []
    orch = orchestrator(supervisor=DefaultSupervisor(), event_sink=events.append)
    orch.add_agent("a", Tree().factory("a"))
    orch.add_child("kid", "a", Tree().factory("kid"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        kid = await system.spawn("kid")
        kid_pending = kid.send_message_nowait("hang")
        kid_queued = kid.send_message_nowait("later")
        await trio.testing.wait_all_tasks_blocked()
        failing = handle.send_message_nowait("fatal")
        queued = [handle.send_message_nowait(f"q{i}") for i in range(3)]
        with pytest.raises(AuthenticationError):
            await failing.wait()
        for pending in queued:
            with pytest.raises(AgentStopped) as info:
                await pending.wait()
            assert isinstance(info.value.__cause__, AuthenticationError)
        # the kid's run was cut short when its parent failed: answered then, as cancelled
        with pytest.raises(AgentCancelled, match="parent 'a' failed"):
            await kid_pending.wait()
        with pytest.raises(AgentStopped, match="stopped with its parent 'a'"):
            await kid_queued.wait()
        with pytest.raises(AgentStopped):
            await handle.send_message("late")
        assert handle.status is AgentStatus.FAILED
        assert kid.status is AgentStatus.FAILED  # the subtree ends with it
        assert system.running() == []
    ended = {e.agent: e.status for e in events if e.kind == "agent_ended"}  # type: ignore[attr-defined]
    assert ended == {"a": "failed", "a/kid": "failed"}


# --------------------------------------------------------------------------- escalation


def _three_levels(tree: Tree, supervisor: object = None) -> AgentOrchestrator:
    orch = orchestrator(supervisor=supervisor)
    orch.add_agent("lead", tree.factory("lead"))
    for r in ("r1", "r2"):
        orch.add_child(r, "lead", tree.factory(r))
        for w in ("w1", "w2"):
            orch.add_child(f"{r}{w}", r, tree.factory(f"{r}{w}"))
    return orch


async def _spawn_all(system, orch: AgentOrchestrator) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return {name: await system.spawn(name) for name in orch.names()}


async def test_escalation_through_three_levels_reaches_the_root() -> None:
    tree = Tree()
    orch = _three_levels(tree)  # no policy: every failure escalates
    pending = {}
    with pytest.raises(ChildFailed) as info:
        async with orch.open() as system:
            handles = await _spawn_all(system, orch)
            pending = {
                name: h.send_message_nowait("hang") for name, h in handles.items() if name != "r1w2"
            }
            await trio.testing.wait_all_tasks_blocked()
            failing = handles["r1w2"].send_message_nowait("fail")
            await trio.sleep_forever()
    with pytest.raises(ModelOverloaded):
        await failing.wait()
    top = info.value
    assert top.path == "lead"
    chain = []
    err: BaseException | None = top
    while err is not None:
        chain.append(getattr(err, "path", type(err).__name__))
        err = err.__cause__
    assert chain == ["lead", "lead/r1", "lead/r1/r1w2", "ModelOverloaded"]
    statuses = {name: handles[name].status for name in handles}
    assert statuses == {
        "lead": AgentStatus.FAILED,
        "r1": AgentStatus.FAILED,
        "r1w2": AgentStatus.FAILED,
        "r1w1": AgentStatus.CANCELLED,
        "r2": AgentStatus.CANCELLED,
        "r2w1": AgentStatus.CANCELLED,
        "r2w2": AgentStatus.CANCELLED,
    }
    for p in pending.values():  # every waiting request got exactly one reply
        assert p.done
        with pytest.raises(AgentError):
            await p.wait()


async def test_escalation_stops_at_a_supervisor_that_restarts() -> None:
    class Policy:
        def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
            if name == "r1":
                return SupervisorAction.RESTART
            return SupervisorAction.ESCALATE

    tree = Tree()
    orch = _three_levels(tree, Policy())
    async with orch.open() as system:
        handles = await _spawn_all(system, orch)
        r2_before = handles["r2"].statistics().incarnation
        with pytest.raises(ModelOverloaded):
            await handles["r1w2"].send_message("fail")
        await trio.testing.wait_all_tasks_blocked()
        # r1 restarts, and its children come back with it
        for name in ("r1", "r1w1", "r1w2"):
            assert (await handles[name].send_message("ping")).final_text == f"{name}:ping#1"
            assert handles[name].status is AgentStatus.RUNNING
        assert handles["r1"].statistics().incarnation == 2
        assert handles["r1w1"].statistics().incarnation == 2
        # the rest of the tree was not touched
        assert handles["r2"].statistics().incarnation == r2_before
        assert handles["lead"].statistics().incarnation == 1
    assert tree.built.count("r1") == 2
    assert tree.built.count("r2") == 1


async def test_restarted_parent_brings_its_children_back_and_keeps_their_queues() -> None:
    orch = orchestrator(supervisor=DefaultSupervisor())
    orch.add_agent("p", Tree().factory("p"))
    orch.add_child("c", "p", Tree().factory("c"))
    async with orch.open() as system:
        p = await system.spawn("p")
        c = await system.spawn("c")
        in_flight = c.send_message_nowait("hang")
        queued = c.send_message_nowait("later")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ModelOverloaded):
            await p.send_message("fail")
        with pytest.raises(AgentCancelled, match="parent 'p' failed"):
            await in_flight.wait()
        assert (await queued.wait()).final_text == "c:later#1"
        assert c.statistics().incarnation == 2


# --------------------------------------------------------------------------- cancellation


async def test_outside_cancellation_is_not_counted(autojump_clock: trio.testing.MockClock) -> None:
    events: list[Event] = []
    tree = Tree()
    orch = orchestrator(supervisor=DefaultSupervisor(), event_sink=events.append)
    orch.add_agent("a", tree.factory("a"))
    orch.add_agent("b", tree.factory("b"))
    with trio.move_on_after(5):
        async with orch.open() as system:
            a = await system.spawn("a")
            b = await system.spawn("b")
            pending = a.send_message_nowait("hang")
            await trio.sleep_forever()
    with pytest.raises(AgentCancelled):
        await pending.wait()
    assert a.status is AgentStatus.CANCELLED
    assert b.status is AgentStatus.CANCELLED
    assert a.statistics().restarts == 0
    assert not [e for e in events if e.kind in ("agent_failed", "supervisor_decided")]
    assert tree.built == ["a", "b"]


async def test_handle_cancel_ends_the_subtree_without_a_restart() -> None:
    tree = Tree()
    orch = orchestrator(supervisor=DefaultSupervisor())
    orch.add_agent("p", tree.factory("p"))
    orch.add_child("c", "p", tree.factory("c"))
    async with orch.open() as system:
        p = await system.spawn("p")
        c = await system.spawn("c")
        in_flight = p.send_message_nowait("hang")
        queued = c.send_message_nowait("hang")
        await trio.testing.wait_all_tasks_blocked()
        p.cancel("user abort")
        assert await p.wait_done() is AgentStatus.CANCELLED
        with pytest.raises(AgentCancelled, match="user abort"):
            await in_flight.wait()
        with pytest.raises(AgentCancelled):
            await queued.wait()
        assert c.status is AgentStatus.CANCELLED
        assert p.statistics().restarts == 0
        # a cancelled agent can be spawned again
        p2 = await system.spawn("p")
        assert (await p2.send_message("hi")).final_text == "p:hi#1"
    assert tree.built == ["p", "c", "p"]


async def test_no_task_survives_the_block() -> None:
    orch = _three_levels(Tree(), DefaultSupervisor())
    root_task = trio.lowlevel.current_task()

    def count_tasks() -> int:
        total = 0
        stack = list(root_task.child_nurseries)
        while stack:
            nursery = stack.pop()
            for task in nursery.child_tasks:
                total += 1
                stack.extend(task.child_nurseries)
        return total

    async with orch.open() as system:
        handles = await _spawn_all(system, orch)
        for h in handles.values():
            h.send_message_nowait("hang")
        await trio.testing.wait_all_tasks_blocked()
        assert count_tasks() == 7
    assert count_tasks() == 0
    assert all(h.is_done for h in handles.values())


async def test_exactly_one_reply_per_request_in_every_case(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Waiters see one reply each whatever happens: success, failure, restart, stop, cancel."""
    orch = orchestrator(supervisor=DefaultSupervisor(max_restarts=1))
    for name in ("ok", "restarts", "stops", "cancelled", "closed"):
        orch.add_agent(name, Tree().factory(name))
    outcomes: dict[str, list[str]] = {}

    async def client(handle, word: str) -> None:  # type: ignore[no-untyped-def]
        try:
            result: AgentResult = await handle.send_message(word)
            outcomes.setdefault(handle.name, []).append("ok:" + result.final_text)
        except AgentError as exc:
            outcomes.setdefault(handle.name, []).append(type(exc).__name__)

    async with orch.open() as system:
        hs = {name: await system.spawn(name) for name in orch.names()}
        async with trio.open_nursery() as nursery:
            for word in ("x", "sleep 1"):
                nursery.start_soon(client, hs["ok"], word)
                await trio.testing.wait_all_tasks_blocked()
            for word in ("fail", "y"):
                nursery.start_soon(client, hs["restarts"], word)
                await trio.testing.wait_all_tasks_blocked()
            for word in ("fatal", "z", "z"):
                nursery.start_soon(client, hs["stops"], word)
                await trio.testing.wait_all_tasks_blocked()
            for word in ("hang", "w"):
                nursery.start_soon(client, hs["cancelled"], word)
                await trio.testing.wait_all_tasks_blocked()
            hs["cancelled"].cancel()
            for word in ("a", "b"):
                nursery.start_soon(client, hs["closed"], word)
                await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(hs["closed"].aclose)
    assert outcomes == {
        "ok": ["ok:ok:x#1", "ok:ok woke"],
        "restarts": ["ModelOverloaded", "ok:restarts:y#1"],
        "stops": ["AuthenticationError", "AgentStopped", "AgentStopped"],
        "cancelled": ["AgentCancelled", "AgentCancelled"],
        "closed": ["ok:closed:a#1", "ok:closed:b#2"],
    }


async def test_deep_chain_escalation_reaches_the_root_intact() -> None:
    depth = 1000
    orch = orchestrator()
    orch.add_agent("n0", Tree().factory("n0"))
    for i in range(1, depth):
        orch.add_child(f"n{i}", f"n{i - 1}", Tree().factory(f"n{i}"))
    with pytest.raises(ChildFailed) as info:
        async with orch.open() as system:
            for i in range(depth):
                leaf = await system.spawn(f"n{i}")
            leaf.send_message_nowait("fail")
            await trio.sleep_forever()
    assert info.value.path == "n0"
    assert info.value.origin == "/".join(f"n{i}" for i in range(depth))
    assert isinstance(info.value.original, ModelOverloaded)
    depth_seen = 0
    err: BaseException | None = info.value
    while isinstance(err, ChildFailed):
        depth_seen += 1
        err = err.__cause__
    assert depth_seen == depth
    assert isinstance(err, ModelOverloaded)


async def test_cancel_during_backoff_ends_the_agent_without_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tree = Tree()
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(),
        backoff=Backoff(initial=10.0, jitter=False),
    )
    orch.add_agent("a", tree.factory("a"))
    async with orch.open() as system:
        handle = await system.spawn("a")
        with pytest.raises(ModelOverloaded):
            await handle.send_message("fail")
        queued = handle.send_message_nowait("waiting for the restart")
        await trio.sleep(1)
        assert handle.status is AgentStatus.RESTARTING
        handle.cancel("changed my mind")
        assert await handle.wait_done() is AgentStatus.CANCELLED
        with pytest.raises(AgentCancelled, match="changed my mind"):
            await queued.wait()
        await trio.sleep(20)
    assert tree.built == ["a"]  # never rebuilt


async def test_children_stop_youngest_first_when_their_parent_fails() -> None:
    events: list[Event] = []
    orch = orchestrator(supervisor=DefaultSupervisor(), event_sink=events.append)
    orch.add_agent("p", Tree().factory("p"))
    for name in ("c1", "c2", "c3"):
        orch.add_child(name, "p", Tree().factory(name))
    async with orch.open() as system:
        p = await system.spawn("p")
        for name in ("c1", "c3", "c2"):  # start order differs from registration order
            await system.spawn(name)
        with pytest.raises(ModelOverloaded):
            await p.send_message("fail")
        await trio.testing.wait_all_tasks_blocked()
        suspended = [e.agent for e in events if e.kind == "agent_suspended"]
        assert suspended == ["p/c2", "p/c3", "p/c1"]
        # ... and they come back in start order with the restarted parent
        spawned = [e.agent for e in events if e.kind == "agent_spawned"][4:]
        assert spawned == ["p/c1", "p/c3", "p/c2", "p"]


async def test_cancelled_requests_carry_the_partial_result_and_the_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    orch = orchestrator(supervisor=DefaultSupervisor())
    orch.add_agent("a", Tree().factory("a"))
    orch.add_agent("b", Tree().factory("b"))
    async with orch.open() as system:
        a = await system.spawn("a")
        b = await system.spawn("b")
        await a.send_message("warm up")
        a_pending = a.send_message_nowait("hang")
        b_pending = b.send_message_nowait("hang")
        await trio.testing.wait_all_tasks_blocked()
        a.cancel("operator said so")
        with pytest.raises(AgentCancelled, match="operator said so") as info:
            await a_pending.wait()
        partial = info.value.result
        assert partial is not None
        assert partial.stop_reason is StopReason.ABORTED
        assert partial.messages[0] == UserMessage.text("hang")
        system.cancel("maintenance window")
    with pytest.raises(AgentCancelled, match="maintenance window") as info:
        await b_pending.wait()
    assert info.value.result is not None


async def test_a_tree_wide_budget_limits_spawns_and_restarts_and_model_calls() -> None:
    from trio_agents import Budget, BudgetExhausted, UsageLimits

    budget = Budget(UsageLimits(agents=3, requests=10))
    orch = orchestrator(supervisor=DefaultSupervisor(), budget=budget)
    for name in ("a", "b", "c"):
        orch.add_agent(name, Tree().factory(name))
    async with orch.open() as system:
        a = await system.spawn("a")
        await system.spawn("b")
        await a.send_message("one")
        assert budget.usage.requests == 1  # the agents' model calls are charged to it
        assert budget.agents_started == 2
        with pytest.raises(ModelOverloaded):  # the restart is the third incarnation
            await a.send_message("fail")
        await trio.testing.wait_all_tasks_blocked()
        assert budget.agents_started == 3
        with pytest.raises(BudgetExhausted, match="agent budget exhausted"):
            await system.spawn("c")
        queued = a.send_message_nowait("fail")
        with pytest.raises(ModelOverloaded):
            await queued.wait()
        # no budget for another incarnation: the restart fails with BudgetExhausted, which
        # is not retryable, so the default policy stops the agent
        assert await a.wait_done() is AgentStatus.FAILED
        with pytest.raises(AgentStopped) as info:
            await a.send_message("late")
        assert isinstance(info.value.__cause__, BudgetExhausted)


# --------------------------------------------------------------------------- restart types

PERMANENT = RestartType.PERMANENT
TEMPORARY = RestartType.TEMPORARY


def typed_orchestrator(**kwargs: object) -> AgentOrchestrator:
    kwargs.setdefault("backoff", Backoff.none())
    kwargs.setdefault("supervisor", DefaultSupervisor())
    return AgentOrchestrator(**kwargs)  # type: ignore[arg-type]


def test_restart_must_be_a_restart_type_and_a_bad_one_registers_nothing() -> None:
    orch = typed_orchestrator()
    orch.add_agent("p", Tree().factory("p"))
    for bad in ("permanent", None, RestartStrategy.ONE_FOR_ALL):
        with pytest.raises(InvalidArgumentError, match=r"restart for 'x' .*PERMANENT, TRANSIENT"):
            orch.add_agent("x", Tree().factory("x"), restart=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="PERMANENT, TRANSIENT or TEMPORARY"):
            orch.add_child("x", "p", Tree().factory("x"), restart=bad)  # type: ignore[arg-type]
    assert orch.names() == ["p"]


async def test_permanent_restarts_a_failure_the_policy_would_stop_until_the_limit() -> None:
    events: list[Event] = []
    tree = Tree()
    orch = typed_orchestrator(max_restarts=2, event_sink=events.append)
    orch.add_agent("a", tree.factory("a"), restart=PERMANENT)
    with pytest.raises(ChildFailed, match="'a'") as info:
        async with orch.open() as system:
            a = await system.spawn("a")
            for _ in range(2):
                with pytest.raises(AuthenticationError):
                    await a.send_message("fatal")  # the default policy asks to STOP
                await trio.testing.wait_all_tasks_blocked()
                assert a.status is AgentStatus.RUNNING
            assert a.statistics().restarts == 2
            with pytest.raises(AuthenticationError):
                await a.send_message("fatal")  # the third restart is past the limit
            await trio.sleep_forever()
    assert isinstance(info.value.__cause__, AuthenticationError)
    assert tree.built == ["a", "a", "a"]
    decided = [e for e in events if isinstance(e, SupervisorDecided)]
    assert [(d.requested, d.action, d.limit_exceeded) for d in decided] == [
        ("stop", "restart", False),
        ("stop", "restart", False),
        ("stop", "escalate", True),
    ]
    check_event_log(events, complete=True, limits={"a": RestartLimit(max_restarts=2)})


async def test_permanent_normal_end_is_final_and_not_counted() -> None:
    tree = Tree()
    orch = typed_orchestrator(max_restarts=0)
    orch.add_agent("a", tree.factory("a"), restart=PERMANENT)
    async with orch.open() as system:
        a = await system.spawn("a")
        queued = a.send_message_nowait("last")
        result = await a.aclose()
        assert (await queued.wait()).final_text == "a:last#1"
        assert result.final_text == "a:last#1"
        await trio.testing.wait_all_tasks_blocked()
        assert a.status is AgentStatus.COMPLETED
        assert a.statistics().restarts == 0
        with pytest.raises(AgentStopped):
            await a.send_message("more")
    assert tree.built == ["a"]


async def test_temporary_failure_is_reported_and_dropped() -> None:
    events: list[Event] = []
    tree = Tree()
    # No policy at all: every failure would escalate, but a temporary agent's is dropped.
    orch = typed_orchestrator(supervisor=None, event_sink=events.append)
    orch.add_agent("p", tree.factory("p"), strategy=RestartStrategy.ONE_FOR_ALL)
    orch.add_child("t", "p", tree.factory("t"), restart=TEMPORARY)
    orch.add_child("s", "p", tree.factory("s"))
    async with orch.open() as system:
        p = await system.spawn("p")
        t = await system.spawn("t")
        s = await system.spawn("s")
        t.send_message_nowait("fail")
        queued = t.send_message_nowait("later")
        with pytest.raises(AgentStopped, match="stopped after it failed: ModelOverloaded"):
            await queued.wait()
        assert await t.wait_done() is AgentStatus.FAILED
        assert t.statistics().restarts == 0
        assert p.status is AgentStatus.RUNNING  # not escalated
        assert s.status is AgentStatus.RUNNING  # one_for_all does not touch the siblings
        assert (await s.send_message("hi")).final_text == "s:hi#1"
        assert s.statistics().incarnation == 1
        # It can be spawned again by hand, afresh.
        t2 = await system.spawn("t")
        assert (await t2.send_message("again")).final_text == "t:again#1"
    assert tree.built == ["p", "t", "s", "t"]
    decided = [e for e in events if isinstance(e, SupervisorDecided)]
    assert [(d.requested, d.action) for d in decided] == [("escalate", "stop")]
    assert "temporary" in decided[0].reason
    check_event_log(events, complete=True)


async def test_a_temporary_sibling_taken_down_by_a_restart_ends_instead_of_coming_back() -> None:
    events: list[Event] = []
    tree = Tree()
    orch = typed_orchestrator(event_sink=events.append)
    orch.add_agent("p", tree.factory("p"), strategy=RestartStrategy.ONE_FOR_ALL)
    orch.add_child("a", "p", tree.factory("a"))
    orch.add_child("t", "p", tree.factory("t"), restart=TEMPORARY)
    orch.add_child("c", "p", tree.factory("c"))
    async with orch.open() as system:
        await system.spawn("p")
        a = await system.spawn("a")
        t = await system.spawn("t")
        c = await system.spawn("c")
        in_flight = t.send_message_nowait("hang")
        queued = t.send_message_nowait("later")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ModelOverloaded):
            await a.send_message("fail")
        # The run in flight is answered at the teardown (before the decision), the queued
        # request when the temporary agent ends instead of coming back.
        with pytest.raises(AgentCancelled, match="sibling 'p/a' is restarting"):
            await in_flight.wait()
        with pytest.raises(AgentCancelled, match="a temporary agent is not restarted"):
            await queued.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert t.status is AgentStatus.CANCELLED
        assert (await a.send_message("x")).final_text == "a:x#1"
        assert (await c.send_message("x")).final_text == "c:x#1"
        assert c.statistics().incarnation == 2
    assert tree.built == ["p", "a", "t", "c", "a", "c"]
    decided = [e for e in events if isinstance(e, SupervisorDecided)]
    assert decided[0].affected == ("c",)
    check_event_log(events, complete=True)
    stops = [e.agent for e in events if e.kind in ("agent_suspended", "agent_ended")]
    assert stops[:3] == ["p/c", "p/t", "p/t"]  # stopped youngest first, then t ends


async def test_outside_cancellation_of_a_permanent_agent_is_bare_and_never_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    tree = Tree()
    orch = typed_orchestrator(event_sink=events.append)
    orch.add_agent("a", tree.factory("a"), restart=PERMANENT)
    orch.add_child("b", "a", tree.factory("b"), restart=TEMPORARY)
    caught: list[BaseException] = []
    with trio.CancelScope() as scope:
        try:
            async with orch.open() as system:
                a = await system.spawn("a")
                await system.spawn("b")
                a.send_message_nowait("hang")
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel("outside")
                await trio.sleep_forever()
        except BaseException as exc:
            caught.append(exc)
            raise
    assert [type(exc) for exc in caught] == [trio.Cancelled]  # never wrapped in a group
    assert tree.built == ["a", "b"]
    assert not [e for e in events if e.kind in ("agent_failed", "supervisor_decided")]
    check_restart_limits(events, orch)
