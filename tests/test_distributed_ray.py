"""The Ray backend on a real local cluster (loopback, started once per session).

Real processes and real time: every test is bounded by ``trio.fail_after`` so that a bug is a
failure, never a hung suite. The semantics are the ones tests/test_distributed.py pins on the
fake backend.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trio_agents import (
    AgentCancelled,
    AgentFailed,
    AgentOrchestrator,
    AgentRestarted,
    AgentSpawned,
    AgentStatus,
    ChildFailed,
    DefaultSupervisor,
    Event,
    SupervisorAction,
)
from trio_agents.distributed import HostLost, RemoteAgentError, RemoteCluster, open_cluster

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

ECHO = "remote_agents:echo"
LIMIT = 60  # seconds; generous for 2 shared cores, reached only by a bug


@asynccontextmanager
async def ray_cluster_of(*hosts: str) -> AsyncIterator[tuple[Any, RemoteCluster]]:
    from trio_agents.distributed.ray import RayBackend

    async with RayBackend.open(hosts) as backend, open_cluster(backend, grace=5) as cluster:
        yield backend, cluster


async def running_on(backend: Any, host: str) -> list[str]:
    return await backend.running(host)  # type: ignore[no-any-return]


async def wait_running(backend: Any, host: str, count: int) -> None:
    await backend.wait_running(host, count)


class Always:
    def __init__(self, action: SupervisorAction) -> None:
        self.action = action

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        return self.action


async def test_two_hosts_and_a_host_killed_mid_request() -> None:
    with trio.fail_after(LIMIT):
        async with ray_cluster_of("h1", "h2") as (backend, cluster):
            assert backend.host_pid("h1") != backend.host_pid("h2") != os.getpid()
            orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor())
            orchestrator.add_agent("a", cluster.factory("a", ECHO))
            orchestrator.add_agent("b", cluster.factory("b", ECHO))
            async with orchestrator.open() as system:
                a = await system.spawn("a")
                b = await system.spawn("b")
                assert (await a.send_message("hi")).final_text == "echo 1: hi"
                assert (await a.send_message("again")).final_text == "echo 2: again"
                assert (await b.send_message("yo")).final_text == "echo 1: yo"
                doomed, survivor = cluster.host_of("a"), cluster.host_of("b")
                assert {doomed, survivor} == {"h1", "h2"}
                assert doomed is not None
                assert backend.host_load(doomed) == backend.host_load(survivor) == 1
                in_flight = a.send_message_nowait("hang")
                queued = [a.send_message_nowait(f"q{i}") for i in range(3)]
                await wait_running(backend, doomed, 1)  # the request reached the host
                os.kill(backend.host_pid(doomed), signal.SIGKILL)
                with pytest.raises(HostLost) as caught:
                    await in_flight.wait()
                assert caught.value.host == doomed
                replies = [(await q.wait()).final_text for q in queued]
                assert replies == ["echo 1: q0", "echo 2: q1", "echo 3: q2"]
                assert cluster.host_of("a") == survivor
                assert a.statistics().restarts == 1
                assert backend.live_hosts() == [survivor]
                assert (await b.send_message("still")).final_text == "echo 2: still"


async def test_a_host_killed_while_its_agent_is_idle_is_replaced_before_any_request() -> None:
    restarted = trio.Event()
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, AgentSpawned) and event.incarnation == 2:
            restarted.set()  # built on its new host, serving

    with trio.fail_after(LIMIT):
        async with ray_cluster_of("h1", "h2") as (backend, cluster):
            assert backend.hosts() == ["h1", "h2"]
            orchestrator = AgentOrchestrator(supervisor=DefaultSupervisor(), event_sink=sink)
            orchestrator.add_agent("a", cluster.factory("a", ECHO))
            async with orchestrator.open() as system:
                a = await system.spawn("a")
                doomed = cluster.host_of("a")
                assert doomed is not None
                assert backend.host_load(doomed) == 1  # built at spawn, before any request
                survivor = next(h for h in backend.hosts() if h != doomed)
                os.kill(backend.host_pid(doomed), signal.SIGKILL)
                await restarted.wait()  # no request was sent
                failed = [e for e in events if isinstance(e, AgentFailed)]
                assert [e.error.type for e in failed] == ["HostLost"]
                assert [e.incarnation for e in events if isinstance(e, AgentRestarted)] == [2]
                assert cluster.host_of("a") == survivor
                assert backend.host_load(survivor) == 1
                assert (await a.send_message("hi")).final_text == "echo 1: hi"
                assert a.statistics().restarts == 1
                await a.aclose()
                # Released when it ended, not at close: the kill is a Ray call in flight.
                while backend.host_load(survivor):  # noqa: ASYNC110 - another process's state
                    await trio.sleep(0.01)


async def test_spawn_is_idempotent_and_a_broken_target_is_named() -> None:
    with trio.fail_after(LIMIT):
        async with ray_cluster_of("h1") as (backend, _):
            await backend.spawn("h1", "x#1", {"factory": ECHO})
            await backend.spawn("h1", "x#1", {"factory": ECHO})
            assert backend.host_load("h1") == 1
            with pytest.raises(RemoteAgentError, match="InvalidArgumentError on host 'h1'"):
                await backend.spawn("h1", "y#2", {"factory": "remote_agents:not_an_agent"})
            await backend.kill("h1", "x#1")
            assert backend.host_load("h1") == 0


async def test_cancelling_a_remote_subtree_cancels_the_runs_on_the_hosts() -> None:
    with trio.fail_after(LIMIT):
        async with ray_cluster_of("h1", "h2") as (backend, cluster):
            orchestrator = AgentOrchestrator()
            orchestrator.add_agent("lead", cluster.factory("lead", ECHO))
            orchestrator.add_child("worker", "lead", cluster.factory("worker", ECHO))
            async with orchestrator.open() as system:
                lead = await system.spawn("lead")
                worker = await system.spawn("worker")
                calls = [lead.send_message_nowait("hang"), worker.send_message_nowait("hang")]
                await wait_running(backend, "h1", 1)  # spread: one agent on each host
                await wait_running(backend, "h2", 1)
                lead.cancel("subtree no longer needed")
                for call in calls:
                    with pytest.raises(AgentCancelled):
                        await call.wait()
                assert await worker.wait_done() is AgentStatus.CANCELLED
                # The runs were cancelled in the hosts' trio loops, not abandoned.
                assert await running_on(backend, "h1") == await running_on(backend, "h2") == []


async def test_a_remote_leafs_escalation_reaches_the_local_root() -> None:
    with trio.fail_after(LIMIT):
        async with ray_cluster_of("h1", "h2") as (_, cluster):
            orchestrator = AgentOrchestrator(supervisor=Always(SupervisorAction.ESCALATE))
            orchestrator.add_agent("lead", cluster.factory("lead", ECHO))
            orchestrator.add_child("worker", "lead", cluster.factory("worker", ECHO))
            with pytest.raises(ChildFailed) as caught:
                async with orchestrator.open() as system:
                    await system.spawn("lead")
                    worker = await system.spawn("worker")
                    with pytest.raises(RemoteAgentError, match="BadRequestError on host"):
                        await worker.send_message("boom")
                    await trio.sleep_forever()
            assert caught.value.path == "lead"
            leaf = caught.value.__cause__
            assert isinstance(leaf, ChildFailed)
            assert leaf.path == "lead/worker"
            assert isinstance(leaf.__cause__, RemoteAgentError)
            assert leaf.__cause__.original.type == "BadRequestError"


async def test_a_remote_run_that_stopped_for_approval_resumes_on_its_ray_host() -> None:
    from trio_agents import ApprovalDecision, StopReason

    with trio.fail_after(LIMIT):
        async with ray_cluster_of("h1") as (_, cluster):
            orchestrator = AgentOrchestrator()
            orchestrator.add_agent("mailer", cluster.factory("mailer", "remote_agents:mailer"))
            async with orchestrator.open() as system:
                handle = await system.spawn("mailer")
                waiting = await handle.send_message("mail bob")
                assert waiting.stop_reason is StopReason.APPROVAL_REQUIRED
                decision = ApprovalDecision(
                    call_id=waiting.pending_approvals[0].call_id, approved=True
                )
                done = await handle.resume([decision])
                assert done.final_text == "done: sent to bob"
