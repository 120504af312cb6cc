"""Remote agents on the in-process fake backend: the same handles, requests, supervision and
cancellation as local agents, with everything travelling as data between "hosts"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st

from trio_agents import (
    AgentCancelled,
    AgentFailed,
    AgentOrchestrator,
    AgentRestarted,
    AgentSpec,
    AgentStatus,
    ChildFailed,
    DefaultSupervisor,
    Event,
    InvalidArgumentError,
    Message,
    SupervisorAction,
)
from trio_agents.distributed import (
    FakeBackend,
    HostLost,
    Placement,
    RemoteAgent,
    RemoteAgentError,
    RemoteCluster,
    Spread,
    open_cluster,
)
from trio_agents.testing import ScriptedModel, strategies, text

ECHO = "remote_agents:echo"


@asynccontextmanager
async def fake_cluster(
    *hosts: str, grace: float = 5.0
) -> AsyncIterator[tuple[FakeBackend, RemoteCluster]]:
    async with (
        FakeBackend.open(hosts or ("h1", "h2")) as backend,
        open_cluster(backend, grace=grace) as cluster,
    ):
        yield backend, cluster


class Always:
    def __init__(self, action: SupervisorAction) -> None:
        self.action = action
        self.max_restarts = 3

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        return self.action


# --------------------------------------------------------------------------- requests


async def test_request_reply_through_an_ordinary_handle_on_two_hosts() -> None:
    async with fake_cluster() as (backend, cluster):
        orchestrator = AgentOrchestrator()
        orchestrator.add_agent("a", cluster.factory("a", ECHO))
        orchestrator.add_agent("b", cluster.factory("b", ECHO))
        async with orchestrator.open() as system:
            a = await system.spawn("a")
            b = await system.spawn("b")
            assert (await a.send_message("hi")).final_text == "echo 1: hi"
            # The conversation lives on the host: the second run sees the first.
            assert (await a.send_message("again")).final_text == "echo 2: again"
            assert (await b.send_message("yo")).final_text == "echo 1: yo"
            assert {cluster.host_of("a"), cluster.host_of("b")} == {"h1", "h2"}
            assert isinstance(a.agent, RemoteAgent)
            assert a.status is AgentStatus.RUNNING
            stats = a.statistics()
            assert (stats.requests_served, stats.restarts) == (2, 0)
            assert backend.host_load("h1") == backend.host_load("h2") == 1
            pending = b.send_message_nowait("later")
            assert (await pending.wait()).final_text == "echo 2: later"
            assert (await a.aclose()).final_text == "echo 2: again"
        # Closing the cluster frees the hosts.
    assert backend.live_hosts() == ["h1", "h2"]
    assert sorted(backend.kills) == ["a#1", "b#2"]


async def test_a_spec_travels_and_is_built_on_the_host() -> None:
    spec = AgentSpec(name="writer", instructions="write", model="scripted")
    models = {"scripted": lambda: ScriptedModel([text("from the spec")])}
    async with (
        FakeBackend.open(["h1"], models=models) as backend,
        open_cluster(backend) as cluster,
    ):
        orchestrator = AgentOrchestrator()
        orchestrator.add_agent("writer", cluster.factory("writer", spec))
        async with orchestrator.open() as system:
            handle = await system.spawn("writer")
            assert (await handle.send_message("go")).final_text == "from the spec"


async def test_a_full_local_queue_blocks_the_caller() -> None:
    async with fake_cluster("h1") as (_, cluster):
        orchestrator = AgentOrchestrator(channel_buffer=1)
        orchestrator.add_agent("a", cluster.factory("a", ECHO))
        async with orchestrator.open() as system:
            handle = await system.spawn("a")
            first = handle.send_message_nowait("hang")
            await trio.testing.wait_all_tasks_blocked()
            queued = handle.send_message_nowait("x")
            with pytest.raises(trio.WouldBlock):
                handle.send_message_nowait("y")
            assert handle.statistics().queue_length == 1
            handle.cancel("done")
            with pytest.raises(AgentCancelled):
                await first.wait()
            with pytest.raises(AgentCancelled):
                await queued.wait()


# --------------------------------------------------------------------------- bad input


async def test_a_closure_cannot_travel_and_bad_targets_are_named() -> None:
    async with fake_cluster("h1") as (_, cluster):
        with pytest.raises(InvalidArgumentError, match="closure or lambda cannot travel"):
            cluster.factory("a", lambda: None)
        with pytest.raises(InvalidArgumentError, match="'module:function' path, got 'nocolon'"):
            cluster.factory("a", "nocolon")
        with pytest.raises(InvalidArgumentError, match="got int"):
            cluster.factory("a", 42)
        with pytest.raises(InvalidArgumentError, match="placement must be a Placement"):
            cluster.factory("a", ECHO, placement="h1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="non-empty sequence of distinct names"):
        async with FakeBackend.open("h1"):
            pass
    with pytest.raises(InvalidArgumentError, match="distinct names, got \\['h1', 'h1'\\]"):
        async with FakeBackend.open(["h1", "h1"]):
            pass
    with pytest.raises(InvalidArgumentError, match="grace must be"):
        async with open_cluster(backend=FakeBackend.__new__(FakeBackend), grace=-1):
            pass
    with pytest.raises(InvalidArgumentError, match="must implement"):
        async with open_cluster(object()):  # type: ignore[arg-type]
            pass


async def test_a_factory_that_fails_on_the_host_fails_the_spawn_naming_the_host() -> None:
    # The agent is built on its host when it is spawned (its watchdog), so a target the
    # host cannot build is the spawn's error, as a local factory's would be.
    async with fake_cluster("h1") as (backend, cluster):
        orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor())
        orchestrator.add_agent("bad", cluster.factory("bad", "remote_agents:not_an_agent"))
        orchestrator.add_agent("gone", cluster.factory("gone", "remote_agents:missing"))
        orchestrator.add_agent("ok", cluster.factory("ok", ECHO))
        async with orchestrator.open() as system:
            with pytest.raises(
                RemoteAgentError, match=r"on host 'h1'.*must return an Agent, got int"
            ):
                await system.spawn("bad")
            with pytest.raises(RemoteAgentError, match="has no attribute 'missing'"):
                await system.spawn("gone")
            assert system.status("bad") is None  # never served: it can be spawned again
            assert backend.host_load("h1") == 0
            # The system is unharmed, and a good target is built at spawn, before a request.
            await system.spawn("ok")
            assert backend.host_load("h1") == 1
            assert cluster.host_of("ok") == "h1"


# --------------------------------------------------------------------------- the watchdog


async def test_a_host_lost_while_its_agent_is_idle_is_noticed_before_any_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    async with fake_cluster("h1", "h2") as (backend, cluster):
        orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor(), event_sink=events.append)
        orchestrator.add_agent("a", cluster.factory("a", ECHO, placement=Placement(hosts=("h1",))))
        async with orchestrator.open() as system:
            handle = await system.spawn("a")
            assert (await handle.send_message("hi")).final_text == "echo 1: hi"
            backend.kill_host("h1")
            await trio.sleep(60)  # virtual: the restart's backoff passes
            # Placed again on the surviving host with no request sent meanwhile, and built
            # there already.
            assert cluster.host_of("a") == "h2"
            assert backend.host_load("h2") == 1
            assert handle.status is AgentStatus.RUNNING
            assert handle.statistics().restarts == 1
            failed = [e for e in events if isinstance(e, AgentFailed)]
            assert len(failed) == 1
            assert failed[0].error.type == "HostLost"
            assert "while agent 'a#1' was idle" in failed[0].error.message
            assert [e.incarnation for e in events if isinstance(e, AgentRestarted)] == [2]
            # Nothing waited for that: the next request is answered by the new incarnation.
            assert (await handle.send_message("again")).final_text == "echo 1: again"


async def test_a_host_lost_during_a_request_gives_that_request_one_host_lost_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The watchdog leaves an agent that is running to its request's own reply: exactly one
    # failure, one restart.
    async with fake_cluster("h1", "h2") as (backend, cluster):
        orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor())
        orchestrator.add_agent("a", cluster.factory("a", ECHO, placement=Placement(hosts=("h1",))))
        async with orchestrator.open() as system:
            handle = await system.spawn("a")
            pending = handle.send_message_nowait("hang")
            await trio.testing.wait_all_tasks_blocked()
            backend.kill_host("h1")
            with pytest.raises(HostLost, match="during a request"):
                await pending.wait()
            await trio.sleep(60)  # virtual: the restart's backoff passes
            assert handle.statistics().restarts == 1
            assert cluster.host_of("a") == "h2"


async def test_a_host_lost_with_stop_as_the_policy_stops_the_idle_agent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_cluster("h1", "h2") as (backend, cluster):
        orchestrator = AgentOrchestrator(supervisor=Always(SupervisorAction.STOP))
        orchestrator.add_agent("a", cluster.factory("a", ECHO, placement=Placement(hosts=("h1",))))
        async with orchestrator.open() as system:
            handle = await system.spawn("a")
            backend.kill_host("h1")
            assert await handle.wait_done() is AgentStatus.FAILED
            assert cluster.host_of("a") is None


async def test_an_ended_incarnation_is_killed_on_its_host_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_cluster("h1") as (backend, cluster):
        orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor())
        orchestrator.add_agent("a", cluster.factory("a", ECHO))
        orchestrator.add_agent("b", cluster.factory("b", ECHO))
        orchestrator.add_agent("c", cluster.factory("c", ECHO))
        async with orchestrator.open() as system:
            a = await system.spawn("a")
            b = await system.spawn("b")
            c = await system.spawn("c")
            assert backend.host_load("h1") == 3
            # A restart: the failed incarnation is killed when it ends, not after the backoff
            # when the next one is placed.
            with pytest.raises(RemoteAgentError):
                await a.send_message("throttle")
            await trio.testing.wait_all_tasks_blocked()
            assert backend.kills == ["a#1"]  # during the backoff
            assert cluster.host_of("a") is None
            await trio.sleep(60)  # virtual: the restart's backoff passes
            assert a.statistics().restarts == 1
            # Closed by its handle: killed at once.
            await b.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert backend.kills == ["a#1", "b#2"]
            assert cluster.host_of("b") is None
            # Cancelled by its handle: killed at once.
            c.cancel()
            await c.wait_done()
            await trio.testing.wait_all_tasks_blocked()
            assert backend.kills == ["a#1", "b#2", "c#3"]
            assert backend.host_load("h1") == 1  # a's second incarnation
        # The system closed: the last one is killed with it.
        await trio.testing.wait_all_tasks_blocked()
        assert backend.kills == ["a#1", "b#2", "c#3", "a#4"]
        assert backend.host_load("h1") == 0


# --------------------------------------------------------------------------- failures


async def test_a_remote_error_keeps_its_type_and_retryability() -> None:
    async with fake_cluster() as (_, cluster):
        orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor())
        orchestrator.add_agent("a", cluster.factory("a", ECHO))
        async with orchestrator.open() as system:
            handle = await system.spawn("a")
            with pytest.raises(RemoteAgentError) as caught:
                await handle.send_message("throttle")
            assert caught.value.original.type == "ModelThrottled"
            assert caught.value.retryable
            # Retryable: restarted (a new incarnation, so a fresh conversation).
            assert (await handle.send_message("hi")).final_text == "echo 1: hi"
            assert handle.statistics().restarts == 1
            with pytest.raises(RemoteAgentError, match="BadRequestError on host") as caught:
                await handle.send_message("boom")
            assert not caught.value.retryable
            assert await handle.wait_done() is AgentStatus.FAILED


async def test_a_lost_host_answers_its_request_and_the_agent_restarts_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_cluster() as (backend, cluster):
        orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor())
        orchestrator.add_agent("a", cluster.factory("a", ECHO))
        async with orchestrator.open() as system:
            handle = await system.spawn("a")
            assert (await handle.send_message("warm up")).final_text == "echo 1: warm up"
            lost_host = cluster.host_of("a")
            assert lost_host is not None
            in_flight = handle.send_message_nowait("hang")
            queued = [handle.send_message_nowait(f"q{i}") for i in range(3)]
            await trio.testing.wait_all_tasks_blocked()
            backend.kill_host(lost_host)
            with pytest.raises(HostLost) as caught:
                await in_flight.wait()
            assert caught.value.host == lost_host
            assert lost_host in str(caught.value)
            # The queued requests wait for the decision, then the new incarnation (on the
            # surviving host, history lost) answers each exactly once.
            replies = [(await q.wait()).final_text for q in queued]
            assert replies == ["echo 1: q0", "echo 2: q1", "echo 3: q2"]
            assert cluster.host_of("a") not in (None, lost_host)
            assert handle.statistics().restarts == 1
            assert all(q.done for q in queued)


async def test_strict_affinity_with_every_host_lost_escalates_to_the_root() -> None:
    async with fake_cluster() as (backend, cluster):
        orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor(max_restarts=2))
        placement = Placement(hosts=("h2",), strict=True)
        orchestrator.add_agent("a", cluster.factory("a", ECHO, placement=placement))
        with pytest.raises(ChildFailed, match="'a'") as caught:
            async with orchestrator.open() as system:
                handle = await system.spawn("a")
                assert cluster.host_of("a") == "h2"
                await handle.send_message("hi")
                pending = handle.send_message_nowait("hang")
                await trio.testing.wait_all_tasks_blocked()
                backend.kill_host("h2")
                with pytest.raises(HostLost):
                    await pending.wait()
                await trio.sleep_forever()
        assert isinstance(caught.value.__cause__, HostLost)
        assert "no live host for this placement (wanted: h2" in str(caught.value.__cause__)


async def test_a_remote_leafs_escalation_reaches_the_local_root() -> None:
    async with fake_cluster() as (_, cluster):
        orchestrator = AgentOrchestrator(supervisor=Always(SupervisorAction.ESCALATE))
        orchestrator.add_agent("lead", cluster.factory("lead", ECHO))
        orchestrator.add_child("worker", "lead", cluster.factory("worker", ECHO))
        with pytest.raises(ChildFailed) as caught:
            async with orchestrator.open() as system:
                await system.spawn("lead")
                worker = await system.spawn("worker")
                with pytest.raises(RemoteAgentError):
                    await worker.send_message("boom")
                await trio.sleep_forever()
        assert caught.value.path == "lead"
        assert isinstance(caught.value.__cause__, ChildFailed)
        assert caught.value.__cause__.path == "lead/worker"


# --------------------------------------------------------------------------- placement


async def test_placement_spreads_packs_and_prefers_its_hosts() -> None:
    async with fake_cluster("h1", "h2", "h3") as (backend, _):
        await backend.spawn("h1", "x", {"factory": ECHO})
        await backend.spawn("h1", "x", {"factory": ECHO})  # idempotent
        assert backend.host_load("h1") == 1
        live, load = backend.live_hosts, backend.host_load
        assert Placement().choose(live(), load) == "h2"
        assert Placement(strategy=Spread.PACK).choose(live(), load) == "h1"
        assert Placement(hosts=("h3", "h1")).choose(live(), load) == "h3"
        backend.kill_host("h3")
        assert Placement(hosts=("h3",)).choose(live(), load) == "h2"  # falls back: not strict
        with pytest.raises(HostLost, match=r"wanted: h3; live: \['h1', 'h2'\]"):
            Placement(hosts=("h3",), strict=True).choose(live(), load)
        with pytest.raises(HostLost):
            await backend.request("h3", "x", [])
        with pytest.raises(InvalidArgumentError, match="unknown host 'h9'"):
            backend.kill_host("h9")


# --------------------------------------------------------------------------- cancellation


async def test_a_cancel_scope_around_a_remote_call_cancels_it_on_the_host(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_cluster("h1") as (backend, cluster):
        agent = cluster.factory("a", ECHO)()
        assert (await agent.run("hi")).final_text == "echo 1: hi"
        with trio.move_on_after(1) as scope:
            await agent.run("hang")
        assert scope.cancelled_caught
        assert backend.cancels == ["a#1"]
        assert backend.kills == []  # it ended within the grace period
        assert (await agent.run("still here")).final_text == "echo 3: still here"


async def test_a_stubborn_remote_run_is_killed_after_the_grace_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_cluster("h1", grace=2.0) as (backend, cluster):
        agent = cluster.factory("s", "remote_agents:stubborn")()
        start = trio.current_time()
        with trio.move_on_after(1):
            await agent.run("go")
        assert backend.cancels == ["s#1"]
        assert backend.kills == ["s#1"]
        assert trio.current_time() - start == pytest.approx(3.0)
        assert backend.host_load("h1") == 0


async def test_a_caller_that_stops_waiting_does_not_cancel_the_remote_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # As with a local agent: the request is the agent's to finish; only the handle, the
    # tree, or a scope around the run itself cancels it.
    async with fake_cluster("h1") as (backend, cluster):
        orchestrator = AgentOrchestrator()
        orchestrator.add_agent("a", cluster.factory("a", ECHO))
        async with orchestrator.open() as system:
            handle = await system.spawn("a")
            with trio.move_on_after(1):
                await handle.send_message("hang")
            assert backend.cancels == []
            handle.cancel("enough")
            assert await handle.wait_done() is AgentStatus.CANCELLED
            assert backend.cancels == ["a#1"]


async def test_cancelling_a_remote_subtree_cancels_its_runs_on_their_hosts() -> None:
    async with fake_cluster() as (backend, cluster):
        orchestrator = AgentOrchestrator()
        orchestrator.add_agent("lead", cluster.factory("lead", ECHO))
        orchestrator.add_child("worker", "lead", cluster.factory("worker", ECHO))
        async with orchestrator.open() as system:
            lead = await system.spawn("lead")
            worker = await system.spawn("worker")
            lead_call = lead.send_message_nowait("hang")
            worker_call = worker.send_message_nowait("hang")
            await trio.testing.wait_all_tasks_blocked()
            lead.cancel("subtree no longer needed")
            for call in (lead_call, worker_call):
                with pytest.raises(AgentCancelled, match=r"subtree no longer needed|ended"):
                    await call.wait()
            assert await worker.wait_done() is AgentStatus.CANCELLED
            assert sorted(backend.cancels) == ["lead#1", "worker#2"]
            assert lead.status is AgentStatus.CANCELLED


# --------------------------------------------------------------------------- properties


@settings(max_examples=40)
@given(st.lists(strategies.messages(), min_size=1, max_size=4))
def test_messages_and_results_travel_exactly(messages: list[Message]) -> None:
    async def main() -> None:
        async with fake_cluster("h1") as (backend, cluster):
            agent = cluster.factory("a", ECHO)()
            result = await agent.run(messages)
            hosted = backend.hosted("h1", "a#1")
            assert list(hosted.messages[: len(messages)]) == messages
            assert result == hosted.last_result

    trio.run(main)


@settings(max_examples=40)
@given(
    requests=st.lists(st.sampled_from(["slow", "hi", "throttle"]), min_size=1, max_size=8),
    kills=st.lists(st.tuples(st.sampled_from(["h1", "h2", "h3"]), st.floats(0, 6)), max_size=2),
)
def test_every_request_gets_exactly_one_reply_whatever_hosts_die(
    requests: list[str], kills: list[tuple[str, float]]
) -> None:
    async def main() -> None:
        async with fake_cluster("h1", "h2", "h3") as (backend, cluster):
            orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor(max_restarts=20))
            orchestrator.add_agent("a", cluster.factory("a", ECHO))
            async with orchestrator.open() as system, trio.open_nursery() as nursery:
                handle = await system.spawn("a")
                for host, at in kills:
                    nursery.start_soon(_kill_at, backend, host, at)
                pending = [handle.send_message_nowait(text) for text in requests]
                replies: list[object] = []
                for reply in pending:
                    try:
                        replies.append((await reply.wait()).final_text)
                    except (HostLost, RemoteAgentError) as exc:
                        replies.append(exc)
                assert len(replies) == len(requests)
                assert all(p.done for p in pending)
                killed = {host for host, _ in kills}
                lost = [r for r in replies if isinstance(r, HostLost)]
                event(f"requests answered HostLost: {min(len(lost), 1)}")
                assert {r.host for r in lost} <= killed
                assert len(lost) <= len(kills)
                for text, reply in zip(requests, replies, strict=True):
                    if text == "throttle":
                        assert isinstance(reply, RemoteAgentError | HostLost)
                    elif not isinstance(reply, HostLost):
                        assert isinstance(reply, str)
                        assert reply.endswith(f": {text}")
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def _kill_at(backend: FakeBackend, host: str, at: float) -> None:
    await trio.sleep(at)
    backend.kill_host(host)
