"""Remote agents that stop for approval: RemoteAgent.resume goes to the host holding the
conversation (through the FakeBackend; the Ray backend shares the host code path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trio_agents import (
    AgentOrchestrator,
    ApprovalDecision,
    ApprovalPending,
    InvalidArgumentError,
    StopReason,
)
from trio_agents.distributed import FakeBackend, RemoteAgent, RemoteCluster, open_cluster

MAILER = "remote_agents:mailer"


@asynccontextmanager
async def cluster_of(*hosts: str) -> AsyncIterator[tuple[FakeBackend, RemoteCluster]]:
    async with FakeBackend.open(hosts) as backend, open_cluster(backend) as cluster:
        yield backend, cluster


async def test_a_handle_resumes_a_remote_agent_on_its_host() -> None:
    async with cluster_of("h1", "h2") as (_, cluster):
        orchestrator = AgentOrchestrator()
        orchestrator.add_agent("mailer", cluster.factory("mailer", MAILER))
        async with orchestrator.open() as system:
            handle = await system.spawn("mailer")
            waiting = await handle.send_message("mail bob")
            assert waiting.stop_reason is StopReason.APPROVAL_REQUIRED
            (pending,) = waiting.pending_approvals
            assert (pending.tool, pending.arguments) == ("send_email", {"to": "bob"})
            with pytest.raises(ApprovalPending, match=rf"\['{pending.call_id}'\]"):
                await handle.send_message("mail eve")
            done = await handle.resume([ApprovalDecision(call_id=pending.call_id, approved=True)])
            # The host held the conversation: the approved call ran there and its model went on.
            assert done.stop_reason is StopReason.STOP
            assert done.final_text == "done: sent to bob"
            assert handle.statistics().restarts == 0


async def test_remote_resume_checks_here_first_and_a_denial_travels() -> None:
    async with cluster_of("h1") as (_, cluster):
        agent = cluster.factory("m", MAILER)()
        assert isinstance(agent, RemoteAgent)
        with pytest.raises(InvalidArgumentError, match="is not waiting for approval"):
            await agent.resume([])
        waiting = await agent.run("mail bob")
        call_id = waiting.pending_approvals[0].call_id
        with pytest.raises(InvalidArgumentError, match="unknown call id 'zz'"):
            await agent.resume([ApprovalDecision(call_id="zz", approved=True)])
        with pytest.raises(InvalidArgumentError, match="waiting= and history= are for"):
            await agent.resume([ApprovalDecision(call_id=call_id, approved=True)], waiting=waiting)
        with pytest.raises(ApprovalPending):
            await agent.run("mail eve")
        assert agent.waiting == waiting  # nothing changed
        done = await agent.resume([ApprovalDecision(call_id=call_id, approved=False, reason="no")])
        assert done.final_text == "done: not run: a person denied this call: no"
        assert agent.waiting is None


async def test_outside_cancellation_of_remote_resume_is_bare_and_reaches_the_host() -> None:
    async with cluster_of("h1") as (backend, cluster):
        agent = cluster.factory("m", MAILER)()
        waiting = await agent.run("mail hang")
        decision = ApprovalDecision(call_id=waiting.pending_approvals[0].call_id, approved=True)
        left: list[BaseException] = []

        async def resume() -> None:
            try:
                await agent.resume([decision])
            except BaseException as exc:
                left.append(exc)
                raise

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(resume)
                await trio.testing.wait_all_tasks_blocked()  # the approved tool hangs there
                scope.cancel(reason="owner")
        assert scope.cancelled_caught
        (exc,) = left
        assert type(exc) is trio.Cancelled
        assert exc.reason == "owner"
        assert backend.cancels == ["m#1"]  # the run on the host was cancelled
